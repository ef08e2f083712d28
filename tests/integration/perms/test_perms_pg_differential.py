"""Differential test (#19): opskit's effective PostgreSQL privileges against the
server's own has_table_privilege / has_column_privilege / has_schema_privilege /
has_function_privilege / has_sequence_privilege / has_database_privilege and
pg_has_role, for every generated role x object x privilege, on the real server.

The role graphs come from tests/harness/pg_graph_gen.py (fixed seeds): NOINHERIT
members, a superuser, predefined-role members, owners (one without its own
privilege), grants to roles, PUBLIC and pg_database_owner, SECURITY DEFINER
functions, default privileges. Any disagreement fails and prints the minimal
cases: the role, the object, the privilege, both answers, opskit's grant path
and the statements that touch them."""
import copy

import pytest

from opskit.perms.pg_effective import PRIVILEGES, Effective, RoleGraph
from opskit.perms.postgres import EXCLUDED_SCHEMAS, FUNCTION_SIGNATURE, DatabaseSpec, \
    collect_postgres, qualified, sql_name
from tests.harness.pg_graph_gen import generate

pytestmark = pytest.mark.integration
SEEDS = (19, 20, 21)
ROLE_MODES = ("USAGE", "MEMBER")

ORACLE = {
    "tables": ("has_table_privilege(r.oid, c.oid, p)",
               "pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
               sql_name("n.nspname", "c.relname"), "c.relkind IN ('r', 'p', 'v', 'm', 'f')"),
    "sequences": ("has_sequence_privilege(r.oid, c.oid, p)",
                  "pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                  "ON n.oid = c.relnamespace", sql_name("n.nspname", "c.relname"),
                  "c.relkind = 'S'"),
    "columns": ("has_column_privilege(r.oid, c.oid, att.attnum, p)",
                "pg_catalog.pg_attribute att JOIN pg_catalog.pg_class c ON c.oid = att.attrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
                sql_name("n.nspname", "c.relname", "att.attname"),
                "att.attnum > 0 AND NOT att.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"),
    "schemas": ("has_schema_privilege(r.oid, n.oid, p)", "pg_catalog.pg_namespace n",
                "n.nspname", "true"),
    "functions": ("has_function_privilege(r.oid, p_.oid, p)",
                  "pg_catalog.pg_proc p_ JOIN pg_catalog.pg_namespace n "
                  "ON n.oid = p_.pronamespace", FUNCTION_SIGNATURE.replace("p.", "p_."), "true"),
    "database": ("has_database_privilege(r.oid, d.oid, p)", "pg_catalog.pg_database d",
                 "'database'", "d.datname = current_database()"),
}


def _oracle(conn, roles: list[str]) -> list[tuple]:
    """(role, kind, object, privilege, the server's answer) for everything."""
    out = []
    with conn.cursor() as cur:
        for kind, (call, source, key, where) in ORACLE.items():
            excluded = EXCLUDED_SCHEMAS if kind != "database" else "true"
            sql = (f"SELECT r.rolname, {key}, p, {call} FROM pg_catalog.pg_roles r, {source}, "
                   f"unnest(%s::text[]) p WHERE r.rolname = ANY(%s) AND {where} AND "
                   f"{excluded}")
            cur.execute(sql.replace("\\_%", "\\_%%"), [list(PRIVILEGES[kind]), roles])
            out += [(r, kind, o, p, v) for r, o, p, v in cur.fetchall()]
        cur.execute("SELECT r.rolname, g.rolname, m, pg_has_role(r.oid, g.oid, m) "
                    "FROM pg_catalog.pg_roles r, pg_catalog.pg_roles g, unnest(%s::text[]) m "
                    "WHERE r.rolname = ANY(%s) AND (g.rolname = ANY(%s) OR g.rolname LIKE "
                    "'pg\\_%%')", [list(ROLE_MODES), roles, roles])
        out += [(r, "roles", g, m, v) for r, g, m, v in cur.fetchall()]
    return out


def disagreements(data: dict, answers: list[tuple]) -> list[tuple]:
    eff, graph = Effective(data), RoleGraph.from_data(data)
    out = []
    for role, kind, obj, priv, server in answers:
        ours = (graph.has_role(role, obj, priv) if kind == "roles"
                else eff.has(role, kind, obj, priv))
        if ours != server:
            out.append((role, kind, obj, priv, server, ours))
    return out


def explain(graph, data: dict, wrong: list[tuple], limit: int = 5) -> str:
    """The minimal cases: fewest roles reached, then fewest statements involved."""
    eff, rg = Effective(data), RoleGraph.from_data(data)

    def size(case):
        role, _k, obj, *_ = case
        return (len(rg.walk(role, None)), len(graph.mentioning(role, obj.split("(")[0])))

    lines = [f"{len(wrong)} disagreement(s) with the server; the smallest:"]
    for role, kind, obj, priv, server, ours in sorted(wrong, key=size)[:limit]:
        path = (" -> ".join(rg.path(role, obj, None)) if kind == "roles"
                else eff.why(role, kind, obj, priv))
        lines += [f"- {role} {priv} on {kind} {obj}: server {server}, opskit {ours}",
                  f"  opskit's grant path: {path or 'none'}",
                  f"  {role} inherits {sorted(rg.privileges_of(role) - {role})}, "
                  f"SET ROLE only {sorted(rg.set_role_only(role))}",
                  "  statements: " + "; ".join(graph.mentioning(role, obj.split("(")[0]))]
    return "\n".join(lines)


@pytest.fixture
def graph_db(postgres, request):
    """A generated graph's roles and database on the real server; dropped afterwards."""
    seed = request.param
    graph = generate(seed, f"dg{seed}_")
    dbname = f"perms_dg{seed}"
    postgres.psql(";\n".join(graph.drop_sql()) + ";", check=False)
    postgres.psql(";\n".join(graph.cluster_sql) + ";")
    try:
        postgres.create_database(dbname, owner=graph.db_owner)
        postgres.psql(";\n".join(graph.db_sql) + ";", dbname)
        yield graph, dbname
    finally:
        postgres.drop_database(dbname)
        postgres.psql(";\n".join(graph.drop_sql()) + ";", check=False)


def _collect(postgres, dbname, tmp_path) -> dict:
    pw = tmp_path / "pw"
    pw.write_text(postgres.password + "\n")
    pw.chmod(0o600)
    return collect_postgres(DatabaseSpec(dbname, host=postgres.host, port=postgres.port,
                                         user=postgres.superuser, dbname=dbname,
                                         password_file=str(pw)))


@pytest.mark.parametrize("graph_db", SEEDS, indirect=True)
def test_effective_privileges_agree_with_the_server(postgres, graph_db, tmp_path):
    import psycopg
    graph, dbname = graph_db
    data = _collect(postgres, dbname, tmp_path)
    with psycopg.connect(postgres.dsn_for(dbname), autocommit=True) as conn:
        answers = _oracle(conn, graph.roles)
    # the graph covers what it must (else agreeing would prove little)
    assert len(graph.roles) >= 30
    assert any(not data["roles"][r]["inherit"] for r in graph.roles)
    assert {"PUBLIC", "pg_database_owner"} <= set(data["privileges"]["tables"]) | \
        set(data["privileges"]["schemas"]) | set(data["privileges"]["functions"])
    assert any(f["security_definer"] for f in data["functions"].values())
    assert data["default_acl"] and data["rls"]
    kinds = {a[1] for a in answers}
    assert kinds == set(ORACLE) | {"roles"} and len(answers) > 10000
    assert sum(1 for a in answers if a[4]) > 1000        # both answers occur
    wrong = disagreements(data, answers)
    assert not wrong, explain(graph, data, wrong)
    # the same comparison fails on the old model: NOINHERIT followed, no predefined
    # roles, no superuser (so this test can fail)
    old = copy.deepcopy(data)
    for ms in old["member_of"].values():
        for m in ms:
            m["inherit"] = True
    assert disagreements(old, answers), "NOINHERIT memberships never mattered"
    old = copy.deepcopy(data)
    for r in graph.roles:
        old["member_of"][r] = [m for m in old["member_of"].get(r, ())
                               if m["role"] not in ("pg_read_all_data", "pg_write_all_data")]
    assert disagreements(old, answers), "predefined roles never mattered"
    old = copy.deepcopy(data)
    old["owners"]["database"]["database"] = None
    assert disagreements(old, answers), "pg_database_owner never mattered"


# names holding dots and quotes (probe F3): joined with plain dots, the table "k.l".m and
# the sequence k."l.m" (and the functions "x.y".f and x."y.f") shared one key
DOTTED_ROLES = ("dd_q", "dd_w")
DOTTED_SQL = """
CREATE SCHEMA "a.b"; CREATE TABLE "a.b".t (x int, "c.d" int);
CREATE SCHEMA "k.l"; CREATE SCHEMA k; CREATE TABLE "k.l".m (a int); CREATE SEQUENCE k."l.m";
CREATE SCHEMA "x.y"; CREATE SCHEMA x; CREATE TABLE x."y.z" (a int);
CREATE TABLE "x.y".z (a int, "b.c" int, "d""e" int); CREATE SCHEMA "q""r"; CREATE TABLE "q""r".t (a int);
CREATE FUNCTION "x.y".f(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION x."y.f"(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
REVOKE EXECUTE ON FUNCTION "x.y".f(int) FROM PUBLIC; GRANT EXECUTE ON FUNCTION "x.y".f(int) TO dd_q;
GRANT USAGE ON SCHEMA "a.b", "k.l", k TO dd_q; GRANT SELECT, INSERT ON "a.b".t, "k.l".m TO dd_q;
GRANT UPDATE ("c.d") ON "a.b".t TO dd_w; GRANT USAGE ON SEQUENCE k."l.m" TO dd_w;
GRANT USAGE ON SCHEMA "x.y", x TO dd_w; GRANT SELECT ON "x.y".z TO dd_w;
GRANT UPDATE ("b.c"), INSERT ("d""e") ON "x.y".z TO dd_q; GRANT DELETE ON x."y.z" TO dd_w;
GRANT ALL ON SCHEMA "q""r" TO dd_q; GRANT TRUNCATE ON "q""r".t TO dd_q;
"""


def test_dotted_names_agree_with_the_server(postgres, tmp_path):
    import psycopg
    dbname = "perms_dotted"
    drop = ";".join(f"DROP ROLE IF EXISTS {r}" for r in DOTTED_ROLES)
    postgres.psql(drop, check=False)
    postgres.psql("CREATE ROLE dd_q LOGIN; CREATE ROLE dd_w NOLOGIN")
    try:
        postgres.create_database(dbname)
        postgres.psql(DOTTED_SQL, dbname)
        data = _collect(postgres, dbname, tmp_path)
        with psycopg.connect(postgres.dsn_for(dbname), autocommit=True) as conn:
            answers = _oracle(conn, list(DOTTED_ROLES))
        # the server: dd_q writes both tables
        postgres.psql('SET ROLE dd_q; INSERT INTO "a.b".t VALUES (1, 1); '
                      'INSERT INTO "k.l".m VALUES (1)', dbname)
    finally:
        postgres.drop_database(dbname)
        postgres.psql(drop, check=False)
    wrong = disagreements(data, answers)
    assert not wrong, wrong[:10]
    assert {'"k.l".m', 'k."l.m"', '"x.y".f(integer)', 'x."y.f"(integer)'} <= \
        {a[2] for a in answers}
    held = Effective(data).held("dd_q")
    assert held["tables"][qualified("a.b", "t")] == ["SELECT", "INSERT"]    # schema usable
    assert held["tables"][qualified("k.l", "m")] == ["SELECT", "INSERT"]
    assert held["tables"][qualified('q"r', "t")] == ["TRUNCATE"]
    assert held["columns"][qualified("x.y", "z", 'd"e')] == ["INSERT (no USAGE on schema x.y)"]
    assert held["functions"] == {'"x.y".f(integer)': ["EXECUTE (no USAGE on schema x.y)"],
                                 'x."y.f"(integer)': ["EXECUTE (no USAGE on schema x)"]}
