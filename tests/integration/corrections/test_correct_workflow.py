"""`opskit correct` workflow on real SQLite and the real PostgreSQL fixture.

Each test runs twice: SQLite target + SQLite ledger, and PostgreSQL target +
PostgreSQL ledger (a team's shared ledger), with the insurance schema
(claims, settlements, refunds). Covers every refusal of issue 10 (R-DAT-1,
R-DAT-2, R-DAT-3), apply guards and rollback, failures recorded (R-AUD-1),
and the race of several executors on one request.
"""
from __future__ import annotations

import multiprocessing
import sqlite3

import psycopg
import pytest

from opskit.core.errors import EXIT_FINDINGS, EXIT_USAGE, UsageError
from opskit.corrections.ledger import Refused
from opskit.corrections.actions import ApplyFailed
from opskit.corrections.sqlcheck import SqlRefused, parse_statement
from opskit.corrections.targets import Database
from opskit.corrections.verify import verify
from tests.harness.corrections import (approve_fully, make_postgres_target, make_sqlite_target,
                                             make_world)


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path):
    if request.param == "sqlite":
        w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))
        w.query = lambda sql: [tuple(r) for r in sqlite3.connect(w.target_url).execute(sql).fetchall()]
        w.execute = lambda sql: _sqlite_exec(w.target_url, sql)
        yield w
        return
    postgres = request.getfixturevalue("postgres")
    db = request.getfixturevalue("postgres_db")
    url = make_postgres_target(postgres, db)
    ledger_db = db + "_ledger"
    ledger_url = postgres.create_database(ledger_db)
    w = make_world(tmp_path, url, ledger=ledger_url)
    w.query = lambda sql: _pg_query(url, sql)
    w.execute = lambda sql: postgres.psql(sql, db)
    yield w
    postgres.drop_database(ledger_db)


def _sqlite_exec(path, sql):
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()


def _pg_query(url, sql):
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def _amount(world, table, rid):
    return float(world.query(f"SELECT amount FROM {table} WHERE id = {rid}")[0][0])


def _request(world, svc, who="alice", sql="UPDATE claims SET amount = :a WHERE id = :id",
             params=None, reason="amount keyed in wrong", ticket="INC-7"):
    params = {"a": "120.50", "id": "42"} if params is None else params
    _entry, st = svc.request("his", sql, params, reason, ticket, world.signer(who))
    return st.id


# --- the happy path ---------------------------------------------------------------------

def test_request_approve_apply_records_before_and_after_images(world):
    svc = world.svc()
    rid = _request(world, svc)
    st = svc.state(rid)
    assert st.state == "pending" and st.row_count == 1 and st.requester == "alice"
    assert st.before[0]["id"] == 42 and float(st.before[0]["amount"]) == 1205.0
    svc.approve(rid, "matches the invoice", world.signer("bob"))
    assert svc.state(rid).state == "approved"
    entry, st = svc.apply(rid, world.signer("mike"))
    assert st.state == "applied" and entry["kind"] == "applied"
    assert _amount(world, "claims", 42) == 120.5
    assert [float(r["amount"]) for r in st.outcome["after"]] == [120.5]
    assert [e["kind"] for e in svc.ledger.for_request(rid)] == ["request", "approve", "apply-started", "applied"]
    report = verify(svc.ledger, svc.registry)
    assert report.ok, report.describe()
    assert report.entries_checked == 4 and report.signatures_checked == 4
    # R-DAT-1: operator, time and content of every step
    req = svc.ledger.for_request(rid)[0]
    assert req["actor"] == "alice" and req["time"] and req["body"]["sql"].startswith("UPDATE claims")
    assert req["body"]["reason"] == "amount keyed in wrong" and req["body"]["ticket"] == "INC-7"
    assert "R-DAT-2" in req["body"]["rule_ids"]


def test_refunds_need_the_three_level_chain_and_the_audit_supervisor(world):
    svc = world.svc()
    rid = _request(world, svc, sql="UPDATE refunds SET amount = :a WHERE id = :id",
                   params={"a": "80.00", "id": "7"})
    st = svc.state(rid)
    assert st.requirement.levels == ["clerk", "section_head", "leader"] and st.requirement.auditor
    with pytest.raises(Refused, match="needs the clerk level"):         # carol jumps the queue (R-DAT-3)
        svc.approve(rid, "ok", world.signer("carol"))
    svc.approve(rid, "ok", world.signer("bob"))
    with pytest.raises(Refused, match="needs the section_head level"):
        svc.approve(rid, "ok", world.signer("dan"))
    svc.approve(rid, "ok", world.signer("carol"))
    svc.approve(rid, "ok", world.signer("dan"))
    assert svc.state(rid).state == "pending"                                # auditor still missing (R-DAT-2)
    with pytest.raises(Refused, match="audit supervisor"):
        svc.apply(rid, world.signer("mike"))
    svc.approve(rid, "supervised", world.signer("audrey"))
    assert svc.state(rid).state == "approved"
    svc.apply(rid, world.signer("mike"))
    assert _amount(world, "refunds", 7) == 80.0
    assert verify(svc.ledger, svc.registry).ok


def test_two_approvals_for_a_multi_row_claim_correction(world):
    svc = world.svc()
    rid = _request(world, svc, sql="UPDATE claims SET status = :s WHERE insured_id = :p",
                   params={"s": "void", "p": "P-1003"})
    st = svc.state(rid)
    assert st.row_count == 2 and st.requirement.approvals == 2
    svc.approve(rid, "ok", world.signer("bob"))
    with pytest.raises(Refused, match="already signed"):
        svc.approve(rid, "again", world.signer("bob"))
    svc.approve(rid, "ok", world.signer("carol"))
    svc.apply(rid, world.signer("mike"))
    assert world.query("SELECT count(*) FROM claims WHERE status = 'void'") == [(2,)]


# --- refusals ---------------------------------------------------------------------------

def test_every_workflow_refusal_names_its_rule(world):
    svc = world.svc()
    rid = _request(world, svc)
    with pytest.raises(Refused, match=r"may not approve it.*R-DAT-2"):
        svc.approve(rid, "self", world.signer("alice"))
    with pytest.raises(Refused, match=r"holds no sign-off role"):
        svc.reject(rid, "self", world.signer("alice"))
    with pytest.raises(Refused, match=r"not approved.*R-DAT-2") as err:
        svc.apply(rid, world.signer("mike"))
    svc.approve(rid, "ok", world.signer("bob"))
    with pytest.raises(Refused, match=r"not a designated maintainer.*R-ACC-1"):
        svc.apply(rid, world.signer("carol"))
    assert err.value.exit_code == EXIT_USAGE
    svc.apply(rid, world.signer("mike"))
    with pytest.raises(Refused, match=r"already applied.*R-DAT-1"):
        svc.apply(rid, world.signer("max"))
    with pytest.raises(Refused, match="only a pending request"):
        svc.approve(rid, "late", world.signer("carol"))
    with pytest.raises(Refused, match="no correction request CR-999"):
        svc.approve("CR-999", "x", world.signer("bob"))
    # nothing refused was ever written: the ledger holds exactly the four real steps
    assert [e["kind"] for e in svc.ledger.entries()] == ["request", "approve", "apply-started", "applied"]
    assert _amount(world, "claims", 42) == 120.5


def test_self_rejection_approver_as_executor_and_requester_as_executor_are_refused(world, tmp_path):
    svc = world.svc()
    own = _request(world, svc, who="bob", params={"a": "1", "id": "44"})   # a clerk raised it
    with pytest.raises(Refused, match=r"bob requested CR-\d+ and may not reject it.*R-DAT-2"):
        svc.reject(own, "no", world.signer("bob"))
    rid = _request(world, svc, who="mike")                 # a maintainer raised it
    svc.approve(rid, "ok", world.signer("bob"))
    with pytest.raises(Refused, match=r"requested CR-\d+ and may not apply it.*R-DAT-2"):
        svc.apply(rid, world.signer("mike"))
    svc.apply(rid, world.signer("max"))
    rid2 = _request(world, svc, params={"a": "99", "id": "41"})
    svc.reject(rid2, "amount is right, the invoice was wrong", world.signer("carol"))
    with pytest.raises(Refused, match="rejected; only an approved request"):
        svc.apply(rid2, world.signer("max"))
    assert _amount(world, "claims", 41) == 88.0


def test_undeclared_and_retired_keys_may_not_act(world, tmp_path):
    from opskit.core.signing import generate
    svc = world.svc()
    stranger, _ = generate(str(tmp_path / "stranger"))
    with pytest.raises(Refused, match="not declared for any operator"):
        svc.request("his", "UPDATE claims SET amount = 1 WHERE id = 42", {}, "r", "", stranger)
    text = world.rules.read_text().replace("roles: [clerk]", "roles: [clerk]\n    retired: true")
    world.rules.write_text(text)
    svc = world.svc()
    rid = _request(world, svc)
    with pytest.raises(Refused, match="retired"):
        svc.approve(rid, "ok", world.signer("bob"))


@pytest.mark.parametrize("sql, params, message", [
    ("UPDATE claims SET amount = :a WHERE id = :id", {"a": "1", "id": "999"}, "matches no rows"),
    ("DELETE FROM claims WHERE id > 0", {}, "at most 2 per correction"),
    ("UPDATE claims SET nosuchcolumn = 1 WHERE id = 42", {}, "rejects the statement"),
    ("UPDATE claims SET amount = 1", {}, "without WHERE"),
    ("UPDATE claims SET amount = 1 WHERE id = 42; UPDATE claims SET amount = 2 WHERE id = 41", {}, "2 statements"),
    ("DROP TABLE claims", {}, "DROP is refused"),
])
def test_bad_requests_are_refused_and_nothing_is_stored(world, sql, params, message):
    if "at most" in message:
        world.rules.write_text(world.rules.read_text().replace("max_rows: 100", "max_rows: 2"))
    svc = world.svc()
    with pytest.raises((SqlRefused, Refused, UsageError)) as err:
        svc.request("his", sql, params, "r", "", world.signer("alice"))
    assert message in str(err.value)
    assert getattr(err.value, "exit_code", None) == EXIT_USAGE
    assert list(svc.ledger.entries()) == []
    assert world.query("SELECT count(*) FROM claims") == [(4,)]


def test_a_request_needs_a_reason(world):
    svc = world.svc()
    with pytest.raises(Refused, match="--reason is required"):
        svc.request("his", "UPDATE claims SET amount = 1 WHERE id = 42", {}, "  ", "", world.signer("alice"))


# --- apply guards -----------------------------------------------------------------------

def test_rows_changed_since_approval_refuse_roll_back_and_are_recorded(world):
    svc = world.svc()
    rid = _request(world, svc)
    svc.approve(rid, "ok", world.signer("bob"))
    world.execute("UPDATE claims SET status = 'reopened' WHERE id = 42")   # someone else changed the row
    with pytest.raises(ApplyFailed, match="rows changed since the request was approved") as err:
        svc.apply(rid, world.signer("mike"))
    assert err.value.exit_code == EXIT_FINDINGS
    assert _amount(world, "claims", 42) == 1205.0                          # nothing applied
    st = svc.state(rid)
    assert st.state == "failed" and st.outcome["stage"] == "before-image"
    assert [e["kind"] for e in svc.ledger.for_request(rid)][-1] == "apply-failed"
    with pytest.raises(Refused, match="failed; only an approved request"):
        svc.apply(rid, world.signer("max"))
    assert verify(svc.ledger, svc.registry).ok


def test_a_second_request_on_the_same_row_is_refused_after_the_first_applied(world):
    svc = world.svc()
    first = _request(world, svc, params={"a": "100", "id": "42"})
    second = _request(world, svc, params={"a": "200", "id": "42"})
    for rid in (first, second):
        svc.approve(rid, "ok", world.signer("bob"))
    svc.apply(first, world.signer("mike"))
    with pytest.raises(ApplyFailed, match="before-image differs"):
        svc.apply(second, world.signer("max"))
    assert _amount(world, "claims", 42) == 100.0


def test_a_row_count_different_from_the_approved_one_rolls_back(world):
    svc = world.svc()
    tgt = svc.registry.target("his")
    db = Database(tgt, 5.0)
    stmt = parse_statement("UPDATE claims SET amount = 0 WHERE insured_id = :p")
    image = db.read_before_image(stmt, {"p": "P-1003"})
    outcome = db.apply(stmt, {"p": "P-1003"}, image.digest, expected_rows=1)   # 2 rows match
    assert not outcome.ok and outcome.stage == "row-count" and outcome.row_count == 2
    assert "rolled back" in outcome.reason
    assert world.query("SELECT count(*) FROM claims WHERE amount = 0") == [(0,)]
    ok = db.apply(stmt, {"p": "P-1003"}, image.digest, expected_rows=2)
    assert ok.ok and world.query("SELECT count(*) FROM claims WHERE amount = 0") == [(2,)]


def test_insert_and_delete_corrections(world):
    svc = world.svc()
    rid = _request(world, svc, sql="INSERT INTO settlements (id, claim_id, paid, settled_on) "
                                   "VALUES (:id, :c, :p, :d)",
                   params={"id": "2", "c": "43", "p": "300.00", "d": "'2026-11-02'"})
    assert svc.state(rid).row_count == 1 and svc.state(rid).before == []
    approve_fully(world, svc, rid)
    svc.apply(rid, world.signer("mike"))
    assert world.query("SELECT claim_id FROM settlements WHERE id = 2") == [(43,)]
    rid = _request(world, svc, sql="DELETE FROM refunds WHERE id = :id", params={"id": "7"})
    approve_fully(world, svc, rid)
    _e, st = svc.apply(rid, world.signer("max"))
    assert st.outcome["row_count"] == 1 and st.outcome["after"] == []
    assert st.before[0]["reason"] == "duplicate payment"                     # the deleted row is kept
    assert world.query("SELECT count(*) FROM refunds") == [(0,)]
    assert verify(svc.ledger, svc.registry).ok


# --- the race -----------------------------------------------------------------------------

def _race_apply(world, rid, who, barrier, results):
    svc = world.svc()
    barrier.wait()
    try:
        svc.apply(rid, world.signer(who))
        results.put((who, "applied"))
    except Refused as exc:
        results.put((who, "refused: " + exc.message))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put((who, f"error: {type(exc).__name__}: {exc}"))


def test_racing_executors_exactly_one_applies(world):
    svc = world.svc()
    rid = _request(world, svc, sql="UPDATE claims SET amount = amount + 10 WHERE id = :id",
                   params={"id": "43"})
    svc.approve(rid, "ok", world.signer("bob"))
    svc.ledger.close()
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race_apply, args=(world, rid, who, barrier, results))
             for who in ("mike", "max", "mike", "max")]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    applied = [o for o in outcomes if o[1] == "applied"]
    assert len(applied) == 1, outcomes
    assert all(o[1].startswith("refused:") for o in outcomes if o[1] != "applied"), outcomes
    assert _amount(world, "claims", 43) == 310.0                             # +10 once, never +20
    svc = world.svc()
    kinds = [e["kind"] for e in svc.ledger.for_request(rid)]
    assert kinds == ["request", "approve", "apply-started", "applied"]
    assert verify(svc.ledger, svc.registry).ok


# --- withdrawal -------------------------------------------------------------------------

def test_withdraw_by_the_requester_only_and_only_before_apply(world):
    svc = world.svc()
    rid = _request(world, svc)
    with pytest.raises(Refused, match=r"bob did not request CR-\d+ and may not withdraw it"):
        svc.withdraw(rid, "not mine", world.signer("bob"))
    with pytest.raises(Refused, match="--comment is required"):
        svc.withdraw(rid, " ", world.signer("alice"))
    svc.approve(rid, "ok", world.signer("bob"))
    _e, st = svc.withdraw(rid, "the invoice was wrong after all", world.signer("alice"))
    assert st.state == "withdrawn" and st.withdrawal["comment"] == "the invoice was wrong after all"
    with pytest.raises(Refused, match="withdrawn; only an approved request"):
        svc.apply(rid, world.signer("mike"))
    with pytest.raises(Refused, match="withdrawn; only a pending or approved"):
        svc.withdraw(rid, "again", world.signer("alice"))
    applied = _request(world, svc, params={"a": "5", "id": "41"})
    svc.approve(applied, "ok", world.signer("bob"))
    svc.apply(applied, world.signer("mike"))
    with pytest.raises(Refused, match="applied; only a pending or approved"):
        svc.withdraw(applied, "too late", world.signer("alice"))
    assert _amount(world, "claims", 42) == 1205.0
    assert verify(svc.ledger, svc.registry).ok
    # a withdrawal signed by someone else (valid key, written straight to the ledger) is named
    forged = _request(world, svc, params={"a": "7", "id": "44"})
    svc.ledger.append(forged, lambda e, s: {"kind": "withdraw", "actor": "bob",
                                            "body": {"comment": "gone"}}, world.signer("bob"))
    report = verify(svc.ledger, svc.registry)
    assert not report.ok and report.kind_of_tampering == "workflow"
    assert "only the requester (alice) withdraws" in report.problem
