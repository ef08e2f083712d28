"""Recovery that cannot lie: the commit marker decides, on the real PostgreSQL fixture.

``opskit correct apply`` is SIGKILLed at each failpoint of an apply (before the claim,
after the claim, after the target commit, just before the outcome entry), ten times
each, on a table with jsonb, an array, bytea, a timestamp with time zone, a generated
column and a trigger that bumps ``updated_at``. The rerun settles it; in every trial
the ledger and the database agree: the change happened exactly once, the ledger says
``applied``, its after-image is the row as committed, and the target holds exactly one
commit marker for the request (R-DAT-1, issue #17 item 3).
"""
from __future__ import annotations

import signal
import uuid

import psycopg
import pytest

from opskit.corrections.targets import MARKER_TABLE, rows_to_json
from opskit.corrections.verify import verify
from tests.harness.corrections import approve_fully, make_postgres_target, make_world

SCHEMA = r"""
CREATE TABLE policy_claim (
    id integer PRIMARY KEY,
    amount numeric(12,2) NOT NULL,
    details jsonb NOT NULL,
    codes text[] NOT NULL,
    scan bytea,
    amount_with_tax numeric(14,3) GENERATED ALWAYS AS (amount * 1.1) STORED,
    received_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION bump_updated_at() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER policy_claim_bump BEFORE UPDATE ON policy_claim
  FOR EACH ROW EXECUTE FUNCTION bump_updated_at();
INSERT INTO policy_claim (id, amount, details, codes, scan, received_at) VALUES
  (1, 100.00, '{"diagnosis": {"icd": "J45.1", "days": 3}, "rates": [1.5, 2], "note": null}',
   '{A01,"B 02"}', '\x00ff10', '2026-03-01 09:30:00.123456+08');
"""
UPDATE = "UPDATE policy_claim SET amount = amount + :d WHERE id = :id"
POINTS = ["correct.apply.before-claim", "correct.apply.after-claim", "correct.apply.after-commit",
          "correct.apply.before-outcome"]
COMMITTED_AT_KILL = {"correct.apply.after-commit", "correct.apply.before-outcome"}
TRIALS = 10


@pytest.fixture
def world(tmp_path, postgres, postgres_db):
    url = make_postgres_target(postgres, postgres_db)
    postgres.psql(SCHEMA, postgres_db)
    ledger_db = postgres_db + "_ledger"
    w = make_world(tmp_path, url, ledger=postgres.create_database(ledger_db))
    w.url = url
    yield w
    postgres.drop_database(ledger_db)


def _rows(url, sql, params=None):
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql, params)
        return rows_to_json([d.name for d in cur.description], cur.fetchall())


def _request(world):
    svc = world.svc()
    try:
        _e, st = svc.request("his", UPDATE, {"d": "10", "id": "1"}, "amount keyed in wrong", "INC-3",
                             world.signer("alice"))
        approve_fully(world, svc, st.id)
        return st.id
    finally:
        svc.ledger.close()


def _ledger(world, rid):
    svc = world.svc()
    try:
        return svc.state(rid)
    finally:
        svc.ledger.close()


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_every_point_ledger_and_database_agree(opskit, world, point):
    amount = 100.0
    for trial in range(TRIALS):
        rid = _request(world)
        killed = opskit("correct", "apply", rid, env=dict(world.env("mike"), OPSKIT_FAILPOINT=point))
        assert killed.exit_code == -signal.SIGKILL, (trial, killed.output)
        if point in COMMITTED_AT_KILL:
            amount += 10
        live = _rows(world.url, "SELECT amount FROM policy_claim WHERE id = 1")
        assert float(live[0]["amount"]) == amount, (trial, point)
        assert _ledger(world, rid).state == ("approved" if point == POINTS[0] else "executing")
        rerun = opskit("correct", "apply", rid, env=world.env("mike"))
        assert rerun.exit_code == 0, (trial, rerun.output)
        if point not in COMMITTED_AT_KILL:
            amount += 10
        row = _rows(world.url, "SELECT * FROM policy_claim WHERE id = 1")[0]
        assert float(row["amount"]) == amount, (trial, point)          # exactly once
        st = _ledger(world, rid)
        assert st.state == "applied", (trial, st.state)
        # the ledger's after-image is the row as committed: trigger and generated values too
        assert st.outcome["after"] == [row], (trial, st.outcome["after"], row)
        assert st.outcome.get("recovered", False) is (point != POINTS[0])
        if point != POINTS[0]:
            assert st.outcome["recovery"] == ("committed-before-crash" if point in COMMITTED_AT_KILL
                                              else "applied-now")
        markers = _rows(world.url, f"SELECT request_id FROM {MARKER_TABLE} WHERE request_id = %s", (rid,))
        assert len(markers) == 1, (trial, markers)
    assert row["details"] == {"diagnosis": {"icd": "J45.1", "days": 3}, "rates": [1.5, 2], "note": None}
    assert row["codes"] == ["A01", "B 02"] and row["scan"] == "\\x00ff10"
    assert row["received_at"] == "2026-03-01T01:30:00.123456+00:00"
    assert row["amount_with_tax"] == f"{amount * 1.1:.3f}"
    svc = world.svc()
    try:
        report = verify(svc.ledger, svc.registry)
    finally:
        svc.ledger.close()
    assert report.ok, report.describe()


def test_a_role_that_cannot_create_the_marker_table_is_told_and_the_request_stays_approved(
        opskit, tmp_path, postgres, postgres_db):
    url = make_postgres_target(postgres, postgres_db)
    role, pw = "corr_" + uuid.uuid4().hex[:8], "pw-" + uuid.uuid4().hex[:8]
    postgres.create_role(role, pw)
    postgres.psql(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO {role}; "
                  f"GRANT SELECT, UPDATE ON claims TO {role}", postgres_db)
    world = make_world(tmp_path, postgres.dsn_for(postgres_db, role, pw))
    svc = world.svc()
    _e, st = svc.request("his", "UPDATE claims SET amount = amount + :d WHERE id = :id",
                         {"d": "10", "id": "43"}, "typo", "INC-4", world.signer("alice"))
    approve_fully(world, svc, st.id)
    svc.ledger.close()
    run = opskit("correct", "apply", st.id, env=world.env("mike"))
    assert run.exit_code == 2, run.output
    assert MARKER_TABLE in run.stderr and "grant INSERT, SELECT" in run.stderr
    assert _ledger(world, st.id).state == "approved"
    assert _rows(url, "SELECT amount FROM claims WHERE id = 43")[0]["amount"] == "300.00"
    # created once by the owner, INSERT and SELECT are all the correction role needs
    from opskit.corrections.targets import MARKER_DDL
    postgres.psql(f"{MARKER_DDL['postgresql']}; GRANT INSERT, SELECT ON {MARKER_TABLE} TO {role}",
                  postgres_db)
    run = opskit("correct", "apply", st.id, env=world.env("mike"))
    assert run.exit_code == 0, run.output
    assert _rows(url, "SELECT amount FROM claims WHERE id = 43")[0]["amount"] == "310.00"
    assert len(_rows(url, f"SELECT 1 AS one FROM {MARKER_TABLE}")) == 1
