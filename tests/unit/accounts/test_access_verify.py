"""Re-checking recorded access decisions (opskit.accounts.approvals; R-ACC-1, R-ACC-3,
R-ACC-5, R-DAT-2): request files and the audit log's decisions against the roster's keys.
Forged decisions are made the way an insider with a key and modified code would: signed
with real keys (their own, someone unregistered, over another request). The CLI is in
tests/e2e/accounts/test_access_verify_cli.py."""
from __future__ import annotations

import json

import pytest

from opskit.accounts.approvals import check_records
from opskit.accounts.declared import load_declared
from opskit.accounts.requestfile import AccessRequest, read_request, sign_event, write_request
from opskit.accounts.requests import Refused
from tests.harness.signing import person_key as K
from tests.unit.accounts.test_access_support import World

T = "2026-01-01T00:00:00+00:00"


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def _path(world, rid):
    return str(world.home / "access" / f"{rid}.json")


def _forge(world, rid, event, actor, signer, **extra):
    """Append ``event`` by ``actor`` signed with ``signer``'s real key (modified code)."""
    req = read_request(_path(world, rid))
    req.events.append(sign_event(req, {"event": event, "actor": actor, "time": T,
                                       "comment": "", **extra}, signer))
    write_request(_path(world, rid), req.to_file())


def _entry(seq, command, rid, actor, event=None, **details):
    """An audit entry as the CLI writes it for a signed step."""
    d = {"request": rid, "actor": actor, "key": K(actor).fingerprint, **details}
    if command.startswith("access "):
        d["event"] = event or command.split()[1]
    return {"seq": seq, "command": command, "exit_code": 0, "details": d}


def _special(world):
    """AR-0001: refund-officer for clerk.a (special tier, two approvals needed)."""
    return world.store().create(K("hu.head"), "clerk.a", role="refund-officer", reason="r")


def test_an_honest_history_passes_and_counts_what_it_checked(world):
    store = world.store()
    req = _special(world)
    store.approve(req.id, K("lead.one"))
    store.approve(req.id, K("lead.two"))
    store.apply_grant(req.id, K("adm.wang"))
    entries = [_entry(1, "access request", req.id, "hu.head"),
               _entry(2, "access approve", req.id, "lead.one"),
               _entry(3, "access approve", req.id, "lead.two"),
               _entry(4, "access apply", req.id, "adm.wang"),
               {"seq": 5, "command": "access approve", "exit_code": 2,       # a refusal
                "details": {"request": req.id, "actor": "hu.head", "key": "SHA256:x"}}]
    check = check_records(world.config(), entries)
    assert (check.ok, check.requests, check.decisions, check.findings) == (True, 1, 4, [])
    assert "1 access request file(s) and 4 decision(s)" in check.describe()


def test_nothing_to_check_is_empty_and_needs_no_roster(tmp_path):
    w = World(tmp_path)
    w.roster_path.unlink()
    check = check_records(w.config(), [{"seq": 1, "command": "audit verify", "details": {}}])
    assert check.ok and check.empty and check.lines() == []


def test_same_person_twice_then_apply_is_a_finding_and_no_grant(world):
    """lead.one signs a second approval with their own key and adm.wang applies: every
    signature verifies, the replay finds one approval where two are needed (R-ACC-5)."""
    store = world.store()
    req = _special(world)
    store.approve(req.id, K("lead.one"))
    _forge(world, req.id, "approve", "lead.one", K("lead.one"))
    _forge(world, req.id, "apply", "adm.wang", K("adm.wang"))
    check = check_records(world.config(), [])
    assert [(f.request, f.entry, f.rule) for f in check.findings] == [
        (req.id, "event 3 (approve by lead.one)", "R-ACC-5"),
        (req.id, "event 4 (apply by adm.wang)", "R-ACC-5")]
    assert "second approval by the same person" in check.findings[0].problem
    assert "applied while requested: 1 of 2" in check.findings[1].problem
    assert check.exit_code() == 1
    with pytest.raises(Refused, match=r"event 3 \(approve by lead.one\) breaks the workflow"):
        load_declared(world.config())          # the forged grant reaches no reader


def test_a_special_request_signed_as_needing_one_approval_is_a_finding(world):
    req = AccessRequest(
        "AR-0001", "role", "clerk.a", "refund-officer", "special", "r", "", 1)
    req.events.append(sign_event(req, {"event": "request", "actor": "hu.head", "time": T,
                                       "comment": "r"}, K("hu.head")))
    (world.home / "access").mkdir(parents=True)
    write_request(_path(world, "AR-0001"), req.to_file())
    _forge(world, "AR-0001", "approve", "lead.one", K("lead.one"))
    _forge(world, "AR-0001", "apply", "adm.wang", K("adm.wang"))
    problems = [f.problem for f in check_records(world.config(), []).findings]
    assert "it asks for 1 approval(s) although a special request needs at least 2" in problems
    assert any("applied while requested: 1 of 2" in p for p in problems)


def test_unregistered_key_other_request_and_edited_content_are_named(world):
    store = world.store()
    a = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    store.approve(a.id, K("lead.one"))
    b = store.create(K("hu.head"), "clerk.b", role="claims-viewer", reason="r")
    c = store.create(K("hu.head"), "adm.li", role="claims-viewer", reason="r")
    store.approve(c.id, K("lead.one"))
    _forge(world, b.id, "approve", "lead.two", K("mallory"))            # nobody's key
    approval = json.loads(open(_path(world, a.id)).read())["events"][1]
    data = json.loads(open(_path(world, c.id)).read())
    data["events"][1] = approval                                        # signed over AR-0001
    data["role"] = "sysadmin"                                           # edited after approval
    open(_path(world, c.id), "w").write(json.dumps(data))
    found = {(f.request, f.entry): f.problem for f in check_records(world.config(), []).findings}
    # an edited field changes the content hash: every signature over it fails too
    assert set(found) == {(b.id, "event 2 (approve by lead.two)"), (c.id, "file"),
                          (c.id, "event 1 (request by hu.head)"),
                          (c.id, "event 2 (approve by lead.one)")}
    assert f"key {K('mallory').fingerprint}, which the roster does not register for " \
           "lead.two" in found[(b.id, "event 2 (approve by lead.two)")]
    assert found[(c.id, "file")] == "field 'role' differs from what hu.head signed"
    assert "made over another request" in found[(c.id, "event 2 (approve by lead.one)")]


def test_audit_decisions_without_a_matching_signed_event_are_findings(world):
    store = world.store()
    req = store.create(K("hu.head"), "gone.c", unfreeze=True, reason="rehired")
    store.approve(req.id, K("lead.one"))
    entries = [_entry(7, "access approve", req.id, "lead.two"),           # never signed
               {**_entry(8, "access approve", req.id, "lead.one"),        # unregistered key
                "details": {**_entry(8, "access approve", req.id, "lead.one")["details"],
                            "key": K("mallory").fingerprint}},
               _entry(9, "users unfreeze", req.id, "adm.wang", failed_hosts=[]),
               _entry(10, "users unfreeze", req.id, "adm.wang", failed_hosts=["db1"]),
               _entry(11, "users transfer", "ar-42", "adm.wang", failed_hosts=[], dry_run=False),
               _entry(12, "users transfer", "AR-0001", "adm.wang", failed_hosts=[], dry_run=True)]
    found = {f.entry: f.problem for f in check_records(world.config(), entries).findings}
    assert set(found) == {"audit entry seq 7 (access approve)", "audit entry seq 8 (access approve)",
                          "audit entry seq 9 (users unfreeze)",
                          "audit entry seq 11 (users transfer)"}
    assert f"{req.id} holds no such signed event" in found["audit entry seq 7 (access approve)"]
    assert "does not register for lead.one" in found["audit entry seq 8 (access approve)"]
    assert "records apply by adm.wang" in found["audit entry seq 9 (users unfreeze)"]
    assert "the store has no readable AR-0042" in found["audit entry seq 11 (users transfer)"]
    # once the unfreeze is really applied, its entry matches
    store.mark_applied(req.id, K("adm.wang"), {"hosts": []})
    found = {f.entry for f in check_records(world.config(), entries).findings}
    assert "audit entry seq 9 (users unfreeze)" not in found


def test_a_missing_roster_is_a_warning_never_a_pass(world):
    world.store().create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    world.roster_path.unlink()
    check = check_records(world.config(), [])
    assert not check.ok and check.findings == []
    assert check.warning.startswith("the roster is not available")
    assert "1 access request file(s) and 0 decision(s)" in check.warning
    assert (check.exit_code(), check.exit_code(strict=True)) == (0, 1)


def test_a_damaged_request_file_is_a_finding_not_a_crash(world):
    world.store().create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    open(_path(world, "AR-0001"), "w").write("{not json")
    [finding] = check_records(world.config(), []).findings
    assert (finding.request, finding.entry) == ("AR-0001", "file")
    assert "not valid JSON" in finding.problem
