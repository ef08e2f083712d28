"""Man pages from the click definitions: ``opskit(1)``, one page per group and
per command (``opskit-backup(1)``, ``opskit-backup-run(1)``, ...), with
click-man's formatter. ``scripts/make-man`` writes them into docs/man/man1,
which ``pip install .`` installs under ``<prefix>/share/man/man1``; a test
fails when a committed page no longer matches the code."""
from __future__ import annotations

import os

import click


def _walk(command: click.Command, ctx: click.Context):
    yield ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx))


def man_pages(date: str) -> dict[str, str]:
    """``{file name: page text}`` for every command, groups loaded on demand."""
    from click_man.core import generate_man_page

    from opskit import __version__
    from opskit.cli import cli

    pages = {}
    for ctx in _walk(cli, click.Context(cli, info_name="opskit")):
        name = ctx.command_path.replace(" ", "-") + ".1"
        pages[name] = generate_man_page(ctx, version=__version__, date=date)
    return pages


def without_date(page: str) -> str:
    """The page minus its ``.TH`` header line (which carries the build date)."""
    return "\n".join(line for line in page.splitlines() if not line.startswith(".TH "))


def write_pages(directory: str, date: str) -> list[str]:
    """Write changed pages (date aside) into ``directory``; drop pages of commands
    that are gone. Returns the names written."""
    os.makedirs(directory, exist_ok=True)
    pages, written = man_pages(date), []
    for name in os.listdir(directory):
        if name.endswith(".1") and name not in pages:
            os.remove(os.path.join(directory, name))
    for name, text in pages.items():
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                if without_date(fh.read()) == without_date(text):
                    continue
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        written.append(name)
    return written
