"""The access-request store and its rules, in-process (R-ACC-1, R-ACC-2, R-ACC-3, R-ACC-5,
R-ACC-6). The CLI, the audit trail and real concurrency are in tests/e2e/accounts/test_access_cli.py."""
from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from opskit.accounts.declared import load_declared
from opskit.accounts.requestfile import (APPLIED, APPROVED, REJECTED, REQUESTED, WITHDRAWN,
                                         applied_grants)
from opskit.accounts.requests import Refused, actor_of, open_store
from opskit.core.errors import EXIT_OPERATIONAL, EXIT_USAGE, OpskitError, UsageError
from tests.harness.signing import person_key as K
from tests.unit.accounts.test_access_support import CONFIG, ROSTER, World


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def _approved(store, person="clerk.a", role="claims-viewer", approvers=("lead.one",)):
    req = store.create(K("hu.head"), person, role=role, reason="monthly reports", ticket="T-1")
    for a in approvers:
        req = store.approve(req.id, K(a), "ok")
    return req


# --- the happy path -------------------------------------------------------------------------

def test_request_approve_apply_records_history_and_grants_the_role(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="monthly reports",
                       ticket="T-1")
    assert (req.id, req.state, req.requester, req.tier, req.needed) == (
        "AR-0001", REQUESTED, "hu.head", "query", 1)
    req = store.approve(req.id, K("lead.one"), "fine")
    assert req.state == APPROVED and req.approvers == ["lead.one"]
    req = store.apply_grant(req.id, K("adm.wang"))
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
    store.apply_grant(applied.id, K("adm.wang"))
    _approved(store, person="clerk.b")                                   # approved, not applied
    pending = store.create(K("hu.head"), "hu.head2", role="claims-clerk", reason="cover")
    rejected = store.create(K("hu.head"), "lead.two", role="claims-clerk", reason="x")
    store.reject(rejected.id, K("lead.one"), "not needed")
    withdrawn = store.create(K("hu.head"), "adm.li", role="sysadmin", reason="x")
    store.withdraw(withdrawn.id, K("hu.head"))
    assert store.get(pending.id).state == REQUESTED
    assert applied_grants(world.config(), lambda pid: [K(pid).public_raw]) == {"clerk.a": ["claims-viewer"]}


def test_applied_grants_of_a_fresh_machine_is_empty_and_creates_nothing(world):
    assert applied_grants(world.config(), lambda pid: [K(pid).public_raw]) == {}
    assert not (world.home / "access").exists()


def test_request_ids_are_sequential_and_files_are_private(world):
    store = world.store()
    ids = [store.create(K("hu.head"), p, role="claims-viewer", reason="r").id
           for p in ("clerk.a", "clerk.b", "adm.li")]
    assert ids == ["AR-0001", "AR-0002", "AR-0003"]
    path = world.home / "access" / "AR-0002.json"
    assert os.stat(path).st_mode & 0o077 == 0
    assert json.loads(path.read_text())["person"] == "clerk.b"


# --- who may do what --------------------------------------------------------------------------

def test_self_approval_and_approval_by_the_beneficiary_are_refused(world):
    store = world.store()
    req = store.create(K("hu.head2"), "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(Refused, match="R-ACC-3") as exc:
        store.approve(req.id, K("hu.head2"))          # hu.head2 is also a configured approver
    assert "may not approve" in exc.value.message
    mine = store.create(K("hu.head"), "hu.head2", role="claims-clerk", reason="r")
    with pytest.raises(Refused, match="for themselves"):
        store.approve(mine.id, K("hu.head2"))
    assert store.get(req.id).state == REQUESTED


def test_only_configured_approvers_approve_or_reject(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    for verb in (store.approve, lambda rid, who: store.reject(rid, who, "no")):
        with pytest.raises(Refused, match="not a configured approver"):
            verb(req.id, K("clerk.b"))


def test_no_approvers_configured_means_nobody_approves(tmp_path):
    w = World(tmp_path, config="accounts:\n  approvers: []\n")
    store = w.store()
    req = store.create(K("clerk.b"), "clerk.a", role="claims-viewer", reason="r")  # any requester
    with pytest.raises(Refused, match=r"approvers: \(nobody\)"):
        store.approve(req.id, K("lead.one"))


def test_only_configured_requesters_raise_requests(world):
    with pytest.raises(Refused, match="section head raises them"):
        world.store().create(K("clerk.b"), "clerk.a", role="claims-viewer", reason="r")


def test_requester_approver_beneficiary_and_non_admins_cannot_apply(world):
    store = world.store()
    req = _approved(store)
    for who, why in (("hu.head", "requested"), ("lead.one", "approved"),
                     ("clerk.b", "not a designated admin")):
        with pytest.raises(Refused, match=why) as exc:
            store.apply_grant(req.id, K(who))
        assert exc.value.rule == "R-ACC-1"
    assert store.get(req.id).state == APPROVED
    assert store.apply_grant(req.id, K("adm.li")).state == APPLIED


def test_the_beneficiary_admin_cannot_apply_their_own_grant(world):
    store = world.store()
    req = store.create(K("hu.head"), "adm.li", role="sysadmin", reason="cover for wang")
    store.approve(req.id, K("lead.one"))
    with pytest.raises(Refused, match="for themselves"):
        store.apply_grant(req.id, K("adm.li"))


def test_without_access_admins_the_admin_tier_holders_apply(tmp_path):
    w = World(tmp_path, config="accounts:\n  approvers: [lead.one]\n")
    store = w.store()
    req = _approved(store)
    assert store.admins(store.roster()) == ["adm.wang", "adm.li"]
    with pytest.raises(Refused, match="designated: adm.wang, adm.li"):
        store.apply_grant(req.id, K("lead.two"))
    assert store.apply_grant(req.id, K("adm.wang")).state == APPLIED


def test_unknown_names_in_the_configured_lists_are_a_config_error(tmp_path):
    w = World(tmp_path, config="accounts:\n  approvers: [lead.one, ghost]\n")
    store = w.store()
    req = store.create(K("clerk.b"), "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(UsageError, match="accounts.approvers.*ghost") as exc:
        store.approve(req.id, K("lead.one"))
    assert exc.value.exit_code == EXIT_USAGE


def test_an_applied_request_is_applied_once(world):
    store = world.store()
    req = _approved(store)
    store.apply_grant(req.id, K("adm.wang"))
    with pytest.raises(Refused, match="already applied by adm.wang"):
        store.apply_grant(req.id, K("adm.li"))


def test_apply_before_approval_is_refused(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(Refused, match="not approved yet: 1 more approval"):
        store.apply_grant(req.id, K("adm.wang"))


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
        store.create(K("hu.head"), person, role=role, reason="r")
    assert exc.value.rule == rule and rule in exc.value.message and sod in exc.value.message
    assert "refused at request time" in exc.value.message
    assert store.list() == []


def test_separation_of_duties_is_checked_again_at_approval_and_apply(world):
    store = world.store()
    at_approval = store.create(K("hu.head"), "hu.head2", role="sysadmin", reason="r")
    at_apply = _approved(store, person="lead.two", role="sysadmin")
    # the roster changes after the requests: both people now hold an operator-tier role
    world.write_roster(ROSTER.replace("hu.head2:  {post: section-head}",
                                                "hu.head2:  {post: section-head, roles: [claims-clerk]}")
                                 .replace("lead.two:  {post: leader}",
                                          "lead.two:  {post: leader, roles: [claims-clerk]}"))
    with pytest.raises(Refused, match="refused at approval.*maintainer-not-operator") as exc:
        store.approve(at_approval.id, K("lead.one"))
    assert exc.value.rule == "R-ACC-2"
    with pytest.raises(Refused, match="refused at apply time.*R-ACC-2"):
        store.apply_grant(at_apply.id, K("adm.wang"))
    assert store.get(at_apply.id).state == APPROVED


def test_an_applied_grant_counts_in_later_separation_of_duties_checks(world):
    store = world.store()
    first = _approved(store, person="hu.head2", role="benefit-officer",
                      approvers=("lead.one", "lead.two"))
    store.apply_grant(first.id, K("adm.wang"))
    with pytest.raises(Refused, match="refund-not-benefit"):
        store.create(K("hu.head"), "hu.head2", role="refund-officer", reason="r")


def test_inactive_people_get_no_roles_but_may_be_unfrozen(world):
    store = world.store()
    with pytest.raises(Refused, match="departed.*R-ACC-6"):
        store.create(K("hu.head"), "gone.c", role="claims-viewer", reason="r")
    req = store.create(K("hu.head"), "gone.c", unfreeze=True, reason="rehired")
    assert req.kind == "unfreeze" and req.role is None


def test_a_person_who_left_after_the_request_is_not_granted_the_role(world):
    store = world.store()
    req = _approved(store)
    world.write_roster(ROSTER.replace("clerk.a:   {post: claims-desk, login: clerka}",
                                                "clerk.a:   {post: claims-desk, login: clerka, "
                                                "status: departing}"))
    with pytest.raises(Refused, match="now departing"):
        store.apply_grant(req.id, K("adm.wang"))


def test_a_role_already_held_or_already_requested_is_refused(world):
    store = world.store()
    with pytest.raises(Refused, match="already holds role claims-clerk"):
        store.create(K("hu.head"), "clerk.a", role="claims-clerk", reason="r")
    first = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(Refused, match=f"{first.id} already asks"):
        store.create(K("hu.head2"), "clerk.a", role="claims-viewer", reason="r")


# --- mutual review for special roles -----------------------------------------------------------

def test_special_role_needs_two_distinct_approvers(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="refund-officer", reason="refund desk")
    assert req.needed == 2 and req.tier == "special"
    req = store.approve(req.id, K("lead.one"))
    assert req.state == REQUESTED and "1 more approval" in req.waiting_for()
    with pytest.raises(Refused, match="not approved yet.*mutual review") as exc:
        store.apply_grant(req.id, K("adm.wang"))
    assert exc.value.rule == "R-ACC-5"
    with pytest.raises(Refused, match="already approved.*distinct approvers") as exc:
        store.approve(req.id, K("lead.one"))
    assert exc.value.rule == "R-ACC-5"
    assert store.get(req.id).state == REQUESTED
    req = store.approve(req.id, K("lead.two"))
    assert req.state == APPROVED and req.approvers == ["lead.one", "lead.two"]
    assert store.apply_grant(req.id, K("adm.wang")).state == APPLIED


def test_more_approvals_can_be_configured_but_special_never_needs_fewer_than_two(tmp_path):
    w = World(tmp_path, config=CONFIG + "  approvals: 2\n  special_approvals: 3\n")
    store = w.store()
    assert store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r").needed == 2
    assert store.create(K("hu.head"), "clerk.a", role="refund-officer", reason="r").needed == 3


# --- reject, withdraw ---------------------------------------------------------------------------

def test_reject_needs_a_comment_and_ends_the_request(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    with pytest.raises(UsageError, match="--comment"):
        store.reject(req.id, K("lead.one"), "  ")
    req = store.reject(req.id, K("lead.one"), "not for this post")
    assert req.state == REJECTED
    with pytest.raises(Refused, match="is rejected"):
        store.approve(req.id, K("lead.two"))
    with pytest.raises(Refused, match="only an approved request"):
        store.apply_grant(req.id, K("adm.wang"))


def test_only_the_requester_withdraws_and_only_before_apply(world):
    store = world.store()
    req = _approved(store)
    with pytest.raises(Refused, match="only the requester \\(hu.head\\)"):
        store.withdraw(req.id, K("lead.one"))
    assert store.withdraw(req.id, K("hu.head"), "raised in error").state == WITHDRAWN
    done = _approved(store, person="clerk.b")
    store.apply_grant(done.id, K("adm.wang"))
    with pytest.raises(Refused, match="is applied"):
        store.withdraw(done.id, K("hu.head"))


# --- unknown names ------------------------------------------------------------------------------

def test_unknown_person_role_and_request_are_usage_errors(world):
    store = world.store()
    cases = [lambda: store.create(K("hu.head"), "nobody", role="claims-viewer", reason="r"),
             lambda: store.create(K("hu.head"), "clerk.a", role="no-such-role", reason="r"),
             lambda: store.get("AR-0042"), lambda: store.get("CR-1"),
             lambda: store.approve("AR-7", K("lead.one"))]
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
        store.create(K("hu.head"), "clerk.a", role="claims-viewer", unfreeze=True, reason="r")
    with pytest.raises(UsageError, match="--reason"):
        store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason=" ")


# --- unfreeze (the contract opskit users unfreeze calls) ----------------------------------------

def test_claim_unfreeze_checks_and_mark_applied_records(world):
    store = world.store()
    req = store.create(K("hu.head"), "gone.c", unfreeze=True, reason="rehired", ticket="HR-9")
    with pytest.raises(Refused, match="not approved yet"):
        store.claim_unfreeze(req.id, "gone.c", K("adm.wang"))
    store.approve(req.id, K("lead.one"))
    with pytest.raises(Refused, match="is for gone.c, not clerk.a"):
        store.claim_unfreeze(req.id, "clerk.a", K("adm.wang"))
    with pytest.raises(Refused, match="requested"):
        store.claim_unfreeze(req.id, "gone.c", K("hu.head"))
    with pytest.raises(Refused, match="approved"):
        store.claim_unfreeze(req.id, "gone.c", K("lead.one"))
    with pytest.raises(Refused, match="users unfreeze gone.c --request AR-0001"):
        store.apply_grant(req.id, K("adm.wang"))
    claimed = store.claim_unfreeze(req.id, "gone.c", K("adm.wang"))
    assert claimed.state == APPROVED and store.get(req.id).events == claimed.events  # wrote nothing
    done = store.mark_applied(req.id, K("adm.wang"), {"hosts": ["app1", "app2"]})
    assert done.state == APPLIED and done.events[-1]["details"] == {"hosts": ["app1", "app2"]}
    with pytest.raises(Refused, match="already applied"):
        store.claim_unfreeze(req.id, "gone.c", K("adm.li"))
    assert applied_grants(world.config(), lambda pid: [K(pid).public_raw]) == {}       # an unfreeze grants no role


def test_claim_unfreeze_refuses_a_role_request(world):
    store = world.store()
    req = _approved(store)
    with pytest.raises(Refused, match="not an unfreeze"):
        store.claim_unfreeze(req.id, "clerk.a", K("adm.wang"))


def test_mark_applied_of_a_role_grant_runs_the_apply_checks(world):
    store = world.store()
    req = _approved(store)
    with pytest.raises(Refused, match="R-ACC-1"):
        store.mark_applied(req.id, K("lead.one"), {})
    assert store.mark_applied(req.id, K("adm.li"), {"via": "test"}).state == APPLIED


# --- who is acting -------------------------------------------------------------------------------

def test_the_actor_is_whoever_signs_never_a_typed_name(world):
    roster = world.store().roster()
    assert actor_of(roster, K("clerk.a")) == "clerk.a"
    assert actor_of(roster, K("clerk.a"), "clerka") == "clerk.a"     # a login names its person
    with pytest.raises(Refused, match="is not the signing_key of anyone") as exc:
        actor_of(roster, K("mallory"), "lead.one")                   # naming lead.one is no help
    assert exc.value.exit_code == EXIT_USAGE
    with pytest.raises(Refused, match="declared as 'lead.one' but the key .* is clerk.a's"):
        actor_of(roster, K("clerk.a"), "lead.one")


# --- forged approvals (R-ACC-3, R-ACC-5, R-DAT-2) ----------------------------------------------

def _file(world, rid):
    return world.home / "access" / f"{rid}.json"


def _edit(world, rid, change):
    path = _file(world, rid)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_an_unregistered_key_decides_nothing(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    for step in (lambda: store.approve(req.id, K("mallory")),
                 lambda: store.create(K("mallory"), "clerk.b", role="claims-viewer", reason="r")):
        with pytest.raises(Refused, match="not the signing_key of anyone"):
            step()
    # a key removed from the roster (skip: lead.one has none now) no longer approves
    world.write_roster(ROSTER, skip=("lead.one",))
    with pytest.raises(Refused, match="not the signing_key of anyone"):
        store.approve(req.id, K("lead.one"))
    assert store.get(req.id).state == REQUESTED


def test_the_same_key_twice_is_one_approval_even_in_a_hand_made_event(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="refund-officer", reason="r")
    store.approve(req.id, K("lead.one"))
    with pytest.raises(Refused, match="already approved"):
        store.approve(req.id, K("lead.one"))
    # copy lead.one's signed approval as lead.two's: refused when the file is read
    _edit(world, req.id, lambda d: d["events"].append({**d["events"][1], "actor": "lead.two"}))
    for read in (lambda: store.get(req.id), store.list,
                 lambda: store.apply_grant(req.id, K("adm.wang"))):
        with pytest.raises(Refused, match=r"event 3 \(approve by lead.two\) is signed with key "
                                          r"SHA256:\S+, which the roster does not register"):
            read()


def test_a_signature_over_another_request_does_not_verify(world):
    store = world.store()
    a = _approved(store)
    b = store.create(K("hu.head"), "clerk.b", role="claims-viewer", reason="r")
    approval = json.loads(_file(world, a.id).read_text())["events"][1]
    _edit(world, b.id, lambda d: d["events"].append(approval))
    with pytest.raises(Refused, match=r"event 2 \(approve by lead.one\): the signature does "
                                      r"not verify \(it was made over another request") as exc:
        store.get(b.id)
    assert f"{b.id}.json" in exc.value.message and exc.value.rule == "R-ACC-3"


@pytest.mark.parametrize("field,value", [("role", "sysadmin"), ("person", "clerk.b"),
                                         ("needed", 0), ("reason", "other")])
def test_request_content_edited_after_approval_is_refused_naming_the_field(world, field, value):
    store = world.store()
    req = _approved(store)
    _edit(world, req.id, lambda d: d.update({field: value}))
    with pytest.raises(Refused, match=f"field '{field}' differs from what hu.head signed"):
        store.apply_grant(req.id, K("adm.wang"))
    with pytest.raises(Refused, match=f"{req.id}.json: field '{field}'"):
        store.get(req.id)


def test_an_edited_comment_or_a_removed_event_breaks_a_signature(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="refund-officer", reason="r")
    store.reject(req.id, K("lead.one"), "no refunds for clerks")
    _edit(world, req.id, lambda d: d["events"][1].update(comment="fine"))
    with pytest.raises(Refused, match=r"event 2 \(reject by lead.one\): the signature"):
        store.get(req.id)
    other = store.create(K("hu.head"), "clerk.b", role="claims-viewer", reason="r")
    store.approve(other.id, K("lead.one"))
    store.withdraw(other.id, K("hu.head"), "not needed")
    _edit(world, other.id, lambda d: d["events"].pop(1))        # drop the approval
    with pytest.raises(Refused, match=r"event 2 \(withdraw by hu.head\): the signature"):
        store.get(other.id)


def test_a_key_holder_with_modified_code_cannot_approve_alone(world):
    """hu.head signs an approval of their own request with their own (valid) key: the
    signature verifies, the workflow check over the signed events refuses it."""
    from opskit.accounts.requestfile import read_request, sign_event, write_request
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    forged = read_request(str(_file(world, req.id)))
    forged.events.append(sign_event(forged, {"event": "approve", "actor": "hu.head",
                                             "time": "2026-01-01T00:00:00+00:00",
                                             "comment": ""}, K("hu.head")))
    write_request(str(_file(world, req.id)), forged.to_file())
    with pytest.raises(Refused, match=r"event 2 \(approve by hu.head\) breaks the workflow"):
        store.apply_grant(req.id, K("adm.wang"))


def test_a_forged_applied_grant_stops_every_reader_of_the_declared_roster(world):
    store = world.store()
    req = _approved(store)
    store.apply_grant(req.id, K("adm.wang"))
    _edit(world, req.id, lambda d: d.update(role="sysadmin"))
    with pytest.raises(Refused, match="field 'role' differs"):
        load_declared(world.config())


def test_an_unsigned_request_file_is_refused(world):
    store = world.store()
    req = _approved(store)
    _edit(world, req.id, lambda d: [e.pop("signature") for e in d["events"]])
    with pytest.raises(Refused, match="it is not signed"):
        store.get(req.id)


def test_two_people_with_one_signing_key_is_a_roster_error(world):
    from opskit.core.errors import ConfigError
    from tests.harness.signing import public_line
    world.roster_path.write_text(world.roster_path.read_text().replace(
        public_line("lead.two"), public_line("lead.one")))
    with pytest.raises(ConfigError, match=r"roster.yaml:\d+.*people.lead.two.signing_key.*"
                                          "also lead.one's"):
        load_declared(world.config())


# --- storage -------------------------------------------------------------------------------------

def test_leftover_temp_files_are_ignored_and_damaged_files_are_named(world):
    store = world.store()
    req = store.create(K("hu.head"), "clerk.a", role="claims-viewer", reason="r")
    (world.home / "access" / ".AR-0002.json.tmp.999").write_text("{half")
    assert [r.id for r in store.list()] == [req.id]
    (world.home / "access" / "AR-0001.json").write_text('{"format": 1, "id": "AR-0001"}')
    with pytest.raises(OpskitError, match="AR-0001.json is damaged") as exc:
        store.list()
    assert exc.value.exit_code == EXIT_OPERATIONAL
    with pytest.raises(OpskitError, match="damaged"):
        applied_grants(world.config(), lambda pid: [K(pid).public_raw])


def test_list_filters_by_state_and_person(world):
    store = world.store()
    a = _approved(store)
    b = store.create(K("hu.head"), "clerk.b", role="claims-viewer", reason="r")
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
            ids.append(store.create(K("hu.head"), person, role=role, reason="r").id)
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


# --- transfers (#20 item 4) -------------------------------------------------------------------

def test_a_transfer_request_is_claimed_by_a_designated_admin_and_never_by_access_apply(world):
    store = world.store()
    with pytest.raises(Refused, match="R-ACC-2 separation of duties .maintainer-not-special"):
        store.create(K("hu.head"), "clerk.b", transfer_to="system-maintainer", reason="r")
    req = store.create(K("hu.head"), "clerk.a", transfer_to="section-head", reason="promotion")
    assert (req.kind, req.post, req.what) == ("transfer", "section-head",
                                              "transfer to post section-head")
    with pytest.raises(Refused, match="not approved yet"):
        store.claim_transfer(req.id, "clerk.a", "section-head", K("adm.wang"))
    store.approve(req.id, K("lead.one"))
    with pytest.raises(Refused, match="not clerk.a to leader"):
        store.claim_transfer(req.id, "clerk.a", "leader", K("adm.wang"))
    with pytest.raises(Refused, match="for themselves|not a designated admin"):
        store.claim_transfer(req.id, "clerk.a", "section-head", K("clerk.a"))
    with pytest.raises(Refused, match="users transfer clerk.a --to-post section-head"):
        store.apply_grant(req.id, K("adm.wang"))
    with pytest.raises(Refused, match="not a transfer"):
        store.claim_transfer(_approved(store, person="clerk.b").id, "clerk.b", "leader",
                             K("adm.wang"))
    assert store.claim_transfer(req.id, "clerk.a", "section-head", K("adm.wang")).state == APPROVED
    done = store.mark_applied(req.id, K("adm.wang"), {"hosts": ["app1"]})
    assert done.state == APPLIED
    _edit(world, req.id, lambda d: d.update(post="system-maintainer"))
    with pytest.raises(Refused, match="field 'post' differs"):
        store.get(req.id)
