"""`opskit access` as section heads, leaders and admins run it (subprocesses).

Request -> approve by someone else -> apply by a designated admin (R-ACC-3, R-ACC-1);
two distinct approvers for special roles (R-ACC-5); separation of duties refused at
request time naming the rule (R-ACC-2); exit 2 for refusals and unknown names; every
change and every refusal in the audit log (R-AUD-3).
"""
from __future__ import annotations

import getpass
import os
import json
import subprocess
import sys

from tests.unit.accounts.test_access_support import ROSTER, World


def _audit(opskit, w) -> list[dict]:
    run = opskit("audit", "show", "--json", env=w.env())
    assert run.exit_code == 0, run.output
    return [e for e in json.loads(run.stdout) if str(e["command"]).startswith("access ")]


def _request(opskit, w, person="clerk.a", role="claims-viewer", who="hu.head") -> str:
    run = opskit("access", "request", "--person", person, "--role", role, "--reason",
                 "monthly settlement reports", "--ticket", "FORM-12", "--json", env=w.env(who))
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)["id"]


def test_request_approve_apply_end_to_end_with_audit_trail(opskit, tmp_path):
    w = World(tmp_path)
    rid = _request(opskit, w)
    assert rid == "AR-0001"
    self_approval = opskit("access", "approve", rid, env=w.env("hu.head"))
    assert self_approval.exit_code == 2 and "R-ACC-3" in self_approval.stderr
    assert "Traceback" not in self_approval.output
    early = opskit("access", "apply", rid, env=w.env("adm.wang"))
    assert early.exit_code == 2 and "not approved yet" in early.stderr
    ok = opskit("access", "approve", rid, "--comment", "checked the form", "--json",
                env=w.env("lead.one"))
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["state"] == "approved"
    for who, why in (("hu.head", "requested"), ("lead.one", "approved")):
        refused = opskit("access", "apply", rid, env=w.env(who))
        assert refused.exit_code == 2 and why in refused.stderr and "R-ACC-1" in refused.stderr
    applied = opskit("access", "apply", rid, "--json", env=w.env("adm.wang"))
    assert applied.exit_code == 0, applied.output
    data = json.loads(applied.stdout)
    assert data["state"] == "applied" and data["applier"] == "adm.wang"
    # provisioned on the person's host (the app1 sysroot) with the role's Linux group
    assert data["provisioning"]["hosts"][0]["host"] == "app1"
    assert "clerka:x:" in w.passwd() and "users:x:100:clerka" in w.group()
    plan = opskit("users", "plan", "--person", "clerk.a", "--json", env=w.env())
    assert plan.exit_code == 0, plan.output
    assert [h["steps"] for h in json.loads(plan.stdout)["hosts"]] == [[]]
    text = opskit("access", "show", rid, env=w.env())
    assert text.exit_code == 0
    assert "checked the form" in text.stdout and "history" in text.stdout
    shown = json.loads(opskit("access", "show", "ar-1", "--json", env=w.env()).stdout)
    assert [(e["event"], e["actor"]) for e in shown["events"]] == [
        ("request", "hu.head"), ("approve", "lead.one"), ("apply", "adm.wang")]
    listed = json.loads(opskit("access", "list", "--state", "applied", "--json", env=w.env()).stdout)
    assert [r["id"] for r in listed] == [rid]
    csv = opskit("access", "list", "--csv", env=w.env())
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0].startswith("id,state,person")
    # the audit log has every change and every refusal, with who and which rule
    entries = _audit(opskit, w)
    summary = [(e["command"], e["exit_code"]) for e in entries]
    assert summary[:6] == [("access request", 0), ("access approve", 2), ("access apply", 2),
                           ("access approve", 0), ("access apply", 2), ("access apply", 2)]
    assert ("access apply", 0) in summary
    refusal = entries[1]
    assert refusal["result"] == "error" and "R-ACC-3" in refusal["summary"]
    assert refusal["details"]["actor"] == "hu.head" and refusal["details"]["request"] == rid
    assert "hu.head" in refusal["operator"]          # OS user "as" the declared operator
    done = [e for e in entries if e["command"] == "access apply" and e["exit_code"] == 0][0]
    assert done["details"]["state"] == "applied" and done["details"]["actor"] == "adm.wang"
    assert done["details"]["person"] == "clerk.a" and done["details"]["role"] == "claims-viewer"
    assert done["details"]["provisioning"]["failed_hosts"] == []
    assert any("app1:clerk.a:create" in c for c in done["details"]["provisioning"]["changes"])
    apply_refusal = entries[4]
    assert apply_refusal["details"]["rule"] == "R-ACC-1"
    verify = opskit("audit", "verify", env=w.env())
    assert verify.exit_code == 0, verify.output


def test_sod_conflict_is_refused_at_request_time_naming_the_rule_and_audited(opskit, tmp_path):
    w = World(tmp_path)
    run = opskit("access", "request", "--person", "clerk.b", "--role", "refund-officer",
                 "--reason", "cover", env=w.env("hu.head"))
    assert run.exit_code == 2
    assert "R-ACC-5" in run.stderr and "refund-not-benefit" in run.stderr
    run = opskit("access", "request", "--person", "clerk.a", "--role", "sysadmin", "--reason", "x",
                 env=w.env("hu.head"))
    assert run.exit_code == 2 and "R-ACC-2" in run.stderr and "maintainer-not-operator" in run.stderr
    assert json.loads(opskit("access", "list", "--json", env=w.env()).stdout) == []
    entries = [e for e in _audit(opskit, w) if e["command"] == "access request"]
    assert [e["details"].get("rule") for e in entries] == ["R-ACC-5", "R-ACC-2"]
    assert all(e["exit_code"] == 2 and e["details"]["person"] for e in entries)


def test_special_role_needs_two_distinct_approvers(opskit, tmp_path):
    w = World(tmp_path)
    rid = _request(opskit, w, role="refund-officer")
    assert opskit("access", "approve", rid, env=w.env("lead.one")).exit_code == 0
    twice = opskit("access", "approve", rid, env=w.env("lead.one"))
    assert twice.exit_code == 2 and "R-ACC-5" in twice.stderr
    one = opskit("access", "apply", rid, env=w.env("adm.wang"))
    assert one.exit_code == 2 and "1 more approval" in one.stderr
    assert opskit("access", "approve", rid, env=w.env("lead.two")).exit_code == 0
    run = opskit("access", "apply", rid, "--json", env=w.env("adm.wang"))
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["approvers"] == ["lead.one", "lead.two"]


def test_reject_and_withdraw(opskit, tmp_path):
    w = World(tmp_path)
    a, b = _request(opskit, w), _request(opskit, w, person="clerk.b")
    no_comment = opskit("access", "reject", a, env=w.env("lead.one"))
    assert no_comment.exit_code == 2 and "--comment" in no_comment.stderr
    assert opskit("access", "reject", a, "--comment", "not this post",
                  env=w.env("lead.one")).exit_code == 0
    not_mine = opskit("access", "withdraw", b, env=w.env("hu.head2"))
    assert not_mine.exit_code == 2 and "only the requester" in not_mine.stderr
    assert opskit("access", "withdraw", b, env=w.env("hu.head")).exit_code == 0
    states = {r["id"]: r["state"]
              for r in json.loads(opskit("access", "list", "--json", env=w.env()).stdout)}
    assert states == {a: "rejected", b: "withdrawn"}
    assert json.loads(opskit("access", "list", "--person", "clerk.b", "--json",
                             env=w.env()).stdout)[0]["id"] == b
    late = opskit("access", "approve", a, env=w.env("lead.two"))
    assert late.exit_code == 2 and "is rejected" in late.stderr


def test_unknown_person_role_request_and_operator_exit_2(opskit, tmp_path):
    w = World(tmp_path)
    cases = [
        (("request", "--person", "nobody", "--role", "claims-viewer", "--reason", "r"),
         "unknown person 'nobody'"),
        (("request", "--person", "clerk.a", "--role", "nope", "--reason", "r"), "unknown role 'nope'"),
        (("request", "--person", "clerk.a", "--reason", "r"), "exactly one of --role"),
        (("approve", "AR-0099"), "unknown access request 'AR-0099'"),
        (("show", "bogus"), "not an access request id"),
        (("list", "--state", "pending"), "Invalid value"),
    ]
    for args, message in cases:
        run = opskit("access", *args, env=w.env("hu.head"))
        assert run.exit_code == 2, (args, run.output)
        assert message in run.stderr and "Traceback" not in run.output
    stranger = opskit("access", "request", "--person", "clerk.a", "--role", "claims-viewer",
                      "--reason", "r", env=w.env("mallory"))
    assert stranger.exit_code == 2 and "not the signing_key of anyone" in stranger.stderr
    entries = _audit(opskit, w)
    assert len(entries) == len(cases) + 1 and all(e["exit_code"] == 2 for e in entries)


def test_a_typed_name_alone_decides_nothing(opskit, tmp_path):
    """--operator / $OPSKIT_OPERATOR / the OS login without a key: refused (R-ACC-3)."""
    me = getpass.getuser()
    w = World(tmp_path, roster=ROSTER.replace("lead.one:  {post: leader}",
                                              f"lead.one:  {{post: leader, login: {me}}}"))
    rid = _request(opskit, w)
    for env in ({**w.env("lead.one"), "OPSKIT_SIGNING_KEY": ""}, {**w.env(), "SUDO_USER": ""}):
        run = opskit("access", "approve", rid, env=env)
        assert run.exit_code == 2 and "access decisions are signed: give --key FILE" in run.stderr
    someone_else = opskit("--operator", "lead.one", "access", "approve", rid, "--key",
                          w.key_file("lead.two"), env=w.env())
    assert someone_else.exit_code == 2 and "is lead.two's" in someone_else.stderr
    ok = opskit("access", "approve", rid, "--key", w.key_file("lead.one"), "--json", env=w.env())
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["approvers"] == ["lead.one"]
    shown = opskit("access", "show", rid, env=w.env())
    assert shown.exit_code == 0 and "signatures verified" in shown.stdout
    assert w.key("lead.one").fingerprint in shown.stdout


def test_an_edited_request_file_is_refused_by_show_list_and_apply(opskit, tmp_path):
    w = World(tmp_path)
    rid = _request(opskit, w)
    assert opskit("access", "approve", rid, env=w.env("lead.one")).exit_code == 0
    path = w.home / "access" / f"{rid}.json"
    path.write_text(path.read_text().replace('"claims-viewer"', '"sysadmin"'))
    for args, who in ((("show", rid), None), (("list",), None), (("apply", rid), "adm.wang")):
        run = opskit("access", *args, env=w.env(who))
        assert run.exit_code == 2, run.output
        assert f"{rid}.json: field 'role' differs from what hu.head signed" in run.stderr
        assert "Traceback" not in run.output
    assert "sysadmin" not in w.group() and "clerka" not in w.passwd()


def test_unfreeze_requests_are_applied_by_users_unfreeze_not_access_apply(opskit, tmp_path):
    w = World(tmp_path)
    run = opskit("access", "request", "--person", "gone.c", "--unfreeze", "--reason", "rehired",
                 "--json", env=w.env("hu.head"))
    assert run.exit_code == 0, run.output
    rid = json.loads(run.stdout)["id"]
    role = opskit("access", "request", "--person", "gone.c", "--role", "claims-viewer",
                  "--reason", "r", env=w.env("hu.head"))
    assert role.exit_code == 2 and "departed" in role.stderr and "R-ACC-6" in role.stderr
    assert opskit("access", "approve", rid, env=w.env("lead.one")).exit_code == 0
    apply = opskit("access", "apply", rid, env=w.env("adm.wang"))
    assert apply.exit_code == 2
    assert f"opskit users unfreeze gone.c --request {rid}" in apply.stderr


_APPROVE_RACE = """
import sys
from opskit.cli import main
sys.argv = ["opskit", "access", "approve", sys.argv[1], "--comment", "race"]
main()
"""


def test_concurrent_approvals_from_two_processes_do_not_corrupt_the_store(opskit, tmp_path):
    w = World(tmp_path)
    rids = [_request(opskit, w, person=p, role="refund-officer") for p in ("clerk.a", "lead.two")]
    rids.append(_request(opskit, w, person="hu.head2", role="refund-officer"))
    procs = []
    for rid in rids:
        # two different approvers at once: both approvals must land
        for who in ("lead.one", "hu.head2" if rid != rids[2] else "lead.two"):
            procs.append(subprocess.Popen([sys.executable, "-c", _APPROVE_RACE, rid],
                                          env={**os.environ, **w.env(who)},
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        # and the same approver twice at once: exactly one of them lands
        procs.append(subprocess.Popen([sys.executable, "-c", _APPROVE_RACE, rid],
                                      env={**os.environ, **w.env("lead.one")},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    codes = [p.wait(timeout=60) for p in procs]
    assert sorted(codes) == [0] * 6 + [2] * 3, [p.stderr.read() for p in procs]
    for rid in rids:
        shown = json.loads(opskit("access", "show", rid, "--json", env=w.env()).stdout)
        assert shown["state"] == "approved", shown
        assert len(shown["approvers"]) == 2 and "lead.one" in shown["approvers"]
        assert [e["event"] for e in shown["events"]] == ["request", "approve", "approve"]
    entries = _audit(opskit, w)
    assert sum(1 for e in entries if e["command"] == "access approve") == 9
    assert opskit("audit", "verify", env=w.env()).exit_code == 0


def test_a_host_down_during_apply_keeps_the_grant_and_exits_3(opskit, tmp_path):
    w = World(tmp_path)
    (tmp_path / "inventory.yaml").write_text(
        f"hosts:\n  app1:\n    sysroot: {w.sysroot}\n    groups: [app]\n"
        "  app2:\n    address: 127.0.0.1\n    port: 1\n    connect_timeout: 2\n"
        "    groups: [app]\n")
    rid = _request(opskit, w)
    assert opskit("access", "approve", rid, env=w.env("lead.one")).exit_code == 0
    run = opskit("access", "apply", rid, "--json", env=w.env("adm.wang"))
    assert run.exit_code == 3, run.output
    data = json.loads(run.stdout)
    assert data["state"] == "applied"
    assert data["next"] == "opskit users apply --person clerk.a"
    assert "clerka:x:" in w.passwd()                        # the host that was up got it
    listed = json.loads(opskit("access", "list", "--state", "applied", "--json", env=w.env()).stdout)
    assert [r["id"] for r in listed] == [rid]
    twice = opskit("access", "apply", rid, env=w.env("adm.wang"))
    assert twice.exit_code == 2 and "already applied" in twice.stderr
    entry = [e for e in _audit(opskit, w) if e["command"] == "access apply"][0]
    assert entry["exit_code"] == 3 and entry["details"]["provisioning"]["failed_hosts"] == ["app2"]


def test_no_provision_only_records_the_grant(opskit, tmp_path):
    w = World(tmp_path)
    rid = _request(opskit, w)
    assert opskit("access", "approve", rid, env=w.env("lead.one")).exit_code == 0
    run = opskit("access", "apply", rid, "--no-provision", env=w.env("adm.wang"))
    assert run.exit_code == 0, run.output
    assert "opskit users apply --person clerk.a" in run.stdout
    assert "clerka" not in w.passwd()
    assert opskit("users", "apply", "--person", "clerk.a", env=w.env()).exit_code == 0
    assert "users:x:100:clerka" in w.group()
