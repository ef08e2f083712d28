"""The injection corpus against the real PostgreSQL fixture (#17 item 1, R-DAT-2).

Each statement of tests/unit/corrections/test_correct_sql_injection.py goes through
request --dry-run (prepare), request, apply --dry-run (plan) and apply. A
refused statement is also written into the ledger as a modified client would
(signed by the real requester, approved by the real approver) so that
apply --dry-run and apply meet it too. After every stage the refund the
payload targets must be untouched; a harmless statement changes exactly the
one claim it names, to the literal PostgreSQL reads.
"""
from __future__ import annotations

import psycopg
import pytest

from opskit.core.errors import UsageError
from opskit.corrections.actions import ApplyFailed
from opskit.corrections.rulesfile import load_registry
from opskit.corrections.sqlcheck import SqlRefused, Statement, build_statement
from opskit.corrections.targets import Database, _Tx, image_digest
from tests.unit.corrections.test_correct_sql_injection import HARMLESS, REFUSED, WHERE_REFUSED
from tests.harness.corrections import make_postgres_target, make_world


@pytest.fixture
def world(postgres, postgres_db, tmp_path):
    url = make_postgres_target(postgres, postgres_db)
    w = make_world(tmp_path, url)
    w.db_name = postgres_db
    w.query = lambda sql: _query(url, sql)
    return w


def _query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def _untouched(world) -> None:
    assert world.query("SELECT id, amount::text FROM refunds ORDER BY id") == [(7, "88.00")]
    assert world.query("SELECT count(*) FROM claims")[0][0] == 4


def _forge_approved(world, svc, sql: str, params: dict) -> str:
    """A request for ``sql`` signed by alice as a modified client would write it (no
    vetting), with the real before-image of claim 42, and bob's approval."""
    tgt = svc.registry.target("his")
    clean = Statement("UPDATE", "claims", "UPDATE claims SET status = 'x' WHERE id = :id", ["id"],
                      "claims", where="id = :id")
    image = Database(tgt, 5.0).read_before_image(clean, {"id": 42})
    body = {"target": "his", "target_url": tgt.safe_url, "target_kind": tgt.kind, "table": "claims",
            "operation": "UPDATE", "sql": sql, "params": params, "reason": "r", "ticket": "",
            "row_count": 1, "columns": image.columns, "before": image.rows,
            "before_sha256": image_digest(image.rows),
            "requirement": {"approvals": 1, "levels": [], "auditor": False, "rules": [],
                            "executor_may_approve": False}}
    entry = svc.ledger.append(None, lambda _e, seq: {"kind": "request", "actor": "alice", "body": body,
                                                      "request": f"CR-{seq}"}, world.signer("alice"))
    rid = entry["request"]
    svc.ledger.append(rid, lambda _e, _s: {"kind": "approve", "actor": "bob",
                                           "body": {"level": "clerk", "comment": "ok"}},
                      world.signer("bob"))
    return rid


@pytest.mark.parametrize("sql", [s for _n, s in REFUSED], ids=[n for n, _s in REFUSED])
def test_refused_at_every_stage_and_the_database_unchanged(world, sql):
    svc = world.svc()
    with pytest.raises(SqlRefused):
        svc.prepare("his", sql, {"id": "42"}, "r", "", world.signer("alice"))
    _untouched(world)
    with pytest.raises(SqlRefused):
        svc.request("his", sql, {"id": "42"}, "r", "", world.signer("alice"))
    _untouched(world)
    rid = _forge_approved(world, svc, sql, {"id": "42"})
    with pytest.raises(UsageError):
        svc.plan(rid, world.signer("mike"))
    _untouched(world)
    with pytest.raises((ApplyFailed, UsageError)):
        svc.apply(rid, world.signer("mike"))
    _untouched(world)
    assert world.query("SELECT status FROM claims WHERE id = 42") == [("settled",)]
    svc.ledger.close()


@pytest.mark.parametrize("sql", [s for _n, s in HARMLESS], ids=[n for n, _s in HARMLESS])
def test_a_payload_inside_a_literal_is_only_data(world, sql):
    svc = world.svc()
    body = svc.prepare("his", sql, {"id": "42"}, "r", "", world.signer("alice"))
    assert body["row_count"] == 1
    _untouched(world)
    _e, st = svc.request("his", sql, {"id": "42"}, "r", "", world.signer("alice"))
    _untouched(world)
    svc.approve(st.id, "ok", world.signer("bob"))
    assert svc.plan(st.id, world.signer("mike"))["before_unchanged"]
    _untouched(world)
    svc.apply(st.id, world.signer("mike"))
    _untouched(world)
    # what PostgreSQL itself reads the literal as
    expected = world.query(st.sql.replace("UPDATE claims SET status =", "SELECT", 1)
                           .replace("WHERE id = :id", ""))[0][0]
    assert world.query("SELECT status FROM claims WHERE id = 42")[0][0] == expected
    assert world.query("SELECT count(*) FROM claims WHERE status = 'settled'")[0][0] == 1   # only 41
    svc.ledger.close()


def test_standard_conforming_strings_off_on_the_server_changes_nothing(world, postgres):
    """A database (or role) set to standard_conforming_strings=off would read 'a\\'' as
    a string that ends early, making the rest statements; opskit pins it on."""
    postgres.psql(f'ALTER DATABASE "{world.db_name}" SET standard_conforming_strings = off')
    sql = dict(HARMLESS)["scs-on-reading"]
    svc = world.svc()
    _e, st = svc.request("his", sql, {"id": "42"}, "r", "", world.signer("alice"))
    svc.approve(st.id, "ok", world.signer("bob"))
    svc.apply(st.id, world.signer("mike"))
    _untouched(world)
    status = world.query("SELECT status FROM claims WHERE id = 42")[0][0]
    assert status.startswith("a\\';") and "UPDATE refunds" in status
    svc.ledger.close()


@pytest.mark.parametrize("where", WHERE_REFUSED)
def test_delete_where_builder_refused_before_touching_the_database(world, where):
    svc = world.svc()
    sql, _extra = build_statement("DELETE", "claims", where, [])
    with pytest.raises(SqlRefused):
        svc.prepare("his", sql, {"id": "42"}, "r", "", world.signer("alice"))
    with pytest.raises(SqlRefused):
        svc.request("his", sql, {"id": "42"}, "r", "", world.signer("alice"))
    _untouched(world)
    svc.ledger.close()


def test_the_wire_refuses_a_second_statement_even_if_the_parser_were_fooled(world):
    """Below the parser: a Statement built by hand with a hidden COMMIT and no
    parameters is refused at preview and apply (the function vetting counts statements
    again), and the server itself refuses it on the wire (extended protocol)."""
    tgt = load_registry(str(world.rules)).target("his")
    sneaky = ("UPDATE claims SET status = 'x' WHERE id = 42; COMMIT; "
              "UPDATE refunds SET amount = 0 WHERE id = 7")
    db = Database(tgt, 5.0)
    preview = Statement("UPDATE", "claims", sneaky, [], "claims",
                        where="id = 42; COMMIT; UPDATE refunds SET amount = 0 WHERE id = 7")
    with pytest.raises(SqlRefused, match="3 statements given"):
        db.read_before_image(preview, {})
    _untouched(world)
    stmt = Statement("UPDATE", "claims", sneaky, [], "claims", where="id = 42")
    digest = db.read_before_image(Statement("UPDATE", "claims", "UPDATE claims SET status = 'x' "
                                            "WHERE id = 42", [], "claims", where="id = 42"), {}).digest
    with pytest.raises(SqlRefused, match="3 statements given"):
        db.apply(stmt, {}, digest, 1)
    _untouched(world)
    tx = _Tx(db)
    try:
        with pytest.raises(psycopg.Error, match="multiple commands"):
            tx.q(sneaky)
    finally:
        tx.rollback()
        tx.conn.close()
    _untouched(world)
    assert world.query("SELECT status FROM claims WHERE id = 42") == [("settled",)]
