"""Incident register and its clocks (R-INC-1), with a clock the tests set (no sleeping)."""
import datetime as dt
import json
import os

import pytest

from opskit.core.errors import IntegrityError, Refused, UsageError
from opskit.incidents import clocks, incidents, metrics
from opskit.incidents.chain import Register

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.timezone.utc)


def h(n):
    return T0 + dt.timedelta(hours=n)


def _open(state, grade="general", at=T0, **kw):
    return incidents.open_incident(state, actor="alice", grade=grade, type="intrusion",
                                   place="db01", scope="claims DB", description="odd login",
                                   detected_at=at, now=kw.pop("now", at), **kw)


def _states(inc, now):
    return {d.name: d.state(now) for d in inc.deadlines()}


def test_general_incident_clocks_run_from_detection(tmp_path):
    inc = _open(str(tmp_path))
    assert inc.id == "INC-0001"
    assert _states(inc, h(1.9)) == {"report-security": "open", "first-response": "open",
                                    "rectification": "open"}
    assert _states(inc, h(2.1))["report-security"] == "missed"      # 2 h passed, nobody told
    assert _states(inc, h(24.1))["first-response"] == "missed"
    assert _states(inc, h(72.1))["rectification"] == "missed"


def test_each_deadline_is_kept_when_done_in_time_and_missed_when_late(tmp_path):
    state = str(tmp_path)
    inc = _open(state, grade="major")
    incidents.report(state, inc.id, actor="alice", to="superior", recipient="boss",
                     at=h(1.5), now=h(1.5))                          # late: 1 h for major
    incidents.report(state, inc.id, actor="alice", to="security", recipient="sec",
                     at=h(1.9), now=h(1.9))                          # in time: 2 h
    incidents.update(state, inc.id, actor="bob", measures="account locked", findings="",
                     at=h(23), now=h(23))
    inc = incidents.close(state, inc.id, actor="bob", analysis="a", rectification="r",
                          effect="e", at=h(73), now=h(73))           # late: 72 h
    assert _states(inc, h(100)) == {"report-security": "kept", "report-superior": "missed",
                                    "first-response": "kept", "rectification": "missed"}
    assert [(r["deadline"]) for r in incidents.overdue([inc], h(100))] == [
        "report-superior", "rectification"]


def test_only_major_and_above_must_tell_the_superior(tmp_path):
    state = str(tmp_path)
    for grade, has in (("general", False), ("large", False), ("major", True),
                       ("especially-major", True), ("重大", True), ("一般", False)):
        inc = _open(state, grade=grade)
        assert ("report-superior" in _states(inc, T0)) is has, grade


def test_configured_hours_are_frozen_into_the_incident(tmp_path):
    hours = {"security_hours": 0.5, "superior_hours": None, "response_hours": 4,
             "rectify_hours": 8}
    inc = _open(str(tmp_path), hours=hours)
    assert _states(inc, h(0.6))["report-security"] == "missed"
    assert _states(inc, h(3.9))["first-response"] == "open"
    assert _states(inc, h(8.1))["rectification"] == "missed"


def test_closing_before_the_reports_is_refused_and_closed_is_final(tmp_path):
    state = str(tmp_path)
    inc = _open(state, grade="major")
    incidents.report(state, inc.id, actor="a", to="security", recipient="s", at=h(1), now=h(1))
    with pytest.raises(Refused, match="report-superior"):
        incidents.close(state, inc.id, actor="a", analysis="x", rectification="y", effect="z",
                        at=h(2), now=h(2))
    incidents.report(state, inc.id, actor="a", to="superior", recipient="b", at=h(1), now=h(2))
    incidents.close(state, inc.id, actor="a", analysis="x", rectification="y", effect="z",
                    at=h(2), now=h(2))
    with pytest.raises(Refused, match="closed"):
        incidents.update(state, inc.id, actor="a", measures="m", findings="", at=h(3), now=h(3))


def test_times_in_the_future_or_before_detection_are_refused(tmp_path):
    state = str(tmp_path)
    with pytest.raises(UsageError, match="future"):
        _open(state, at=h(5), now=T0)
    inc = _open(state)
    with pytest.raises(UsageError, match="before the detection"):
        incidents.update(state, inc.id, actor="a", measures="m", findings="", at=h(-1), now=h(1))
    with pytest.raises(UsageError, match="no incident"):
        incidents.get(state, "INC-0042")
    with pytest.raises(UsageError, match="grade"):
        _open(state, grade="huge")


def test_register_is_hash_chained_and_names_an_edited_line(tmp_path):
    state = str(tmp_path)
    inc = _open(state)
    incidents.update(state, inc.id, actor="a", measures="m", findings="", at=h(1), now=h(1))
    reg = incidents.register(state)
    assert reg.verify() is None
    assert oct(os.stat(reg.path).st_mode & 0o777) == "0o600"
    lines = open(reg.path).read().splitlines()
    lines[0] = lines[0].replace("odd login", "nothing happened")
    open(reg.path, "w").write("\n".join(lines) + "\n")
    assert "line 1" in reg.verify() and "edited" in reg.verify()


def test_a_deleted_record_breaks_the_chain(tmp_path):
    reg = Register(str(tmp_path / "r.jsonl"))
    for i in range(3):
        reg.append(lambda recs, i=i: {"n": i})
    lines = open(reg.path).read().splitlines()
    open(reg.path, "w").write("\n".join([lines[0], lines[2]]) + "\n")
    assert "line 2" in reg.verify()
    with pytest.raises(IntegrityError):
        open(reg.path, "a").write('{"broken"')
        reg.append(lambda recs: {"n": 9})


def test_automatic_incident_attaches_the_evidence(tmp_path):
    state = str(tmp_path / "state")
    report = tmp_path / "drill.json"
    report.write_text('{"verdict": "FAIL"}')
    inc = incidents.open_automatic(state, "drill-failed", "drill of dr failed", str(report),
                                   now=T0)
    assert inc.automatic and inc.type == "drill-failed" and inc.opened_by.startswith("opskit")
    copy = inc.evidence["copy"]
    assert open(copy).read() == '{"verdict": "FAIL"}'
    assert oct(os.stat(copy).st_mode & 0o777) == "0o600"
    gone = incidents.open_automatic(state, "x", "y", str(tmp_path / "absent"), now=T0)
    assert "not attached" in gone.evidence["error"]


def test_metrics_count_open_incidents_by_grade_and_the_next_deadline(tmp_path):
    state = str(tmp_path)
    _open(state, grade="major")
    _open(state, grade="general")
    found = list(incidents.load(state).values())
    text = metrics.text(found, h(0.25))
    assert 'opskit_incidents_open{grade="major"} 1' in text
    assert 'opskit_incidents_open{grade="large"} 0' in text
    assert "opskit_incidents_next_deadline_seconds 2700" in text     # superior: 45 min left
    assert "opskit_incidents_missed_deadlines 0" in text
    # both security reports and the superior report of the major one
    assert "opskit_incidents_missed_deadlines 3" in metrics.text(found, h(2.5))


def test_evidence_is_met_only_when_every_item_kept_its_deadlines(tmp_path):
    from opskit.incidents import evidence_items
    state = str(tmp_path)
    inc = _open(state)
    incidents.report(state, inc.id, actor="a", to="security", recipient="s", at=h(1), now=h(1))
    by_rule = {e["rule"]: e for e in evidence_items(state, T0 - dt.timedelta(days=1), h(3))}
    assert by_rule["R-INC-1"]["verdict"] == "met" and by_rule["R-INC-1"]["kept"] == 1
    assert by_rule["R-AUD-4"]["verdict"] == "no items"
    late = _open(state, at=h(1), now=h(1))                          # never reported
    by_rule = {e["rule"]: e for e in evidence_items(state, T0 - dt.timedelta(days=1), h(4))}
    inc1 = by_rule["R-INC-1"]
    assert inc1["verdict"] == "not met" and inc1["missed"] == 1
    assert [i["id"] for i in inc1["items"]] == [inc.id, late.id]
    # outside the period: not counted
    later = {e["rule"]: e for e in evidence_items(state, h(2), h(4))}
    assert later["R-INC-1"]["items"] == []
    # a damaged register is never 'met'
    path = incidents.register(state).path
    text = open(path).read().replace("odd login", "nothing")
    open(path, "w").write(text)
    damaged = {e["rule"]: e for e in evidence_items(state, h(2), h(4))}["R-INC-1"]
    assert damaged["verdict"] == "not met" and not damaged["register_intact"]
