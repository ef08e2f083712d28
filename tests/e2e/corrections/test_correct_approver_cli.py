"""`correct show` and `correct approve` as an approver reads them (subprocesses, real SQLite).

Before anything is applied both print the row diff, old -> new for exactly the columns
that change; a reason or a value carrying terminal escapes is printed escaped, never
raw; ``--json`` carries the same diff (issue #17 "Approver view", R-DAT-1, R-DAT-3).
"""
from __future__ import annotations

import json

from tests.harness.corrections import make_sqlite_target, make_world

ESC_REASON = "typo\x1b[2J\x1b[Hall fine, approve"
ESC_VALUE = "open\x1b]0;owned\x07\u202e"


def _request(opskit, w):
    run = opskit("correct", "request", "--target", "his", "--table", "claims", "--where", "id = :id",
                 "--param", "id=43", "--set", "amount=350.25", "--set", f"status={ESC_VALUE}",
                 "--set", "insured_id=P-1003", "--reason", ESC_REASON, "--json", env=w.env("alice"))
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)["request"]


def _diff_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("claims ")]


def test_show_and_approve_print_the_row_diff_with_escapes_shown_not_run(opskit, tmp_path):
    w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))
    rid = _request(opskit, w)
    show = opskit("correct", "show", rid, env=w.env())
    assert show.exit_code == 0, show.output
    assert "row diff (old -> new)" in show.stdout
    rows = _diff_rows(show.stdout)
    assert any(r.split()[1:5] == ["id=43", "amount", "300", "350.25"] for r in rows), show.stdout
    assert any(r.split()[1:3] == ["id=43", "status"] and "\\x1b]0;owned\\x07\\u202e" in r for r in rows)
    # insured_id is set to the value it has: not a change, not listed; nor unassigned columns
    assert not any(r.split()[2] in ("insured_id", "id") for r in rows)
    for out in (show.stdout,):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert "typo\\x1b[2J\\x1b[Hall fine" in out
    approve = opskit("correct", "approve", rid, "--comment", "ok", env=w.env("bob"))
    assert approve.exit_code == 0, approve.output
    assert "\x1b" not in approve.stdout and "\x07" not in approve.stdout
    assert any(r.split()[1:5] == ["id=43", "amount", "300", "350.25"] for r in _diff_rows(approve.stdout))
    assert "\\x1b]0;owned\\x07" in approve.stdout
    assert ("new values: computed read-only when the request was made, signed by the requester"
            in approve.stdout)


def test_json_carries_the_diff(opskit, tmp_path):
    w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))
    rid = _request(opskit, w)
    show = opskit("correct", "show", rid, "--json", env=w.env())
    assert show.exit_code == 0, show.output
    data = json.loads(show.stdout)
    changed = {d["column"]: (d["old"], d["new"]) for d in data["diff"]}
    assert changed == {"amount": ("300", "350.25"), "status": ("open", ESC_VALUE)}
    assert data["preview"]["computed"] == "request"
    approve = opskit("correct", "approve", rid, "--json", env=w.env("bob"))
    assert approve.exit_code == 0, approve.output
    assert {d["column"] for d in json.loads(approve.stdout)["diff"]} == {"amount", "status"}
