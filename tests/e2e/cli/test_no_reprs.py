"""No Python internals where a person reads (issue #22 item 9): the table output
of the main commands never shows a dict/list repr, ``None``, ``True`` or
``False``; JSON carries typed values."""
from __future__ import annotations

import json
import re

from tests.harness.corrections import make_sqlite_target, make_world

# a repr leaks as {'k': ...}, ['a', ...], or a bare None/True/False word
REPR = re.compile(r"\{'|\['|\bNone\b|\bTrue\b|\bFalse\b")


def _reprs(text: str) -> list[str]:
    return [line for line in text.splitlines() if REPR.search(line)]


def test_repr_scan_catches_what_it_must():
    # the scan itself can fail: a dict repr, a list repr and bare None are found
    assert _reprs("params  {'id': '42'}") and _reprs("x ['a']") and _reprs("note None")
    assert not _reprs("id = 42\nNONE  none  -  yes  no")


def test_main_commands_print_no_python_reprs(opskit, tmp_path):
    w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))
    svc = w.svc()
    _e, st = svc.request("his", "UPDATE claims SET amount = :amount WHERE id = :id",
                         {"amount": "120.50", "id": "42"}, "typo", "INC-9", w.signer("alice"))
    svc.approve(st.id, "ok", w.signer("bob"))
    svc.ledger.close()
    commands = [("correct", "log"), ("correct", "show", st.id), ("audit", "show"),
                ("hosts", "list"), ("schedule", "status"), ("playbook", "list"),
                ("policy", "list")]
    for argv in commands:
        run = opskit(*argv, env=w.env())
        assert run.exit_code in (0, 1), (argv, run.output)
        assert run.stdout.strip(), argv
        assert not _reprs(run.stdout), (argv, _reprs(run.stdout))
    log = json.loads(opskit("correct", "log", "--json", env=w.env()).stdout)
    assert log[0]["approvers"] == ["bob"] and isinstance(log[0]["rows"], (int, type(None)))
    show = json.loads(opskit("correct", "show", st.id, "--json", env=w.env()).stdout)
    assert show["params"] == {"amount": "120.50", "id": "42"}
