"""Transient errors leave an approved request approved for a retry (#17 item 3).

A row lock held by another connection (lock timeout) and a target whose port
nobody listens on exit 3, record ``apply-aborted`` and leave the request
approved; after the cause is gone, apply succeeds. A final refusal (the rows
changed since approval) still fails the request for good (exit 1).
"""
from __future__ import annotations

import sqlite3

import psycopg
import pytest

from opskit.core.errors import EXIT_FINDINGS, EXIT_OPERATIONAL
from opskit.corrections.actions import ApplyFailed, ApplyRetry, Context, Corrections
from opskit.corrections.ledger import open_ledger
from opskit.corrections.rulesfile import load_registry
from opskit.corrections.targets import is_transient
from opskit.corrections.verify import verify
from tests.harness.postgres import free_port
from tests.harness.corrections import make_postgres_target, make_sqlite_target, make_world

SQL = "UPDATE claims SET amount = :a WHERE id = :id"


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path):
    if request.param == "sqlite":
        w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))
        w.locker = lambda: _sqlite_lock(w.target_url)
        w.amount = lambda: float(sqlite3.connect(w.target_url).execute(
            "SELECT amount FROM claims WHERE id = 42").fetchone()[0])
    else:
        postgres = request.getfixturevalue("postgres")
        db = request.getfixturevalue("postgres_db")
        url = make_postgres_target(postgres, db)
        w = make_world(tmp_path, url)
        w.locker = lambda: _pg_lock(url)
        w.amount = lambda: float(postgres.psql("SELECT amount FROM claims WHERE id = 42", db))
        w.dead_url = f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"
    w.kind = request.param
    return w


def _svc(world, timeout=1.0) -> Corrections:
    return Corrections(open_ledger(world.ledger), load_registry(str(world.rules)), timeout,
                       Context("tester", "testhost"))


def _sqlite_lock(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _pg_lock(url):
    conn = psycopg.connect(url)
    conn.execute("SELECT * FROM claims WHERE id = 42 FOR UPDATE")
    return conn


def _approved(world, svc) -> str:
    _e, st = svc.request("his", SQL, {"a": "120.50", "id": "42"}, "typo", "", world.signer("alice"))
    svc.approve(st.id, "ok", world.signer("bob"))
    return st.id


def test_a_lock_held_elsewhere_exits_3_and_leaves_the_request_approved(world):
    svc = _svc(world)
    rid = _approved(world, svc)
    holder = world.locker()
    try:
        with pytest.raises(ApplyRetry) as err:
            svc.apply(rid, world.signer("mike"))
    finally:
        holder.rollback() if world.kind == "postgres" else holder.execute("ROLLBACK")
        holder.close()
    assert err.value.exit_code == EXIT_OPERATIONAL
    assert "approved again" in err.value.message
    st = svc.state(rid)
    assert st.state == "approved" and st.aborted and st.aborted[0]["stage"] in ("lock", "before-image")
    assert world.amount() == 1205.0
    # the retry, by another maintainer even, goes through
    _entry, st = svc.apply(rid, world.signer("max"))
    assert st.state == "applied" and world.amount() == 120.5
    assert verify(svc.ledger, svc.registry).ok
    svc.ledger.close()


def test_an_unreachable_target_exits_3_and_a_retry_applies(world):
    svc = _svc(world)
    rid = _approved(world, svc)
    svc.ledger.close()
    real = world.rules.read_text()
    dead = getattr(world, "dead_url", None)
    if dead is None:                     # SQLite: the file is gone (moved away) for a moment
        world.rules.write_text(real.replace(world.target_url, world.target_url + ".moved"))
    else:
        world.rules.write_text(real.replace(world.target_url, dead))
    svc = _svc(world)
    with pytest.raises(ApplyRetry) as err:
        svc.apply(rid, world.signer("mike"))
    assert err.value.exit_code == EXIT_OPERATIONAL and "connect" in err.value.message
    assert svc.state(rid).state == "approved"
    svc.ledger.close()
    world.rules.write_text(real)
    svc = _svc(world)
    _entry, st = svc.apply(rid, world.signer("mike"))
    assert st.state == "applied" and world.amount() == 120.5
    svc.ledger.close()


def test_a_final_refusal_still_fails_for_good(world):
    svc = _svc(world)
    rid = _approved(world, svc)
    conn = sqlite3.connect(world.target_url) if world.kind == "sqlite" else psycopg.connect(
        load_registry(str(world.rules)).target("his").url)
    conn.execute("UPDATE claims SET amount = 1 WHERE id = 42")
    conn.commit()
    conn.close()
    with pytest.raises(ApplyFailed) as err:
        svc.apply(rid, world.signer("mike"))
    assert err.value.exit_code == EXIT_FINDINGS
    assert svc.state(rid).state == "failed"
    svc.ledger.close()


def test_which_errors_are_transient():
    assert is_transient(psycopg.errors.LockNotAvailable())
    assert is_transient(psycopg.errors.SerializationFailure())
    assert is_transient(psycopg.errors.DeadlockDetected())
    assert is_transient(psycopg.OperationalError("connection lost"))
    assert is_transient(sqlite3.OperationalError("database is locked"))
    assert not is_transient(psycopg.errors.UndefinedColumn())
    assert not is_transient(psycopg.errors.CheckViolation())
    assert not is_transient(sqlite3.OperationalError("no such column: x"))
