"""Apply changes exactly the approved rows, or nothing (R-DAT-1, R-DAT-2).

On the real PostgreSQL fixture. Apply locks the approved before-image and then runs
the statement, which re-evaluates its own WHERE; the lock sets ``xmax`` on the
locked rows, so a WHERE can pick other rows at apply than it showed at request
(``CASE WHEN (SELECT xmax ...) = '0' THEN 3 ELSE 4 END``): the same row count,
different rows. Apply compares the rows the statement reports (RETURNING) with the
locked ones, by primary key or, without one, by the locked row versions, and
refuses (rolled back, recorded as apply-failed, exit 1) when they differ; normal
corrections, including one that changes the key itself, still apply.
"""
from __future__ import annotations

import signal

import pytest

from opskit.core.errors import EXIT_FINDINGS
from opskit.corrections.actions import ApplyFailed
from tests.harness.corrections import approve_fully, make_postgres_world, pg_rows

EXTRA = """
INSERT INTO refunds VALUES (3, 43, 10.00, 'approved one'), (4, 44, 20.00, 'other one');
CREATE TABLE notes_nopk (n integer NOT NULL, note text NOT NULL);
INSERT INTO notes_nopk VALUES (1, 'approved'), (2, 'other');
CREATE VIEW v_claim_status AS SELECT id, status FROM claims;
CREATE VIEW v_claim_amounts AS SELECT insured_id, amount FROM claims;
"""
SWAP_DELETE = ("DELETE FROM refunds WHERE id = CASE WHEN (SELECT r.xmax FROM refunds r WHERE r.id = 3) "
               "= '0' THEN 3 ELSE 4 END")
SWAP_UPDATE = ("UPDATE claims SET status = :s WHERE id = CASE WHEN (SELECT c2.xmax FROM claims c2 "
               "WHERE c2.id = 43) = '0' THEN 43 ELSE 44 END")
SWAP_NOPK = ("UPDATE notes_nopk SET note = :s WHERE n = CASE WHEN (SELECT x.xmax FROM notes_nopk x "
             "WHERE x.n = 1) = '0' THEN 1 ELSE 2 END")


@pytest.fixture
def world(tmp_path, postgres, postgres_db):
    return make_postgres_world(tmp_path, postgres, postgres_db, EXTRA)


def _approved(world, sql, params):
    svc = world.svc()
    _e, st = svc.request("his", sql, params, "fix a record", "INC-9", world.signer("alice"))
    approve_fully(world, svc, st.id)
    return svc, st


def _refused(world, svc, rid, approved, changed):
    with pytest.raises(ApplyFailed) as caught:
        svc.apply(rid, world.signer("mike"))
    assert caught.value.exit_code == EXIT_FINDINGS
    line = caught.value.message
    assert "\n" not in line and "other rows than the approved ones" in line
    assert approved in line and changed in line, line
    st = svc.state(rid)
    assert st.state == "failed" and st.outcome["kind"] == "apply-failed"
    assert st.outcome["stage"] == "rows" and "after" not in st.outcome
    return st


def test_a_delete_that_picks_another_row_at_apply_is_refused_and_changes_nothing(world):
    svc, st = _approved(world, SWAP_DELETE, {})
    assert [r["id"] for r in st.before] == [3]                  # what the approvers signed
    _refused(world, svc, st.id, '{"id": 3}', '{"id": 4}')
    assert pg_rows(world.url, "SELECT id FROM refunds ORDER BY id") == [(3,), (4,), (7,)]


def test_an_update_that_picks_another_row_at_apply_is_refused_and_changes_nothing(world):
    svc, st = _approved(world, SWAP_UPDATE, {"s": "fixed"})
    assert [r["id"] for r in st.before] == [43]
    _refused(world, svc, st.id, '{"id": 43}', '{"id": 44}')
    assert pg_rows(world.url, "SELECT id, status FROM claims WHERE id IN (43, 44) ORDER BY id") == [
        (43, "open"), (44, "open")]


def test_without_a_primary_key_the_locked_row_versions_decide(world):
    svc, st = _approved(world, SWAP_NOPK, {"s": "changed"})
    assert st.before == [{"n": 1, "note": "approved"}]
    _refused(world, svc, st.id, '"note": "approved"', '"note": "changed"')
    assert pg_rows(world.url, "SELECT n, note FROM notes_nopk ORDER BY n") == [(1, "approved"), (2, "other")]


def test_through_a_view_the_base_tables_key_decides(world):
    svc, st = _approved(world, SWAP_UPDATE.replace("UPDATE claims", "UPDATE v_claim_status"), {"s": "fixed"})
    _refused(world, svc, st.id, '{"id": 43}', '{"id": 44}')
    assert pg_rows(world.url, "SELECT status FROM claims WHERE id IN (43, 44)") == [("open",), ("open",)]


def test_an_update_through_a_view_that_hides_the_key_is_refused_at_apply(world):
    """Nothing tells its rows apart (no key, no row versions through a view): refused
    rather than trusted on the count (tighter than before)."""
    svc, st = _approved(world, "UPDATE v_claim_amounts SET amount = :a WHERE insured_id = :p",
                        {"a": "1", "p": "P-1001"})
    with pytest.raises(ApplyFailed, match="shows no primary key of claims"):
        svc.apply(st.id, world.signer("mike"))
    assert pg_rows(world.url, "SELECT amount FROM claims WHERE id = 41") == [(88,)]


@pytest.mark.parametrize("sql, params, check, expected", [
    ("DELETE FROM refunds WHERE id = :id", {"id": "4"}, "SELECT id FROM refunds ORDER BY id",
     [(3,), (7,)]),
    ("UPDATE claims SET status = :s WHERE insured_id = :p", {"s": "checked", "p": "P-1003"},
     "SELECT id, status FROM claims WHERE insured_id = 'P-1003' ORDER BY id", [(43, "checked"), (44, "checked")]),
    # the key itself changes: told apart by the locked row versions
    ("UPDATE claims SET id = :new WHERE id = :id", {"new": "45", "id": "44"},
     "SELECT id FROM claims ORDER BY id", [(41,), (42,), (43,), (45,)]),
    ("UPDATE notes_nopk SET note = :s WHERE n = :n", {"s": "seen", "n": "2"},
     "SELECT n, note FROM notes_nopk ORDER BY n", [(1, "approved"), (2, "seen")]),
    ("DELETE FROM notes_nopk WHERE n = :n", {"n": "1"}, "SELECT n FROM notes_nopk", [(2,)]),
    ("UPDATE v_claim_status SET status = :s WHERE id = :id", {"s": "seen", "id": "42"},
     "SELECT status FROM claims WHERE id = 42", [("seen",)]),
    ("DELETE FROM v_claim_amounts WHERE insured_id = :p", {"p": "P-1002"},
     "SELECT id FROM claims ORDER BY id", [(41,), (43,), (44,)]),
])
def test_a_normal_correction_still_applies(world, sql, params, check, expected):
    svc, st = _approved(world, sql, params)
    _e, done = svc.apply(st.id, world.signer("mike"))
    assert done.state == "applied" and done.outcome["row_count"] == st.row_count
    assert pg_rows(world.url, check) == expected


def test_the_rerun_after_a_killed_apply_refuses_the_swap_too_and_records_it(opskit, world):
    """Killed after the claim: the rerun settles it by applying now, under the same check,
    and records the refusal (exit 1) instead of leaving the request executing."""
    svc, st = _approved(world, SWAP_DELETE, {})
    svc.ledger.close()
    run = opskit("correct", "apply", st.id, env=dict(world.env("mike"),
                                                    OPSKIT_FAILPOINT="correct.apply.after-claim"))
    assert run.exit_code == -signal.SIGKILL, run.output
    again = opskit("correct", "apply", st.id, env=world.env("max"))
    assert again.exit_code == EXIT_FINDINGS, again.output
    assert "other rows than the approved ones" in again.stderr
    svc = world.svc()
    try:
        done = svc.state(st.id)
    finally:
        svc.ledger.close()
    assert done.state == "failed" and done.outcome["recovered"] is True and done.outcome["stage"] == "rows"
    assert pg_rows(world.url, "SELECT id FROM refunds ORDER BY id") == [(3,), (4,), (7,)]
