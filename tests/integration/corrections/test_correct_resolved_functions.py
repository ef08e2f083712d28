"""Functions a correction calls, as PostgreSQL resolves them (R-DAT-2), on the real fixture.

PostgreSQL reads ``(x).f`` and ``tbl.f`` as ``f(x)``, resolves operators and allowed
names (``lower(id)``) to user functions on the search_path, and on PostgreSQL 15 reads
``JSON_ARRAY(x)`` as a call of a function ``json_array``. Each reproduction of the SQL
probe is refused at request time (prepare, request) and at apply (a forged, approved
ledger entry), and a victim shows nothing ran: ``public.hit`` terminates a victim
backend and (when it may write) records a row in ``side_effects``; a sequence must not
advance. Plain corrections with allowed built-ins still run end to end.
"""
from __future__ import annotations

import psycopg
import pytest

from opskit.corrections.sqlcheck import SqlRefused, Statement
from opskit.core.errors import UsageError
from opskit.corrections.rulesfile import Target, load_registry
from opskit.corrections.targets import Database
from tests.harness.corrections import approve_fully, make_postgres_target, make_world
from tests.integration.corrections.test_correct_injection import _forge_approved

ATTACK_SQL = [
    "CREATE TABLE side_effects (what text)",
    "CREATE TABLE opskit_victim (pid integer)",
    "CREATE SEQUENCE s1",
    # terminates the victim backend (allowed even read-only), then records itself; as its
    # owner (a superuser), whoever calls it
    """CREATE FUNCTION public.hit(what text) RETURNS boolean LANGUAGE plpgsql VOLATILE
       SECURITY DEFINER AS $$
       BEGIN
         PERFORM pg_terminate_backend(pid) FROM opskit_victim;
         IF NOT current_setting('transaction_read_only')::boolean THEN
           INSERT INTO side_effects VALUES (what);
         END IF;
         RETURN true;
       END $$""",
    "CREATE FUNCTION public.touch(claims) RETURNS boolean LANGUAGE sql VOLATILE "
    "AS $$ SELECT public.hit('touch') $$",
    "CREATE FUNCTION public.lower(integer) RETURNS text LANGUAGE sql VOLATILE "
    "AS $$ SELECT CASE WHEN public.hit('lower') THEN 'x' END $$",
    "CREATE FUNCTION public.json_array(integer) RETURNS text LANGUAGE sql VOLATILE "
    "AS $$ SELECT CASE WHEN public.hit('json_array') THEN 'x' END $$",
    "CREATE FUNCTION public.hash3(text, text) RETURNS boolean LANGUAGE sql VOLATILE "
    "AS $$ SELECT public.hit('###') $$",
    "CREATE OPERATOR public.### (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hash3)",
    "CREATE VIEW public.evil_view AS SELECT 42 AS id WHERE public.hit('view')",
    "CREATE VIEW public.outer_view AS SELECT id FROM public.evil_view",
    "CREATE DOMAIN public.evil_dom AS integer CHECK (public.hit('domain') AND VALUE > 0)",
]

# (id, statement, what the refusal names); :id is 42 everywhere. {pid} is the victim's.
REPRODUCTIONS = [
    ("row-type-call", "UPDATE claims SET status = 'x' WHERE id = :id AND claims.touch",
     "public.touch(claims)"),
    ("field-select-terminate", "UPDATE claims SET status = 'x' WHERE id = :id AND ({pid}).pg_terminate_backend",
     "field selection"),
    ("field-select-ts_stat", "UPDATE claims SET status = 'x' WHERE id = :id AND EXISTS (SELECT "
     "('SELECT to_tsvector(CAST(public.hit(''ts_stat'') AS text))').ts_stat)", "field selection"),
    ("field-select-nextval", "UPDATE claims SET status = 'x' WHERE id = :id AND "
     "('s1'::regclass).nextval > 0", "field selection"),
    ("user-operator", "UPDATE claims SET status = 'x' WHERE id = :id AND status ### 'x'",
     "public.###(text, text)"),
    ("user-operator-qualified", "UPDATE claims SET status = 'x' WHERE id = :id AND "
     "status OPERATOR(public.###) 'x'", "public.###(text, text)"),
    ("allowed-name-user-overload", "UPDATE claims SET status = 'x' WHERE id = :id AND lower(id) = 'x'",
     "public.lower(integer)"),
    ("json-array-pg15", "UPDATE claims SET status = JSON_ARRAY(id) WHERE id = :id",
     "public.json_array(integer)"),
    # a view or a domain CHECK runs its functions where the statement reads or casts to it
    ("view-read", "UPDATE claims SET status = 'x' WHERE id = :id AND id IN (SELECT id FROM outer_view)",
     "refused: view evil_view, which the statement reads, calls public.hit(text)"),
    ("domain-cast", "UPDATE claims SET status = 'x' WHERE id = CAST(:id AS evil_dom)",
     "refused: domain evil_dom, which the statement reads, calls public.hit(text)"),
]

# the same calls written so that only the server-side check can see them (Statements
# built by hand: the parse-tree checks never run)
SERVER_ONLY = [
    ("terminate", "UPDATE claims SET status = 'x' WHERE id = 42 AND ({pid}).pg_terminate_backend",
     "pg_catalog.pg_terminate_backend(integer, bigint)"),
    ("nextval", "UPDATE claims SET status = 'x' WHERE id = 42 AND ('s1'::regclass).nextval > 0",
     "pg_catalog.nextval(regclass)"),
    ("ts_stat", "UPDATE claims SET status = 'x' WHERE id = 42 AND EXISTS (SELECT "
     "('SELECT to_tsvector(CAST(public.hit(''ts_stat'') AS text))').ts_stat)",
     "pg_catalog.ts_stat(text)"),
]


@pytest.fixture
def world(postgres, postgres_db, tmp_path):
    url = make_postgres_target(postgres, postgres_db)
    postgres.psql(";\n".join(ATTACK_SQL) + ";", postgres_db)
    w = make_world(tmp_path, url)
    w.url = url
    w.query = lambda sql: _query(url, sql)
    victim = psycopg.connect(url, autocommit=True)
    victim.execute("INSERT INTO opskit_victim VALUES (pg_backend_pid())")
    w.victim_pid = victim.info.backend_pid
    w.victim = victim
    yield w
    victim.close()


def _query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def make_world_target(world):
    return load_registry(str(world.rules)).target("his")


def _nothing_ran(world) -> None:
    """The victim backend lives, no side effect was recorded, the sequence never moved,
    the claim and the refund are as they were."""
    assert world.victim.execute("SELECT 1").fetchall() == [(1,)], "the victim backend was terminated"
    assert world.query("SELECT what FROM side_effects") == []
    assert world.query("SELECT last_value, is_called FROM s1") == [(1, False)]
    assert world.query("SELECT status FROM claims WHERE id = 42") == [("settled",)]
    assert world.query("SELECT amount::text FROM refunds WHERE id = 7") == [("88.00",)]


@pytest.mark.parametrize("sql,names", [(s, n) for _i, s, n in REPRODUCTIONS],
                         ids=[i for i, _s, _n in REPRODUCTIONS])
def test_probe_reproductions_are_refused_at_request_and_apply_and_nothing_runs(world, sql, names):
    sql = sql.format(pid=world.victim_pid)
    svc = world.svc()
    for stage in (svc.prepare, svc.request):
        with pytest.raises(SqlRefused) as refused:
            stage("his", sql, {"id": "42"}, "r", "", world.signer("alice"))
        assert names in refused.value.message and "\n" not in refused.value.message
        _nothing_ran(world)
    rid = _forge_approved(world, svc, sql, {"id": "42"})
    with pytest.raises(SqlRefused, match="refused"):
        svc.plan(rid, world.signer("mike"))
    _nothing_ran(world)
    with pytest.raises(SqlRefused) as refused:       # before the claim: exit 2, nothing recorded
        svc.apply(rid, world.signer("mike"))
    assert names in refused.value.message
    assert svc.state(rid).state == "approved"
    _nothing_ran(world)
    svc.ledger.close()


@pytest.mark.parametrize("sql,identity", [(s, n) for _i, s, n in SERVER_ONLY],
                         ids=[i for i, _s, _n in SERVER_ONLY])
def test_the_server_resolved_check_alone_refuses_calls_without_call_syntax(world, sql, identity):
    """Statements that never met parse_statement (a modified client, a future parser
    gap): the server's own resolution names the pg_catalog function, at request time
    and at apply, and nothing ran."""
    sql = sql.format(pid=world.victim_pid)
    db = Database(make_world_target(world), 5.0)
    stmt = Statement("UPDATE", "claims", sql, [], "claims", where=sql.split(" WHERE ", 1)[1])
    with pytest.raises(SqlRefused) as refused:
        db.read_before_image(stmt, {})
    assert refused.value.message == (f"refused: statement calls {identity}, not an allowed function "
                                     "(R-DAT-2; see ALLOWED_FUNCTIONS in opskit/corrections/sqlcheck.py)")
    _nothing_ran(world)
    clean = Statement("UPDATE", "claims", "UPDATE claims SET status = 'x' WHERE id = 42", [], "claims",
                      where="id = 42")
    digest = db.read_before_image(clean, {}).digest
    with pytest.raises(SqlRefused, match=identity.replace("(", r"\(").replace(")", r"\)")):
        db.apply(stmt, {}, digest, 1)
    _nothing_ran(world)
    assert db.preview(stmt, {})["error"].startswith(f"refused: statement calls {identity}")
    _nothing_ran(world)


def test_creating_the_probe_function_runs_nothing(world):
    """The mechanism itself: a statement that calls side-effecting user functions in every
    clause is only resolved -- the refusal names the first one, and nothing ran."""
    db = Database(make_world_target(world), 5.0)
    sql = ("UPDATE claims SET status = JSON_ARRAY(id) WHERE id = 42 AND claims.touch "
           "AND lower(id) = 'x' AND status ### 'x'")
    stmt = Statement("UPDATE", "claims", sql, [], "claims", where=sql.split(" WHERE ", 1)[1])
    with pytest.raises(SqlRefused, match=r"refused: statement (calls|uses operator) public\."):
        db.vet_functions(stmt, {})
    _nothing_ran(world)
    # and it leaves no function behind
    assert world.query("SELECT count(*) FROM pg_proc WHERE proname LIKE 'opskit_vet_%'") == [(0,)]


CORRECTIONS = [
    ("update", "UPDATE claims SET status = lower(coalesce(:s, 'X')) || to_char(now(), 'YYYY'), "
     "amount = round(CAST(:a AS numeric) * 2, 2) + 1 WHERE id = :id AND insured_id LIKE 'P-%' "
     "AND id IN (41, 42) AND lower(status) = 'settled' AND upper(insured_id) <> ''",
     {"s": "'FIXED'", "a": "10.25", "id": "42"},
     "SELECT status, amount::text FROM claims WHERE id = 42", [("fixed2026", "21.50")]),
    ("insert", "INSERT INTO refunds (id, claim_id, amount, reason) VALUES (:id, 42, "
     "CAST(:a AS numeric(12,2)), upper(trim(:r)))", {"id": "8", "a": "5", "r": "' dup '"},
     "SELECT claim_id, amount::text, reason FROM refunds WHERE id = 8", [(42, "5.00", "DUP")]),
    ("delete", "DELETE FROM settlements WHERE id = :id AND paid > 0 AND claim_id = abs(-42) "
     "AND settled_on::date < current_date",
     {"id": "1"}, "SELECT count(*) FROM settlements", [(0,)]),
]


@pytest.mark.parametrize("sql,params,check,expected", [c[1:] for c in CORRECTIONS],
                         ids=[c[0] for c in CORRECTIONS])
def test_plain_corrections_with_allowed_builtins_still_apply(world, sql, params, check, expected):
    """With the user's public.lower(integer) and ### present, lower(text), operators and
    casts still resolve to pg_catalog and the correction runs end to end."""
    if "now()" in sql:
        year = world.query("SELECT to_char(now(), 'YYYY')")[0][0]
        expected = [(expected[0][0].replace("2026", year), expected[0][1])]
    svc = world.svc()
    entry, _state = svc.request("his", sql, params, "fix", "INC-1", world.signer("alice"))
    rid = entry["request"]
    approve_fully(world, svc, rid)
    svc.apply(rid, world.signer("mike"))
    assert world.query(check) == expected
    assert world.victim.execute("SELECT 1").fetchall() == [(1,)]
    assert world.query("SELECT what FROM side_effects") == []
    svc.ledger.close()


def test_refusal_is_one_line_with_exit_code_2(world, opskit, tmp_path):
    """Through the CLI: one line naming the function, exit 2 (refused input), nothing ran."""
    sql = tmp_path / "fix.sql"
    sql.write_text("UPDATE claims SET status = 'x' WHERE id = :id AND claims.touch\n")
    run = opskit("correct", "request", "--target", "his", "--sql", sql, "--param", "id=42",
                 "--reason", "r", env=world.env("alice"))
    assert run.exit_code == 2, run.output
    assert "refused: statement calls public.touch(claims), not an allowed function" in run.stderr
    assert len([line for line in run.stderr.splitlines() if "refused" in line]) == 1
    _nothing_ran(world)


def test_a_role_without_temporary_is_told_what_it_needs(world, postgres, postgres_db):
    """The vetting creates a temporary function: without TEMPORARY the request is refused,
    the message says which privilege is missing, and nothing ran."""
    role = f"fixer_{postgres_db}"[:60]
    postgres.create_role(role, "pw-fixer")
    postgres.psql(f'REVOKE TEMPORARY ON DATABASE "{postgres_db}" FROM PUBLIC; '
                  f"GRANT SELECT, UPDATE ON claims TO {role}", postgres_db)
    db = Database(Target("his", postgres.dsn_for(postgres_db, role, "pw-fixer")), 5.0)
    stmt = Statement("UPDATE", "claims", "UPDATE claims SET status = 'x' WHERE id = 42", [], "claims",
                     where="id = 42")
    with pytest.raises(UsageError, match="the correction role needs TEMPORARY on the database"):
        db.read_before_image(stmt, {})
    _nothing_ran(world)


def test_a_row_level_security_policy_on_a_table_read_is_vetted_for_a_role_it_applies_to(
        world, postgres, postgres_db):
    """A policy runs its functions for every row the statement reads from its table: for a
    role the policy applies to it is refused at request time, nothing ran; for the owner
    (the policy does not apply) the same statement stays acceptable."""
    role = f"rls_{postgres_db}"[:60]
    postgres.create_role(role, "pw-rls")
    postgres.psql("CREATE TABLE watched (id integer); INSERT INTO watched VALUES (42); "
                  "ALTER TABLE watched ENABLE ROW LEVEL SECURITY; "
                  "CREATE POLICY peek ON watched USING (public.hit('policy')); "
                  f"GRANT SELECT ON watched TO {role}; GRANT SELECT, UPDATE ON claims TO {role}",
                  postgres_db)
    sql = "UPDATE claims SET status = 'x' WHERE id IN (SELECT id FROM watched)"
    stmt = Statement("UPDATE", "claims", sql, [], "claims", where="id IN (SELECT id FROM watched)")
    db = Database(Target("his", postgres.dsn_for(postgres_db, role, "pw-rls")), 5.0)
    with pytest.raises(SqlRefused, match=r"refused: row-level security policy peek on watched, which "
                                         r"the statement reads, calls public\.hit\(text\)"):
        db.read_before_image(stmt, {})
    _nothing_ran(world)
    Database(make_world_target(world), 5.0).vet_functions(stmt, {})     # superuser: no policy
    _nothing_ran(world)
