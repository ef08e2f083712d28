"""An apply killed between its claim and its outcome is settled by running apply again.

The project rule: a failure half-way leaves data consistent and the rerun
finishes the job. ``opskit correct apply`` is SIGKILLed at the exact points
(failpoints ``correct.apply.after-claim``: the claim entry is written, the
target untouched; ``correct.apply.after-commit``: the target transaction
committed, no outcome entry), on real SQLite and the real PostgreSQL fixture
(target and ledger). A second ``apply`` decides from the live rows, under
the target's lock, and records the outcome; ``verify`` accepts the recovered
history and still rejects a forged one (R-DAT-1, R-AUD-1).
"""
from __future__ import annotations

import signal
import sqlite3

import psycopg
import pytest

from opskit.corrections.ledger import Refused
from opskit.corrections.verify import verify
from tests.harness.corrections import (approve_fully, make_postgres_target, make_sqlite_target,
                                             make_world)

AFTER_CLAIM, AFTER_COMMIT = "correct.apply.after-claim", "correct.apply.after-commit"


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path):
    if request.param == "sqlite":
        w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))

        def query(sql):
            conn = sqlite3.connect(w.target_url)
            try:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
            finally:
                conn.close()

        def execute(sql):
            conn = sqlite3.connect(w.target_url)
            conn.execute(sql)
            conn.commit()
            conn.close()
        w.query, w.execute = query, execute
        yield w
        return
    postgres = request.getfixturevalue("postgres")
    db = request.getfixturevalue("postgres_db")
    url = make_postgres_target(postgres, db)
    ledger_db = db + "_ledger"
    w = make_world(tmp_path, url, ledger=postgres.create_database(ledger_db))

    def pg_query(sql):
        with psycopg.connect(url) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    w.query, w.execute = pg_query, lambda sql: postgres.psql(sql, db)
    yield w
    postgres.drop_database(ledger_db)


def _num(world, sql):
    return [tuple(float(v) if v is not None and not isinstance(v, str) else v for v in r)
            for r in world.query(sql)]


def _prepared(world, sql, params, approve=True):
    svc = world.svc()
    _e, st = svc.request("his", sql, params, "amount keyed in wrong", "INC-9", world.signer("alice"))
    if approve:
        approve_fully(world, svc, st.id)
    svc.ledger.close()
    return st.id


def _killed_apply(opskit, world, rid, point, who="mike"):
    run = opskit("correct", "apply", rid, env=dict(world.env(who), OPSKIT_FAILPOINT=point))
    assert run.exit_code == -signal.SIGKILL, run.output
    svc = world.svc()
    try:
        st = svc.state(rid)
    finally:
        svc.ledger.close()
    assert st.state == "executing" and st.executor == who
    return st


def _kinds(world, rid):
    svc = world.svc()
    try:
        return [e["kind"] for e in svc.ledger.for_request(rid)], svc.state(rid)
    finally:
        svc.ledger.close()


def _verify(world):
    svc = world.svc()
    try:
        return verify(svc.ledger, svc.registry)
    finally:
        svc.ledger.close()


UPDATE = ("UPDATE claims SET amount = amount + :d WHERE id = :id", {"d": "10", "id": "43"})


@pytest.mark.parametrize("point, expected", [(AFTER_CLAIM, "applied-now"),
                                             (AFTER_COMMIT, "committed-before-crash")])
def test_killed_apply_is_settled_by_the_rerun(opskit, world, point, expected):
    """Not idempotent on purpose (amount + 10): settling twice or guessing wrong shows."""
    rid = _prepared(world, *UPDATE)
    _killed_apply(opskit, world, rid, point)
    assert _num(world, "SELECT amount FROM claims WHERE id = 43") == [(310.0 if point == AFTER_COMMIT
                                                                        else 300.0,)]
    # the one who claimed is gone; another eligible maintainer settles it
    run = opskit("correct", "apply", rid, "--json", env=world.env("max"))
    assert run.exit_code == 0, run.output
    assert '"recovery": "' + expected + '"' in run.stdout
    assert _num(world, "SELECT amount FROM claims WHERE id = 43") == [(310.0,)]      # +10 exactly once
    kinds, st = _kinds(world, rid)
    assert kinds == ["request", "approve", "apply-started", "applied"]
    assert st.state == "applied" and st.outcome["recovered"] is True
    assert st.outcome["recovery"] == expected and st.outcome["interrupted_executor"] == "mike"
    assert st.outcome["actor"] == "max" and st.outcome["claim_seq"] == st.claimed_seq
    assert [float(r["amount"]) for r in st.outcome["after"]] == [310.0]
    report = _verify(world)
    assert report.ok, report.describe()
    again = opskit("correct", "apply", rid, env=world.env("max"))
    assert again.exit_code == 2 and "already applied" in again.stderr
    assert _num(world, "SELECT amount FROM claims WHERE id = 43") == [(310.0,)]
    show = opskit("correct", "show", rid, env=world.env())
    assert "recovered: " + expected in show.stdout


@pytest.mark.parametrize("point", [AFTER_CLAIM, AFTER_COMMIT])
def test_killed_delete_and_insert_are_settled(world, opskit, point):
    rid = _prepared(world, "DELETE FROM refunds WHERE id = :id", {"id": "7"})
    _killed_apply(opskit, world, rid, point)
    ins = _prepared(world, "INSERT INTO settlements (id, claim_id, paid, settled_on) VALUES (:i, :c, :p, :d)",
                    {"i": "2", "c": "43", "p": "300.00", "d": "'2026-11-02'"})
    _killed_apply(opskit, world, ins, point)
    for r in (rid, ins):
        run = opskit("correct", "apply", r, env=world.env("mike"))
        assert run.exit_code == 0, run.output
    assert world.query("SELECT count(*) FROM refunds") == [(0,)]
    assert _num(world, "SELECT claim_id, paid FROM settlements WHERE id = 2") == [(43.0, 300.0)]
    for r in (rid, ins):
        kinds, st = _kinds(world, r)
        assert kinds[-1] == "applied" and st.outcome["recovered"] is True
        assert st.outcome["recovery"] == ("applied-now" if point == AFTER_CLAIM else "committed-before-crash")
    assert _kinds(world, ins)[1].outcome["after"][0]["claim_id"] == 43
    assert _verify(world).ok


def test_rows_changed_after_a_kill_before_commit_are_refused_recorded_and_named(opskit, world):
    """Killed after the claim (nothing committed, no marker): rows changed since then make
    the rerun refuse like any apply, naming them, and record it (R-DAT-1)."""
    rid = _prepared(world, *UPDATE)
    _killed_apply(opskit, world, rid, AFTER_CLAIM)
    world.execute("UPDATE claims SET amount = 999 WHERE id = 43")     # changed outside opskit since
    run = opskit("correct", "apply", rid, env=world.env("max"))
    assert run.exit_code == 1, run.output
    assert "before-image differs" in run.stderr
    assert _num(world, "SELECT amount FROM claims WHERE id = 43") == [(999.0,)]        # nothing changed
    kinds, st = _kinds(world, rid)
    assert kinds[-1] == "apply-failed" and st.state == "failed"
    assert st.outcome["recovered"] is True and st.outcome["stage"] == "before-image"
    assert [float(r["amount"]) for r in st.outcome["rows_now"]] == [999.0]
    assert _verify(world).ok


def test_a_committed_change_is_recorded_as_committed_even_if_rows_changed_since(opskit, world):
    """Killed after commit: the commit marker, not the live rows, decides. Rows changed
    by someone else afterwards do not turn a committed change into a 'failed' one."""
    rid = _prepared(world, *UPDATE)
    _killed_apply(opskit, world, rid, AFTER_COMMIT)
    world.execute("UPDATE claims SET amount = 999 WHERE id = 43")
    run = opskit("correct", "apply", rid, "--json", env=world.env("max"))
    assert run.exit_code == 0, run.output
    kinds, st = _kinds(world, rid)
    assert kinds[-1] == "applied" and st.outcome["recovery"] == "committed-before-crash"
    assert [float(r["amount"]) for r in st.outcome["after"]] == [310.0]      # what was committed
    assert _num(world, "SELECT amount FROM claims WHERE id = 43") == [(999.0,)]
    assert _verify(world).ok


def test_who_may_settle_and_a_live_claim_is_left_alone(opskit, world):
    rid = _prepared(world, *UPDATE)
    st = _killed_apply(opskit, world, rid, AFTER_CLAIM)
    svc = world.svc()
    with pytest.raises(Refused, match="not a designated maintainer"):
        svc.apply(rid, world.signer("carol"))
    with pytest.raises(Refused, match="approved CR-.* may not also apply"):
        # bob approved: he may not execute, not even a recovery (R-ACC-2)
        svc.registry.operators["bob"].roles.append("maintainer")
        svc.apply(rid, world.signer("bob"))
    # a claim whose process is still running is not settled under it
    claim = next(e for e in st.history if e["kind"] == "apply-started")
    svc.context.host = claim["body"]["host"]
    import os
    import subprocess
    import sys
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from opskit.corrections import workflow as wf
        fake = wf.fold(svc.ledger.for_request(rid))
        claim["body"]["pid"] = live.pid
        with pytest.raises(Refused, match="already being applied.*still running"):
            svc._claim_is_dead(fake, claim)
        claim["body"]["host"] = "elsewhere"               # another host: only after 2 x lock_timeout
        with pytest.raises(Refused, match="run apply again after"):
            svc._claim_is_dead(fake, claim)
    finally:
        live.kill()
        live.wait()
    assert os.getpid() != live.pid
    svc.ledger.close()
    assert _num(world, "SELECT amount FROM claims WHERE id = 43") == [(300.0,)]
    assert _kinds(world, rid)[0][-1] == "apply-started"


def test_verify_accepts_recovery_but_rejects_a_forged_one(opskit, world):
    rid = _prepared(world, *UPDATE)
    st = _killed_apply(opskit, world, rid, AFTER_COMMIT)
    svc = world.svc()
    try:
        body = {"recovered": True, "recovery": "committed-before-crash", "claim_seq": st.claimed_seq,
                "interrupted_executor": "mike", "row_count": 1, "after": [], "after_sha256": "0" * 64,
                "os_user": "x", "host": "y"}
        # the requester signs the "recovery" herself: a valid key, an illegal step
        svc.ledger.append(rid, lambda entries, seq: {"kind": "applied", "actor": "alice", "body": body},
                          world.signer("alice"))
        report = verify(svc.ledger, svc.registry)
    finally:
        svc.ledger.close()
    assert not report.ok and report.kind_of_tampering == "workflow"
    assert "alice requested" in report.problem and report.first_bad_seq == st.claimed_seq + 1


def test_a_recovery_must_name_the_real_claim(world):
    rid = _prepared(world, *UPDATE)
    svc = world.svc()
    try:
        svc.ledger.append(rid, lambda e, s: {"kind": "apply-started", "actor": "mike",
                                             "body": {"os_user": "x", "host": "y"}}, world.signer("mike"))
        svc.ledger.append(rid, lambda e, s: {"kind": "applied", "actor": "max", "body": {
            "recovered": True, "claim_seq": 1, "row_count": 1, "after": []}}, world.signer("max"))
        report = verify(svc.ledger, svc.registry)
    finally:
        svc.ledger.close()
    assert not report.ok and "names claim seq 1" in report.problem
