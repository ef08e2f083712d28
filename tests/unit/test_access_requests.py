"""The access-request store and its rules, in-process (R-ACC-1, R-ACC-2, R-ACC-3, R-ACC-5,
R-ACC-6). The CLI, the audit trail and real concurrency are in tests/e2e/test_access_cli.py."""
from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from opskit.accounts.declared import load_declared
from opskit.accounts.requestfile import (APPLIED, APPROVED, REJECTED, REQUESTED, WITHDRAWN,
                                         applied_grants)
from opskit.accounts.requests import Refused, open_store, resolve_actor
from opskit.core.errors import EXIT_OPERATIONAL, EXIT_USAGE, OpskitError, UsageError
from tests.unit.test_access_support import CONFIG, ROSTER, World


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def _approved(store, person="clerk.a", role="claims-viewer", approvers=("lead.one",)):
    req = store.create("hu.head", person, role=role, reason="monthly reports", ticket="T-1")
    for a in approvers:
        req = store.approve(req.id, a, "ok")
    return req


# --- the happy path -------------------------------------------------------------------------

def test_request_approve_apply_records_history_and_grants_the_role(world):
    store = world.store()
    req = store.create("hu.head", "clerk.a", role="claims-viewer", reason="monthly reports",
                       ticket="T-1")
    assert (req.id, req.state, req.requester, req.tier, req.needed) == (
        "AR-0001", REQUESTED, "hu.head", "query", 1)
    req = store.approve(req.id, "lead.one", "fine")
    assert req.state == APPROVED and req.approvers == ["lead.one"]
    req = store.apply_grant(req.id, "adm.wang")
    assert req.state == APPLIED and req.applier == "adm.wang"
    again = store.get("ar-1")                      # ids are forgiving on input
    assert [e["event"] for e in again.events] == ["request", "approve", "apply"]
    assert [e["actor"] for e in again.events] == ["hu.head", "lead.one", "adm.wang"]
    assert again.events[1]["comment"] == "fine" and all(e["time"] for e in again.events)
    # the declared roster now includes the grant everywhere (provisioning, perms)
    roster = load_declared(world.config())
    assert "claims-viewer" in roster.roles_of(roster.person("clerk.a"))


def test_applied_grants_lists_applied_role_grants_only(world):
    store = world.store()
    applied = _approved(store)
    store.apply_grant(applied.id, "adm.wang")
    _approved(store, person="clerk.b")                                   # approved, not applied
    pending = store.create("hu.head", "hu.head2", role="claims-clerk", reason="cover")
    rejected = store.create("hu.head", "lead.two", role="claims-clerk", reason="x")
    store.reject(rejected.id, "lead.one", "not needed")
    withdrawn = store.create("hu.head", "adm.li", role="sysadmin", reason="x")
    store.withdraw(withdrawn.id, "hu.head")
    assert store.get(pending.id).state == REQUESTED
    assert applied_grants(world.config()) == {"clerk.a": ["claims-viewer"]}


def test_applied_grants_of_a_fresh_machine_is_empty_and_creates_nothing(world):
    assert applied_grants(world.config()) == {}
    assert not (world.home / "access").exists()


def test_request_ids_are_sequential_and_files_are_private(world):
    store = world.store()
    ids = [store.create("hu.head", p, role="claims-viewer", reason="r").id
           for p in ("clerk.a", "clerk.b", "adm.li")]
    assert ids == ["AR-0001", "AR-0002", "AR-0003"]
    path = world.home / "access" / "AR-0002.json"
    assert os.stat(path).st_mode & 0o077 == 0
    assert json.loads(path.read_text())["person"] == "clerk.b"


# --- who may do what --------------------------------------------------------------------------

def test_self_approval_and_approval_by_the_beneficiary_are_refused(world):
    store = world.store()
    req = store.create("hu.head2", "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(Refused, match="R-ACC-3") as exc:
        store.approve(req.id, "hu.head2")          # hu.head2 is also a configured approver
    assert "may not approve" in exc.value.message
    mine = store.create("hu.head", "hu.head2", role="claims-clerk", reason="r")
    with pytest.raises(Refused, match="for themselves"):
        store.approve(mine.id, "hu.head2")
    assert store.get(req.id).state == REQUESTED


def test_only_configured_approvers_approve_or_reject(world):
    store = world.store()
    req = store.create("hu.head", "clerk.a", role="claims-viewer", reason="r")
    for verb in (store.approve, lambda rid, who: store.reject(rid, who, "no")):
        with pytest.raises(Refused, match="not a configured approver"):
            verb(req.id, "clerk.b")


def test_no_approvers_configured_means_nobody_approves(tmp_path):
    w = World(tmp_path, config="accounts:\n  approvers: []\n")
    store = w.store()
    req = store.create("clerk.b", "clerk.a", role="claims-viewer", reason="r")  # any requester
    with pytest.raises(Refused, match=r"approvers: \(nobody\)"):
        store.approve(req.id, "lead.one")


def test_only_configured_requesters_raise_requests(world):
    with pytest.raises(Refused, match="section head raises them"):
        world.store().create("clerk.b", "clerk.a", role="claims-viewer", reason="r")


def test_requester_approver_beneficiary_and_non_admins_cannot_apply(world):
    store = world.store()
    req = _approved(store)
    for who, why in (("hu.head", "requested"), ("lead.one", "approved"),
                     ("clerk.b", "not a designated admin")):
        with pytest.raises(Refused, match=why) as exc:
            store.apply_grant(req.id, who)
        assert exc.value.rule == "R-ACC-1"
    assert store.get(req.id).state == APPROVED
    assert store.apply_grant(req.id, "adm.li").state == APPLIED


def test_the_beneficiary_admin_cannot_apply_their_own_grant(world):
    store = world.store()
    req = store.create("hu.head", "adm.li", role="sysadmin", reason="cover for wang")
    store.approve(req.id, "lead.one")
    with pytest.raises(Refused, match="for themselves"):
        store.apply_grant(req.id, "adm.li")


def test_without_access_admins_the_admin_tier_holders_apply(tmp_path):
    w = World(tmp_path, config="accounts:\n  approvers: [lead.one]\n")
    store = w.store()
    req = _approved(store)
    assert store.admins(store.roster()) == ["adm.wang", "adm.li"]
    with pytest.raises(Refused, match="designated: adm.wang, adm.li"):
        store.apply_grant(req.id, "lead.two")
    assert store.apply_grant(req.id, "adm.wang").state == APPLIED


def test_unknown_names_in_the_configured_lists_are_a_config_error(tmp_path):
    w = World(tmp_path, config="accounts:\n  approvers: [lead.one, ghost]\n")
    store = w.store()
    req = store.create("clerk.b", "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(UsageError, match="accounts.approvers.*ghost") as exc:
        store.approve(req.id, "lead.one")
    assert exc.value.exit_code == EXIT_USAGE


def test_an_applied_request_is_applied_once(world):
    store = world.store()
    req = _approved(store)
    store.apply_grant(req.id, "adm.wang")
    with pytest.raises(Refused, match="already applied by adm.wang"):
        store.apply_grant(req.id, "adm.li")


def test_apply_before_approval_is_refused(world):
    store = world.store()
    req = store.create("hu.head", "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(Refused, match="not approved yet: 1 more approval"):
        store.apply_grant(req.id, "adm.wang")


# --- separation of duties and status -----------------------------------------------------------

@pytest.mark.parametrize("person,role,rule,sod", [
    ("clerk.a", "sysadmin", "R-ACC-2", "maintainer-not-operator"),
    ("adm.wang", "refund-officer", "R-ACC-2", "maintainer-not-special"),
    ("clerk.b", "refund-officer", "R-ACC-5", "refund-not-benefit"),
])
def test_a_request_breaking_separation_of_duties_is_refused_naming_the_rule(world, person, role,
                                                                           rule, sod):
    store = world.store()
    with pytest.raises(Refused) as exc:
        store.create("hu.head", person, role=role, reason="r")
    assert exc.value.rule == rule and rule in exc.value.message and sod in exc.value.message
    assert "refused at request time" in exc.value.message
    assert store.list() == []


def test_separation_of_duties_is_checked_again_at_approval_and_apply(world):
    store = world.store()
    at_approval = store.create("hu.head", "hu.head2", role="sysadmin", reason="r")
    at_apply = _approved(store, person="lead.two", role="sysadmin")
    # the roster changes after the requests: both people now hold an operator-tier role
    world.roster_path.write_text(ROSTER.replace("hu.head2:  {post: section-head}",
                                                "hu.head2:  {post: section-head, roles: [claims-clerk]}")
                                 .replace("lead.two:  {post: leader}",
                                          "lead.two:  {post: leader, roles: [claims-clerk]}"))
    with pytest.raises(Refused, match="refused at approval.*maintainer-not-operator") as exc:
        store.approve(at_approval.id, "lead.one")
    assert exc.value.rule == "R-ACC-2"
    with pytest.raises(Refused, match="refused at apply time.*R-ACC-2"):
        store.apply_grant(at_apply.id, "adm.wang")
    assert store.get(at_apply.id).state == APPROVED


def test_an_applied_grant_counts_in_later_separation_of_duties_checks(world):
    store = world.store()
    first = _approved(store, person="hu.head2", role="benefit-officer",
                      approvers=("lead.one", "lead.two"))
    store.apply_grant(first.id, "adm.wang")
    with pytest.raises(Refused, match="refund-not-benefit"):
        store.create("hu.head", "hu.head2", role="refund-officer", reason="r")


def test_inactive_people_get_no_roles_but_may_be_unfrozen(world):
    store = world.store()
    with pytest.raises(Refused, match="departed.*R-ACC-6"):
        store.create("hu.head", "gone.c", role="claims-viewer", reason="r")
    req = store.create("hu.head", "gone.c", unfreeze=True, reason="rehired")
    assert req.kind == "unfreeze" and req.role is None


def test_a_person_who_left_after_the_request_is_not_granted_the_role(world):
    store = world.store()
    req = _approved(store)
    world.roster_path.write_text(ROSTER.replace("clerk.a:   {post: claims-desk, login: clerka}",
                                                "clerk.a:   {post: claims-desk, login: clerka, "
                                                "status: departing}"))
    with pytest.raises(Refused, match="now departing"):
        store.apply_grant(req.id, "adm.wang")


def test_a_role_already_held_or_already_requested_is_refused(world):
    store = world.store()
    with pytest.raises(Refused, match="already holds role claims-clerk"):
        store.create("hu.head", "clerk.a", role="claims-clerk", reason="r")
    first = store.create("hu.head", "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(Refused, match=f"{first.id} already asks"):
        store.create("hu.head2", "clerk.a", role="claims-viewer", reason="r")


# --- mutual review for special roles -----------------------------------------------------------

def test_special_role_needs_two_distinct_approvers(world):
    store = world.store()
    req = store.create("hu.head", "clerk.a", role="refund-officer", reason="refund desk")
    assert req.needed == 2 and req.tier == "special"
    req = store.approve(req.id, "lead.one")
    assert req.state == REQUESTED and "1 more approval" in req.waiting_for()
    with pytest.raises(Refused, match="not approved yet.*mutual review") as exc:
        store.apply_grant(req.id, "adm.wang")
    assert exc.value.rule == "R-ACC-5"
    with pytest.raises(Refused, match="already approved.*distinct approvers") as exc:
        store.approve(req.id, "lead.one")
    assert exc.value.rule == "R-ACC-5"
    assert store.get(req.id).state == REQUESTED
    req = store.approve(req.id, "lead.two")
    assert req.state == APPROVED and req.approvers == ["lead.one", "lead.two"]
    assert store.apply_grant(req.id, "adm.wang").state == APPLIED


def test_more_approvals_can_be_configured_but_special_never_needs_fewer_than_two(tmp_path):
    w = World(tmp_path, config=CONFIG + "  approvals: 2\n  special_approvals: 3\n")
    store = w.store()
    assert store.create("hu.head", "clerk.a", role="claims-viewer", reason="r").needed == 2
    assert store.create("hu.head", "clerk.a", role="refund-officer", reason="r").needed == 3


# --- reject, withdraw ---------------------------------------------------------------------------

def test_reject_needs_a_comment_and_ends_the_request(world):
    store = world.store()
    req = store.create("hu.head", "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(UsageError, match="--comment"):
        store.reject(req.id, "lead.one", "  ")
    req = store.reject(req.id, "lead.one", "not for this post")
    assert req.state == REJECTED
    with pytest.raises(Refused, match="is rejected"):
        store.approve(req.id, "lead.two")
    with pytest.raises(Refused, match="only an approved request"):
        store.apply_grant(req.id, "adm.wang")


def test_only_the_requester_withdraws_and_only_before_apply(world):
    store = world.store()
    req = _approved(store)
    with pytest.raises(Refused, match="only the requester \\(hu.head\\)"):
        store.withdraw(req.id, "lead.one")
    assert store.withdraw(req.id, "hu.head", "raised in error").state == WITHDRAWN
    done = _approved(store, person="clerk.b")
    store.apply_grant(done.id, "adm.wang")
    with pytest.raises(Refused, match="is applied"):
        store.withdraw(done.id, "hu.head")


# --- unknown names ------------------------------------------------------------------------------

def test_unknown_person_role_and_request_are_usage_errors(world):
    store = world.store()
    cases = [lambda: store.create("hu.head", "nobody", role="claims-viewer", reason="r"),
             lambda: store.create("hu.head", "clerk.a", role="no-such-role", reason="r"),
             lambda: store.get("AR-0042"), lambda: store.get("CR-1"),
             lambda: store.approve("AR-7", "lead.one")]
    messages = []
    for case in cases:
        with pytest.raises(UsageError) as exc:
            case()
        assert exc.value.exit_code == EXIT_USAGE
        messages.append(exc.value.message)
    assert "unknown person 'nobody'" in messages[0]
    assert "unknown role 'no-such-role'" in messages[1] and "claims-viewer" in messages[1]
    assert "unknown access request 'AR-0042'" in messages[2]
    assert "not an access request id" in messages[3]


def test_role_and_unfreeze_are_exclusive_and_a_reason_is_required(world):
    store = world.store()
    with pytest.raises(UsageError, match="exactly one"):
        store.create("hu.head", "clerk.a", role="claims-viewer", unfreeze=True, reason="r")
    with pytest.raises(UsageError, match="--reason"):
        store.create("hu.head", "clerk.a", role="claims-viewer", reason=" ")


# --- unfreeze (the contract opskit users unfreeze calls) ----------------------------------------

def test_claim_unfreeze_checks_and_mark_applied_records(world):
    store = world.store()
    req = store.create("hu.head", "gone.c", unfreeze=True, reason="rehired", ticket="HR-9")
    with pytest.raises(Refused, match="not approved yet"):
        store.claim_unfreeze(req.id, "gone.c", "adm.wang")
    store.approve(req.id, "lead.one")
    with pytest.raises(Refused, match="is for gone.c, not clerk.a"):
        store.claim_unfreeze(req.id, "clerk.a", "adm.wang")
    with pytest.raises(Refused, match="requested"):
        store.claim_unfreeze(req.id, "gone.c", "hu.head")
    with pytest.raises(Refused, match="approved"):
        store.claim_unfreeze(req.id, "gone.c", "lead.one")
    with pytest.raises(Refused, match="users unfreeze gone.c --request AR-0001"):
        store.apply_grant(req.id, "adm.wang")
    claimed = store.claim_unfreeze(req.id, "gone.c", "adm.wang")
    assert claimed.state == APPROVED and store.get(req.id).events == claimed.events  # wrote nothing
    done = store.mark_applied(req.id, "adm.wang", {"hosts": ["app1", "app2"]})
    assert done.state == APPLIED and done.events[-1]["details"] == {"hosts": ["app1", "app2"]}
    with pytest.raises(Refused, match="already applied"):
        store.claim_unfreeze(req.id, "gone.c", "adm.li")
    assert applied_grants(world.config()) == {}       # an unfreeze grants no role


def test_claim_unfreeze_refuses_a_role_request(world):
    store = world.store()
    req = _approved(store)
    with pytest.raises(Refused, match="not an unfreeze"):
        store.claim_unfreeze(req.id, "clerk.a", "adm.wang")


def test_mark_applied_of_a_role_grant_runs_the_apply_checks(world):
    store = world.store()
    req = _approved(store)
    with pytest.raises(Refused, match="R-ACC-1"):
        store.mark_applied(req.id, "lead.one", {})
    assert store.mark_applied(req.id, "adm.li", {"via": "test"}).state == APPLIED


# --- who is acting -------------------------------------------------------------------------------

def test_resolve_actor_by_declared_id_login_or_os_login(world, monkeypatch):
    roster = world.store().roster()
    assert resolve_actor(roster, "clerk.a") == "clerk.a"
    assert resolve_actor(roster, "clerka") == "clerk.a"          # a login names its person
    assert resolve_actor(roster, None, login="clerka") == "clerk.a"
    with pytest.raises(Refused, match="operator 'mallory' is not a person"):
        resolve_actor(roster, "mallory")
    with pytest.raises(Refused, match="OS user 'root' is not a login"):
        resolve_actor(roster, None, login="root")
    # SUDO_USER names the person only when we really run as root through sudo
    monkeypatch.setenv("SUDO_USER", "clerka")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert resolve_actor(roster, None) == "clerk.a"
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    monkeypatch.setattr("getpass.getuser", lambda: "nobody-here")
    with pytest.raises(Refused, match="OS user 'nobody-here'"):
        resolve_actor(roster, None)


# --- storage -------------------------------------------------------------------------------------

def test_leftover_temp_files_are_ignored_and_damaged_files_are_named(world):
    store = world.store()
    req = store.create("hu.head", "clerk.a", role="claims-viewer", reason="r")
    (world.home / "access" / ".AR-0002.json.tmp.999").write_text("{half")
    assert [r.id for r in store.list()] == [req.id]
    (world.home / "access" / "AR-0001.json").write_text('{"format": 1, "id": "AR-0001"}')
    with pytest.raises(OpskitError, match="AR-0001.json is damaged") as exc:
        store.list()
    assert exc.value.exit_code == EXIT_OPERATIONAL
    with pytest.raises(OpskitError, match="damaged"):
        applied_grants(world.config())


def test_list_filters_by_state_and_person(world):
    store = world.store()
    a = _approved(store)
    b = store.create("hu.head", "clerk.b", role="claims-viewer", reason="r")
    assert [r.id for r in store.list(state=APPROVED)] == [a.id]
    assert [r.id for r in store.list(person="clerk.b")] == [b.id]
    assert store.list(state=APPLIED) == []


def _create_many(config_path, home, n, q):
    os.environ["OPSKIT_HOME"] = home
    from opskit.settings import load_config
    store = open_store(load_config(config_path))
    people = ["clerk.a", "clerk.b", "adm.li", "adm.wang", "lead.one", "lead.two"]
    ids = []
    for i in range(n):
        person = people[i % len(people)]
        role = ["claims-viewer", "claims-clerk", "refund-officer"][i // len(people)]
        try:
            ids.append(store.create("hu.head", person, role=role, reason="r").id)
        except Refused:
            pass
    q.put(ids)


def test_concurrent_writers_get_distinct_ids(world):
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_create_many,
                         args=(str(world.config_path), str(world.home), 9, q)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    ids = [i for part in got for i in part]
    assert len(ids) == len(set(ids))
    stored = world.store().list()
    assert sorted(r.id for r in stored) == sorted(ids)
    # each (person, role) asked once at most: the duplicate check ran under the lock
    pairs = [(r.person, r.role) for r in stored]
    assert len(pairs) == len(set(pairs))
