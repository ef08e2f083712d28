"""`opskit audit verify` and `opskit access verify` re-check the access decisions the
audit log records and the request files (R-ACC-3, R-ACC-5, R-DAT-2), as people run them
(subprocesses). Forgeries are signed with real keys, as an insider with modified code
would sign them."""
from __future__ import annotations

import json

from opskit.accounts.requestfile import read_request, sign_event, write_request
from tests.harness.signing import person_key as K
from tests.unit.accounts.test_access_support import World


def _special_applied(opskit, w) -> str:
    run = opskit("access", "request", "--person", "clerk.a", "--role", "refund-officer",
                 "--reason", "refund desk", "--json", env=w.env("hu.head"))
    assert run.exit_code == 0, run.output
    rid = json.loads(run.stdout)["id"]
    for who in ("lead.one", "lead.two"):
        assert opskit("access", "approve", rid, env=w.env(who)).exit_code == 0
    assert opskit("access", "apply", rid, "--no-provision", env=w.env("adm.wang")).exit_code == 0
    return rid


def test_honest_decisions_verify_and_a_forged_approval_is_named(opskit, tmp_path):
    w = World(tmp_path)
    rid = _special_applied(opskit, w)
    ok = opskit("audit", "verify", "--json", env=w.env())
    assert ok.exit_code == 0, ok.output
    access = json.loads(ok.stdout)["access"]
    assert (access["ok"], access["requests"], access["decisions"]) == (True, 1, 4)
    text = opskit("audit", "verify", env=w.env())
    assert "access decisions: 1 access request file(s) and 4 decision(s)" in text.stdout
    assert "verified against the roster's signing keys" in text.stdout
    # the second approval replaced by one lead.one signs again with their own key
    path = str(w.home / "access" / f"{rid}.json")
    req = read_request(path)
    req.events = req.events[:2]
    for event, actor in (("approve", "lead.one"), ("apply", "adm.wang")):
        req.events.append(sign_event(req, {"event": event, "actor": actor, "comment": "",
                                           "time": "2026-01-01T00:00:00+00:00"}, K(actor)))
    write_request(path, req.to_file())
    for args in (("audit", "verify"), ("access", "verify")):
        run = opskit(*args, env=w.env())
        assert run.exit_code == 1, run.output
        assert (f"{rid} event 3 (approve by lead.one): event 3 (approve by lead.one) breaks "
                "the workflow although it is signed: a second approval by the same person "
                "(R-ACC-5)") in run.stdout
        assert "(access approve)" in run.stdout and "holds no such signed event" in run.stdout
        assert "Traceback" not in run.output
    entry = json.loads(opskit("audit", "show", "--json", env=w.env()).stdout)[-1]
    assert entry["command"] == "access verify" and entry["exit_code"] == 1
    assert entry["details"]["access"]["findings"][0]["request"] == rid


def test_an_approval_signed_by_an_unregistered_key_fails_audit_verify(opskit, tmp_path):
    w = World(tmp_path)
    run = opskit("access", "request", "--person", "clerk.a", "--role", "claims-viewer",
                 "--reason", "reports", "--json", env=w.env("hu.head"))
    rid = json.loads(run.stdout)["id"]
    path = str(w.home / "access" / f"{rid}.json")
    req = read_request(path)
    req.events.append(sign_event(req, {"event": "approve", "actor": "lead.one", "comment": "",
                                       "time": "2026-01-01T00:00:00+00:00"}, K("mallory")))
    write_request(path, req.to_file())
    run = opskit("audit", "verify", "--json", env=w.env())
    assert run.exit_code == 1, run.output
    [finding] = json.loads(run.stdout)["access"]["findings"]
    assert (finding["request"], finding["entry"]) == (rid, "event 2 (approve by lead.one)")
    assert "which the roster does not register for lead.one" in finding["problem"]
    # a forged decision is an incident with the request file attached (R-INC-1)
    iid = json.loads(run.stdout)["incident"]
    inc = json.loads(opskit("incident", "show", iid, "--json", env=w.env()).stdout)
    assert inc["automatic"] and inc["type"] == "access-decision-forged" and rid in inc["scope"]
    assert inc["evidence"]["source"] == path


def test_without_a_roster_it_warns_and_strict_exits_1(opskit, tmp_path):
    w = World(tmp_path)
    _special_applied(opskit, w)
    w.roster_path.unlink()
    run = opskit("audit", "verify", env=w.env())
    assert run.exit_code == 0, run.output
    assert "warning: the roster is not available" in run.stdout
    assert "were not re-checked" in run.stdout
    strict = opskit("audit", "verify", "--strict", env=w.env())
    assert strict.exit_code == 1 and "warning: the roster is not available" in strict.stdout


def test_no_access_records_leave_audit_verify_as_it_was(opskit, tmp_path):
    run = opskit("audit", "verify")
    assert run.exit_code == 0 and run.stdout.strip() == "audit log is empty"
    again = opskit("access", "verify", "--strict")
    assert again.exit_code == 0 and "no access requests in" in again.stdout
