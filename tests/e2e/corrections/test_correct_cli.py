"""`opskit correct` as an operator and an auditor run it (subprocesses, real SQLite).

Exit codes: 0 ok; 1 verify found tampering / an apply was rolled back and
recorded; 2 refused (R-DAT-1, R-DAT-2, R-DAT-3). Every step also lands in the
audit log with the ledger seq and hash (R-AUD-3).
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from opskit.core.audit import AuditLog
from opskit.corrections.ledger import decode, encode
from tests.harness.corrections import make_sqlite_target, make_world, sqlite_rows


def _world(tmp_path):
    return make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))


def test_keygen_writes_0600_key_and_prints_the_public_line(opskit, tmp_path):
    out = tmp_path / "me" / "id_ed25519"
    run = opskit("correct", "keygen", "--out", out, "--name", "zhang.san", "--json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert data["public_key"].startswith("ssh-ed25519 ") and data["public_key"].endswith("zhang.san")
    assert "PRIVATE" not in run.stdout
    again = opskit("correct", "keygen", "--out", out)
    assert again.exit_code == 2 and "refusing to overwrite" in again.stderr


def test_full_workflow_with_sql_file_refusals_and_audit_trail(opskit, tmp_path):
    w = _world(tmp_path)
    sql = tmp_path / "fix.sql"
    sql.write_text("-- reviewed in INC-7\nUPDATE claims SET amount = :amount WHERE id = :id;\n")
    run = opskit("correct", "request", "--target", "his", "--sql", sql, "--param", "amount=120.50",
                 "--param", "id=42", "--reason", "amount keyed in wrong", "--ticket", "INC-7", "--json",
                 env=w.env("alice"))
    assert run.exit_code == 0, run.output
    rid = json.loads(run.stdout)["request"]
    self_approve = opskit("correct", "approve", rid, "--comment", "mine", env=w.env("alice"))
    assert self_approve.exit_code == 2 and "R-DAT-2" in self_approve.stderr
    early = opskit("correct", "apply", rid, env=w.env("mike"))
    assert early.exit_code == 2 and "not approved" in early.stderr
    assert opskit("correct", "approve", rid, "--comment", "ok", env=w.env("bob")).exit_code == 0
    applied = opskit("correct", "apply", rid, "--json", env=w.env("mike"))
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["row_count"] == 1
    assert sqlite_rows(w.target_url, "SELECT amount FROM claims WHERE id = 42") == [(120.5,)]
    twice = opskit("correct", "apply", rid, env=w.env("max"))
    assert twice.exit_code == 2 and "already applied" in twice.stderr
    multi = tmp_path / "multi.sql"
    multi.write_text("UPDATE claims SET amount = 1 WHERE id = 41; DELETE FROM refunds WHERE id = 7;")
    refused = opskit("correct", "request", "--target", "his", "--sql", multi, "--reason", "x", env=w.env("alice"))
    assert refused.exit_code == 2 and "2 statements" in refused.stderr
    log = opskit("correct", "log", "--json", env=w.env())
    assert [r["state"] for r in json.loads(log.stdout)] == ["applied"]
    # approvers a list, as 'access show' gives them (#22 item 9)
    assert json.loads(log.stdout)[0]["approvers"] == ["bob"]
    show = opskit("correct", "show", rid, env=w.env())
    assert "before-image" in show.stdout and "after-image" in show.stdout and "bob" in show.stdout
    # params as 'name = value' lines, never a Python dict
    assert "amount = 120.50" in show.stdout and "id = 42" in show.stdout
    assert "{'" not in show.stdout and "['" not in show.stdout
    verify = opskit("correct", "verify", env=w.env())
    assert verify.exit_code == 0 and "intact: 4 entries, 4 signatures" in verify.stdout
    # the audit log names the ledger entry of each step (R-AUD-3)
    entries = list(AuditLog(tmp_path / "home" / "audit" / "audit.log").entries())
    apply_entry = [e for e in entries if e["command"] == "correct apply" and e["exit_code"] == 0][0]
    assert apply_entry["details"]["request"] == rid and apply_entry["details"]["ledger_kind"] == "applied"
    assert [e["exit_code"] for e in entries if e["command"] == "correct approve"] == [2, 0]


def test_exports_verify_offline_and_a_tampered_export_names_the_entry(opskit, tmp_path):
    w = _world(tmp_path)
    svc = w.svc()
    _e, st = svc.request("his", "DELETE FROM refunds WHERE id = :id", {"id": "7"}, "duplicate", "INC-8",
                         w.signer("alice"))
    for who in ("bob", "carol", "dan", "audrey"):
        svc.approve(st.id, "ok", w.signer(who))
    svc.apply(st.id, w.signer("mike"))
    svc.ledger.close()
    for fmt in ("json", "csv", "html"):
        out = tmp_path / f"ledger.{fmt}"
        run = opskit("correct", "export", "--format", fmt, "--out", out, env=w.env())
        assert run.exit_code == 0, run.output
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
        # offline: the auditor's own config (rules file with the declared keys), no ledger access
        ok = opskit("correct", "verify", "--ledger", out, env=w.env())
        assert ok.exit_code == 0 and "intact: 7 entries" in ok.stdout, ok.output
    page = (tmp_path / "ledger.html").read_text()
    assert "<script>" not in page and "duplicate payment" in page
    data = json.loads((tmp_path / "ledger.json").read_text())
    entry = decode(data["entries"][2])
    entry["body"]["comment"] = "changed afterwards"
    data["entries"][2] = encode(entry)
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(data))
    run = opskit("correct", "verify", "--ledger", bad, "--json", env=w.env())
    assert run.exit_code == 1
    report = json.loads(run.stdout)
    assert report["first_bad_seq"] == 3 and report["tampering"] == "edited"
    data = json.loads((tmp_path / "ledger.json").read_text())
    del data["entries"][3]
    bad.write_text(json.dumps(data))
    run = opskit("correct", "verify", "--ledger", bad, env=w.env())
    assert run.exit_code == 1 and "seq 4 missing" in run.stdout


def test_two_cli_executors_racing_exactly_one_applies(tmp_path):
    w = _world(tmp_path)
    svc = w.svc()
    _e, st = svc.request("his", "UPDATE claims SET amount = amount + 10 WHERE id = 43", {}, "r", "",
                         w.signer("alice"))
    svc.approve(st.id, "ok", w.signer("bob"))
    svc.ledger.close()
    procs = []
    for who in ("mike", "max"):
        env = dict(os.environ, **w.env(who))
        procs.append(subprocess.Popen([sys.executable, "-m", "opskit", "correct", "apply", st.id], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    assert any("already" in err for code, err in results if code == 2), results
    assert sqlite_rows(w.target_url, "SELECT amount FROM claims WHERE id = 43") == [(310,)]


def test_a_rolled_back_apply_exits_1_and_is_recorded(opskit, tmp_path):
    w = _world(tmp_path)
    svc = w.svc()
    _e, st = svc.request("his", "UPDATE claims SET amount = 1 WHERE id = 44", {}, "r", "", w.signer("alice"))
    svc.approve(st.id, "ok", w.signer("bob"))
    svc.ledger.close()
    import sqlite3
    conn = sqlite3.connect(w.target_url)
    conn.execute("UPDATE claims SET amount = 999 WHERE id = 44")
    conn.commit()
    conn.close()
    dry = opskit("correct", "apply", st.id, "--dry-run", env=w.env("mike"))
    assert dry.exit_code == 1 and "CHANGED" in dry.stdout
    run = opskit("correct", "apply", st.id, env=w.env("mike"))
    assert run.exit_code == 1 and "rows changed since the request was approved" in run.stderr
    assert sqlite_rows(w.target_url, "SELECT amount FROM claims WHERE id = 44") == [(999,)]
    log = opskit("correct", "log", "--state", "failed", "--json", env=w.env())
    assert [r["id"] for r in json.loads(log.stdout)] == [st.id]


def test_postgres_target_and_postgres_ledger_request_approve_apply_verify(opskit, tmp_path, postgres,
                                                                         postgres_db):
    """A team's setup: business data and the shared ledger both in PostgreSQL
    (corrections.ledger: postgresql://...), every step through the CLI."""
    from tests.harness.corrections import make_postgres_target
    url = make_postgres_target(postgres, postgres_db)
    ledger_db = postgres_db + "_ledger"
    ledger_url = postgres.create_database(ledger_db)
    try:
        w = make_world(tmp_path, url, ledger=ledger_url)
        assert f"ledger: {ledger_url}" in w.config.read_text()
        run = opskit("correct", "request", "--target", "his", "--table", "refunds", "--where", "id = :id",
                     "--param", "id=7", "--set", "amount=80.00", "--reason", "partial refund only",
                     "--ticket", "INC-11", "--json", env=w.env("alice"))
        assert run.exit_code == 0, run.output
        rid = json.loads(run.stdout)["request"]
        for who in ("bob", "carol", "dan", "audrey"):          # three levels + audit supervisor
            ok = opskit("correct", "approve", rid, "--comment", f"checked by {who}", env=w.env(who))
            assert ok.exit_code == 0, ok.output
        applied = opskit("correct", "apply", rid, "--json", env=w.env("mike"))
        assert applied.exit_code == 0, applied.output
        assert json.loads(applied.stdout)["after"][0]["amount"] == "80.00"
        assert postgres.rows("SELECT amount FROM refunds WHERE id = 7", postgres_db) == [("80.00",)]
        # the entries are in the PostgreSQL ledger table, not in a local SQLite file
        kinds = postgres.rows("SELECT kind FROM opskit_correction_ledger ORDER BY seq", ledger_db)
        assert [k for (k,) in kinds] == ["request", "approve", "approve", "approve", "approve",
                                         "apply-started", "applied"]
        assert not (tmp_path / "home" / "corrections.sqlite").exists()
        verify = opskit("correct", "verify", "--json", env=w.env())
        assert verify.exit_code == 0, verify.output
        assert json.loads(verify.stdout)["entries_checked"] == 7
        # an edit straight in the shared ledger table is caught
        postgres.psql("UPDATE opskit_correction_ledger SET entry = replace(entry, 'checked by carol', "
                      "'checked by nobody') WHERE seq = 3", ledger_db)
        bad = opskit("correct", "verify", "--json", env=w.env())
        assert bad.exit_code == 1 and json.loads(bad.stdout)["first_bad_seq"] == 3
    finally:
        postgres.drop_database(ledger_db)


def test_withdraw_by_the_requester_before_apply(opskit, tmp_path):
    w = _world(tmp_path)
    req = ["correct", "request", "--target", "his", "--table", "claims", "--where", "id = :id", "--param",
           "id=42", "--set", "amount=120.50", "--reason", "typo", "--json"]
    first = json.loads(opskit(*req, env=w.env("alice")).stdout)["request"]
    second = json.loads(opskit(*req, env=w.env("alice")).stdout)["request"]
    assert opskit("correct", "approve", second, "--comment", "ok", env=w.env("bob")).exit_code == 0
    other = opskit("correct", "withdraw", first, "--comment", "not mine", env=w.env("bob"))
    assert other.exit_code == 2 and "only the requester (alice)" in other.stderr
    nocomment = opskit("correct", "withdraw", first, env=w.env("alice"))
    assert nocomment.exit_code == 2
    for rid in (first, second):                 # pending, and approved but not yet applied
        run = opskit("correct", "withdraw", rid, "--comment", "raised twice by mistake", "--json",
                     env=w.env("alice"))
        assert run.exit_code == 0, run.output
        assert json.loads(run.stdout)["state"] == "withdrawn"
    late = opskit("correct", "apply", second, env=w.env("mike"))
    assert late.exit_code == 2 and "withdrawn; only an approved request" in late.stderr
    again = opskit("correct", "approve", first, "--comment", "ok", env=w.env("bob"))
    assert again.exit_code == 2 and "only a pending request" in again.stderr
    assert sqlite_rows(w.target_url, "SELECT amount FROM claims WHERE id = 42") == [(1205,)]
    log = opskit("correct", "log", "--state", "withdrawn", "--json", env=w.env())
    assert sorted(r["id"] for r in json.loads(log.stdout)) == sorted([first, second])
    show = opskit("correct", "show", first, env=w.env())
    assert "raised twice by mistake" in show.stdout
    verify = opskit("correct", "verify", env=w.env())
    assert verify.exit_code == 0 and "intact: 5 entries" in verify.stdout, verify.output
    entries = list(AuditLog(tmp_path / "home" / "audit" / "audit.log").entries())
    assert [e["details"].get("ledger_kind") for e in entries
            if e["command"] == "correct withdraw" and e["exit_code"] == 0] == ["withdraw", "withdraw"]
    # after apply it is too late
    third = json.loads(opskit(*req[:-1], "--json", env=w.env("alice")).stdout)["request"]
    opskit("correct", "approve", third, "--comment", "ok", env=w.env("bob"))
    assert opskit("correct", "apply", third, env=w.env("mike")).exit_code == 0
    too_late = opskit("correct", "withdraw", third, "--comment", "oops", env=w.env("alice"))
    assert too_late.exit_code == 2 and "applied; only a pending or approved" in too_late.stderr


def test_verify_catches_a_cut_off_tail_from_the_audit_log_alone(opskit, tmp_path):
    """No checkpoint kept by hand: the audit log names the ledger seq and hash of every
    step, so deleting the newest entries (a valid shorter chain) is still caught."""
    import sqlite3
    w = _world(tmp_path)
    run = opskit("correct", "request", "--target", "his", "--table", "claims", "--where", "id = :id",
                 "--param", "id=42", "--set", "amount=120.50", "--reason", "typo", "--json", env=w.env("alice"))
    rid = json.loads(run.stdout)["request"]
    assert opskit("correct", "approve", rid, "--comment", "ok", env=w.env("bob")).exit_code == 0
    assert opskit("correct", "apply", rid, env=w.env("mike")).exit_code == 0
    ok = opskit("correct", "verify", "--json", env=w.env())
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["audit_log_head"]["seq"] == 4 and json.loads(ok.stdout)["checkpoints_checked"] == 1
    conn = sqlite3.connect(w.ledger)
    conn.execute("DELETE FROM opskit_correction_ledger WHERE seq >= 3")     # hide the apply
    conn.commit()
    conn.close()
    bad = opskit("correct", "verify", "--json", env=w.env())
    assert bad.exit_code == 1, bad.output
    report = json.loads(bad.stdout)
    assert report["tampering"] == "truncated" and report["first_bad_seq"] == 3
    assert "ledger ends at seq 2 but the audit log (correct apply" in report["problem"]
    # a tampered live ledger is a security event opskit found itself (#25 item 1)
    assert report["incident"] == "INC-0001"
    shown = json.loads(opskit("incident", "show", "INC-0001", "--json", env=w.env()).stdout)
    assert shown["type"] == "ledger-tampered" and "seq" in shown["scope"]
    assert opskit("correct", "verify", "--no-audit-check", env=w.env()).exit_code == 0


def test_terminal_escapes_are_shown_escaped_and_the_reviewer_sees_values_and_signers(opskit, tmp_path):
    """#17 items 8 and 9: a reason, SQL literal or parameter carrying ESC sequences cannot
    clear the screen or hide the statement in show/approve/log; show and approve print the
    statement with its values, the requirement and who signed; log says why it failed."""
    w = _world(tmp_path)
    esc = "\x1b[2J\x1b[1A\r"
    sql = tmp_path / "fix.sql"
    sql.write_text(f"UPDATE claims SET status = 'ok{esc}' || :note WHERE id = :id\n")
    run = opskit("correct", "request", "--target", "his", "--sql", sql, "--param", f"note=n{esc}",
                 "--param", "id=42", "--reason", f"typo{esc}\u202e", "--json", env=w.env("alice"))
    assert run.exit_code == 0, run.output
    rid = json.loads(run.stdout)["request"]
    for args, who in ((("show", rid), None), (("approve", rid, "--comment", f"c{esc}"), "bob"),
                      (("log",), None)):
        out = opskit("correct", *args, env=w.env(who))
        assert out.exit_code == 0, out.output
        assert "\x1b" not in out.stdout and "\r" not in out.stdout and "\u202e" not in out.stdout
        if args[0] != "log":
            assert "\\x1b[2J" in out.stdout
    show = opskit("correct", "show", rid, env=w.env()).stdout
    assert "WHERE id = 42" in show and "'n\\x1b[2J" in show          # values filled in, escaped
    assert "alice (requester, seq 1); bob (clerk, seq 2)" in show and "1 approval" in show
    approve_out = opskit("correct", "approve", rid, "--comment", "x", env=w.env("carol"))
    assert approve_out.exit_code == 2          # already approved: carol's signature is refused
    # a failed apply: log names the reason
    conn = __import__("sqlite3").connect(w.target_url)
    conn.execute("UPDATE claims SET amount = 1 WHERE id = 42")
    conn.commit()
    conn.close()
    assert opskit("correct", "apply", rid, env=w.env("mike")).exit_code == 1
    log = json.loads(opskit("correct", "log", "--json", env=w.env()).stdout)
    assert "rows changed since the request was approved" in log[0]["failure"]
    assert "rows changed" in opskit("correct", "log", env=w.env()).stdout


def test_verify_names_its_anchor_and_warns_without_one(opskit, tmp_path):
    """#17 item 10: verify says which anchor it used; with none it warns, and --strict exits 1."""
    w = _world(tmp_path)
    run = opskit("correct", "request", "--target", "his", "--table", "claims", "--where", "id = :id",
                 "--param", "id=42", "--set", "amount=1", "--reason", "r", env=w.env("alice"))
    assert run.exit_code == 0, run.output
    anchored = opskit("correct", "verify", "--strict", env=w.env())
    assert anchored.exit_code == 0, anchored.output
    assert "anchored by the audit log" in anchored.stdout and "seq 1" in anchored.stdout
    bare = opskit("correct", "verify", "--no-audit-check", env=w.env())
    assert bare.exit_code == 0 and "warning: no anchor" in bare.stdout
    strict = opskit("correct", "verify", "--no-audit-check", "--strict", env=w.env())
    assert strict.exit_code == 1 and "cannot be detected" in strict.stdout
    export = tmp_path / "ledger.json"
    assert opskit("correct", "export", "--out", export, env=w.env()).exit_code == 0
    offline = opskit("correct", "verify", "--ledger", export, "--strict", env=w.env())
    assert offline.exit_code == 1 and "no anchor" in offline.stdout
    cp = tmp_path / "cp.json"
    head = json.loads(opskit("correct", "verify", "--json", env=w.env()).stdout)["head"]
    cp.write_text(json.dumps({"seq": 1, "hash": head["hash"]}))
    pinned = opskit("correct", "verify", "--ledger", export, "--checkpoint", cp, "--strict", env=w.env())
    assert pinned.exit_code == 0 and f"anchored by checkpoint file {cp}" in pinned.stdout


def test_keygen_takes_key_like_every_correct_command_and_writes_the_public_key(tmp_path):
    """#22 item 10: one option name for the key file; the .pub written beside it."""
    from tests.harness.cli import run_opskit
    key = tmp_path / "me" / "id_ed25519"
    run = run_opskit("correct", "keygen", "--key", str(key), "--name", "me")
    assert run.exit_code == 0, run.output
    assert oct(os.stat(key).st_mode & 0o777) == oct(0o600)
    pub = (tmp_path / "me" / "id_ed25519.pub").read_text()
    assert pub.startswith("ssh-ed25519 ") and pub.strip().endswith(" me") and pub.strip() in run.stdout
    again = run_opskit("correct", "keygen", "--key", str(key))
    assert again.exit_code == 2 and "already exists" in again.stderr    # never overwritten
