"""Signed reviews: business errors (R-AUD-5) and two-person review of high-risk
operations (R-SEC-2), with every refusal; security events and their floor (R-AUD-4)."""
import datetime as dt

import pytest

from opskit.core.errors import ConfigError, Refused, UsageError
from opskit.core.signing import generate
from opskit.incidents import business, events, twoperson

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.timezone.utc)


def h(n):
    return T0 + dt.timedelta(hours=n)


@pytest.fixture
def keys(tmp_path):
    """Three people's keys: name -> (signer, public line)."""
    return {n: generate(str(tmp_path / "keys" / n), n) for n in ("li", "wang", "zhao")}


def _registered(keys, *names):
    return {n: keys[n][1] for n in names}


# --- business errors ---------------------------------------------------------------

def _report(state, occurred=T0, now=None):
    return business.report(state, actor="wang", grade="较大", description="paid twice",
                           occurred=occurred, now=now or h(1))


def test_business_error_clocks(tmp_path):
    state = str(tmp_path)
    err = _report(state, now=h(25))                       # reported 25 h after: late
    assert err.grade == "larger"
    states = {d.name: d.state(h(25)) for d in err.deadlines()}
    assert states == {"reported": "missed", "rectified": "open"}
    err = _report(state, now=h(23))
    assert err.deadlines()[0].state(h(23)) == "kept"
    assert err.deadlines()[1].state(h(7 * 24 + 1)) == "missed"
    business.rectify(state, err.id, actor="wang", measures="m", owner="wang", effect="e",
                     corrections=["CR-12"], at=h(6 * 24), now=h(6 * 24))
    assert business.get(state, err.id).deadlines()[1].state(h(999)) == "kept"


def test_a_supervisor_review_is_a_verified_signature(tmp_path, keys):
    state = str(tmp_path)
    err = _report(state)
    err = business.review(state, err.id, signer=keys["li"][0],
                          supervisors=_registered(keys, "li"), comment="ok", now=h(2))
    assert [r["by"] for r in err.reviews] == ["li"]
    assert business.valid_reviews(err, _registered(keys, "li")) == ["li"]
    # a review whose key is no longer registered does not count
    assert business.valid_reviews(err, _registered(keys, "zhao")) == []


def test_review_refusals_unregistered_self_and_same_key_twice(tmp_path, keys):
    state = str(tmp_path)
    err = _report(state)
    sups = _registered(keys, "li", "wang")
    with pytest.raises(Refused, match="not registered"):
        business.review(state, err.id, signer=keys["zhao"][0], supervisors=sups, comment="",
                        now=h(2))
    with pytest.raises(Refused, match="self-approval"):
        business.review(state, err.id, signer=keys["wang"][0], supervisors=sups, comment="",
                        now=h(2))
    business.review(state, err.id, signer=keys["li"][0], supervisors=sups, comment="",
                    now=h(2))
    with pytest.raises(Refused, match="same key twice"):
        business.review(state, err.id, signer=keys["li"][0], supervisors=sups, comment="",
                        now=h(3))
    assert len(business.get(state, err.id).reviews) == 1     # refusals wrote nothing


def test_close_needs_review_and_rectification(tmp_path, keys):
    state = str(tmp_path)
    sups = _registered(keys, "li")
    err = _report(state)
    with pytest.raises(Refused, match="review"):
        business.close(state, err.id, actor="wang", supervisors=sups, now=h(3))
    business.review(state, err.id, signer=keys["li"][0], supervisors=sups, comment="",
                    now=h(2))
    with pytest.raises(Refused, match="rectification"):
        business.close(state, err.id, actor="wang", supervisors=sups, now=h(3))
    with pytest.raises(UsageError, match="correction request id"):
        business.rectify(state, err.id, actor="w", measures="m", owner="o", effect="e",
                         corrections=["drop table"], at=h(3), now=h(3))
    business.rectify(state, err.id, actor="w", measures="m", owner="o", effect="e",
                     corrections=["cr-7"], at=h(3), now=h(3))
    err = business.close(state, err.id, actor="wang", supervisors=sups, now=h(4))
    assert err.state == "closed" and err.rectification["corrections"] == ["CR-7"]


def test_a_malformed_registered_key_is_a_config_error(tmp_path, keys):
    err = _report(str(tmp_path))
    with pytest.raises(ConfigError, match="incidents.supervisors.li"):
        business.review(str(tmp_path), err.id, signer=keys["li"][0],
                        supervisors={"li": "ssh-rsa AAAA"}, comment="", now=h(2))


# --- two-person review -------------------------------------------------------------

SUBJECT = twoperson.subject_of("backup forget", {"repository": "r1", "snapshots": ["a", "b"]})


def _approve(state, keys, who, for_person="zhao", reviewers=None, now=h(1)):
    return twoperson.approve(state, operation="backup forget", subject=SUBJECT,
                             for_person=for_person, signer=keys[who][0],
                             reviewers=reviewers or _registered(keys, "li", "wang", "zhao"),
                             comment="", now=now)


def _check(state, keys, runner="zhao", required=1, now=h(2), reviewers=None):
    return twoperson.check(state, operation="backup forget", subject=SUBJECT, runner=runner,
                           reviewers=reviewers or _registered(keys, "li", "wang", "zhao"),
                           required=required, valid_hours=24, now=now)


def test_an_approval_lets_the_run_go_once(tmp_path, keys):
    state = str(tmp_path)
    with pytest.raises(Refused, match="has 0") as exc:
        _check(state, keys)
    assert exc.value.rule == "R-SEC-2" and "opskit approve-op" in exc.value.hint
    _approve(state, keys, "li")
    assert _check(state, keys) == ["li"]
    with pytest.raises(Refused):                          # used up
        _check(state, keys)


def test_approval_refusals(tmp_path, keys):
    state = str(tmp_path)
    with pytest.raises(Refused, match="self-approval"):
        _approve(state, keys, "zhao")
    with pytest.raises(Refused, match="not registered"):
        _approve(state, keys, "li", reviewers=_registered(keys, "wang"))
    _approve(state, keys, "li")
    with pytest.raises(Refused, match="same key twice"):
        _approve(state, keys, "li")
    with pytest.raises(UsageError, match="subject"):
        twoperson.approve(state, operation="backup forget", subject="abc", for_person="zhao",
                          signer=keys["li"][0], reviewers=_registered(keys, "li"), comment="",
                          now=h(1))


def test_the_check_refuses_other_runners_other_subjects_expired_and_deregistered(tmp_path, keys):
    state = str(tmp_path)
    _approve(state, keys, "li")
    with pytest.raises(Refused):                          # approved for zhao, run by wang
        _check(state, keys, runner="wang")
    with pytest.raises(Refused):                          # 25 h later: expired
        _check(state, keys, now=h(26))
    with pytest.raises(Refused):                          # li's key no longer registered
        _check(state, keys, reviewers=_registered(keys, "wang", "zhao"))
    with pytest.raises(Refused):                          # two needed, one given
        _check(state, keys, required=2)
    _approve(state, keys, "wang")
    assert sorted(_check(state, keys, required=2)) == ["li", "wang"]


def test_a_forged_approval_in_the_register_does_not_count(tmp_path, keys):
    state = str(tmp_path)
    _approve(state, keys, "li")
    reg = twoperson.register(state)
    text = open(reg.path).read().replace('"for":"zhao"', '"for":"wang"')
    open(reg.path, "w").write(text)
    assert reg.verify() is not None                       # the chain shows the edit
    with pytest.raises(Refused):                          # and the signature no longer fits
        _check(state, keys, runner="wang")


def test_high_risk_list_matches_commands_and_groups():
    ops = ["backup forget", "policy"]
    assert twoperson.is_high_risk("backup forget", ops)
    assert twoperson.is_high_risk("policy apply", ops)
    assert not twoperson.is_high_risk("backup run", ops)


# --- security events ---------------------------------------------------------------

SIX = dict(place="server room", type="USB inserted", scope="db01", measures="removed",
           responsible="zhang")


def test_events_need_all_six_fields_and_are_flagged_when_late(tmp_path):
    state = str(tmp_path)
    for missing in ("place", "type", "scope", "measures", "responsible"):
        with pytest.raises(UsageError, match=missing):
            events.record(state, actor="a", at=T0, now=h(1), **{**SIX, missing: " "})
    assert events.record(state, actor="a", at=T0, now=h(23), **SIX)["in_time"] is True
    assert events.record(state, actor="a", at=T0, now=h(25), **SIX)["in_time"] is False


def test_prune_refuses_inside_the_retention_floor_and_anchors_the_chain(tmp_path):
    state = str(tmp_path)
    old = T0 - dt.timedelta(days=400)
    events.record(state, actor="a", at=old, now=old, **SIX)
    events.record(state, actor="a", at=old, now=old + dt.timedelta(days=1), **SIX)
    events.record(state, actor="a", at=T0, now=T0, **SIX)
    with pytest.raises(Refused, match="183 days") as exc:
        events.prune(state, before=T0 - dt.timedelta(days=100), now=T0, retention_days=183)
    assert exc.value.rule == "R-AUD-4"
    assert len(events.load(state)) == 3
    assert events.prune(state, before=T0 - dt.timedelta(days=200), now=T0,
                        retention_days=183) == 2
    assert [e["event"] for e in events.load(state)] == ["SE-00003"]
    reg = events.register(state)
    assert reg.verify() is None
    events.record(state, actor="a", at=T0, now=h(1), **SIX)
    assert reg.verify() is None and events.load(state)[-1]["event"] == "SE-00004"
