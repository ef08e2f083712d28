"""The committed man pages match the click definitions (issue #22 item 11)."""
import os

from opskit.cli.manpages import man_pages, without_date

MAN = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "man", "man1")


def test_every_command_has_a_current_man_page():
    pages = man_pages("2026-01-01")
    assert {"opskit.1", "opskit-backup.1", "opskit-backup-run.1", "opskit-schedule-cron.1"} <= set(pages)
    committed = {n for n in os.listdir(MAN) if n.endswith(".1")}
    assert committed == set(pages), "run scripts/make-man (pages missing or left over)"
    stale = []
    for name, text in pages.items():
        with open(os.path.join(MAN, name), encoding="utf-8") as fh:
            if without_date(fh.read()) != without_date(text):
                stale.append(name)
    assert not stale, f"stale man pages, run scripts/make-man: {', '.join(stale)}"


def test_a_page_teaches_the_options():
    page = man_pages("2026-01-01")["opskit-backup-run.1"]
    assert ".SH OPTIONS" in page and "\\-\\-full" in page and "\\-\\-exclude" in page
