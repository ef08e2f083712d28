"""Default privileges (future grants) and row-level security on the real PostgreSQL
server (#19 item 11): the default-privileges and row-security checks, each with the
settings under which they must stay silent.

roles.yaml declares ins.insured_persons (identity numbers) as a table that must
keep rows apart, which only the dba role may read whole (docs/roster.md
``row_security``)."""
import pytest

from opskit.accounts.declared import load_declared
from opskit.perms.analysis import Options, analyse
from opskit.perms.snapshot import take_snapshot
from opskit.settings import load_config
from tests.fixtures.perms.trees import Org

pytestmark = pytest.mark.integration
TABLE = "ins.insured_persons"
# a policy that keeps rows apart for the claims readers, and everything for the dba
KEPT_APART = (f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY; "
              f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY; "
              f"CREATE POLICY resident ON {TABLE} FOR SELECT TO ins_claims_ro "
              "USING (insurance_type = 'resident'); "
              f"CREATE POLICY dba_all ON {TABLE} TO ins_dba USING (true)")
UNDO_KEPT_APART = (f"DROP POLICY IF EXISTS resident ON {TABLE}; "
                   f"DROP POLICY IF EXISTS dba_all ON {TABLE}; "
                   f"ALTER TABLE {TABLE} NO FORCE ROW LEVEL SECURITY; "
                   f"ALTER TABLE {TABLE} DISABLE ROW LEVEL SECURITY")


@pytest.fixture
def checks(tmp_path, perms_pg):
    """run(check, declare=True) -> the findings of ``check`` for the bureau's database."""
    def run(check: str, declare: bool = True):
        org = Org(tmp_path / f"org{len(list(tmp_path.iterdir()))}")
        if declare:
            org.roles["row_security"] = {TABLE: {"description": "insured persons' identity",
                                                 "all_rows": ["dba"]}}
        org.save(databases={"insurance": perms_pg.entry(tmp_path)})
        config = load_config(org.config)
        snap = take_snapshot([], [perms_pg.spec(tmp_path)])
        assert snap.failed() == [], snap.databases
        result = analyse(snap, load_declared(config), Options.from_config(config))
        return [f for f in result.findings if f.check == check]
    return run


# --- default privileges -----------------------------------------------------------------

def test_query_tier_role_getting_writes_on_future_tables(perms_pg, checks):
    grant = "ALTER DEFAULT PRIVILEGES IN SCHEMA ins GRANT INSERT, UPDATE ON TABLES TO {}"
    revoke = "ALTER DEFAULT PRIVILEGES IN SCHEMA ins REVOKE INSERT, UPDATE ON TABLES FROM {}"
    assert checks("default-privileges") == []
    with perms_pg.changed(grant.format("ins_claims_ro"), revoke.format("ins_claims_ro")):
        found = checks("default-privileges")
    assert [(f.account, f.severity, f.rule) for f in found] == [("ins_claims_ro", "high",
                                                                 "R-ACC-5")]
    assert "INSERT, UPDATE on future tables in schema ins" in found[0].message
    assert ("ALTER DEFAULT PRIVILEGES FOR ROLE" in found[0].evidence
            and "IN SCHEMA ins GRANT INSERT, UPDATE ON TABLES TO ins_claims_ro"
            in found[0].evidence)
    # through a role the query tier inherits
    with perms_pg.changed("CREATE ROLE ins_helper NOLOGIN; GRANT ins_helper TO ins_claims_ro; "
                          + grant.format("ins_helper"),
                          revoke.format("ins_helper") + "; REVOKE ins_helper FROM ins_claims_ro;"
                          " DROP ROLE ins_helper"):
        found = checks("default-privileges")
    assert [f.account for f in found] == ["ins_claims_ro"]
    assert "inherited through ins_claims_ro -> ins_helper" in found[0].evidence
    # a query-tier person granted writes on future tables in their own name
    with perms_pg.changed(grant.format('"ma.lin"'), revoke.format('"ma.lin"')):
        found = checks("default-privileges")
    assert [(f.person, f.rule) for f in found] == [("ma.lin", "R-ACC-5")]


def test_reading_future_tables_or_writes_for_an_operator_are_no_finding(perms_pg, checks):
    """Must NOT pass: the query tier may read; operators' future writes are their post's."""
    with perms_pg.changed("ALTER DEFAULT PRIVILEGES IN SCHEMA ins GRANT SELECT ON TABLES TO "
                          "ins_claims_ro; ALTER DEFAULT PRIVILEGES IN SCHEMA ins GRANT INSERT "
                          "ON TABLES TO ins_claims_rw",
                          "ALTER DEFAULT PRIVILEGES IN SCHEMA ins REVOKE SELECT ON TABLES FROM "
                          "ins_claims_ro; ALTER DEFAULT PRIVILEGES IN SCHEMA ins REVOKE INSERT "
                          "ON TABLES FROM ins_claims_rw"):
        assert checks("default-privileges") == []


def test_future_grants_to_public(perms_pg, checks):
    with perms_pg.changed("ALTER DEFAULT PRIVILEGES IN SCHEMA ins GRANT SELECT ON TABLES TO "
                          "PUBLIC",
                          "ALTER DEFAULT PRIVILEGES IN SCHEMA ins REVOKE SELECT ON TABLES FROM "
                          "PUBLIC"):
        found = checks("default-privileges")
    assert [(f.account, f.severity, f.rule) for f in found] == [("PUBLIC", "medium", "R-ACC-4")]
    assert found[0].message.startswith("every role (PUBLIC) will get SELECT on future tables")
    with perms_pg.changed("ALTER DEFAULT PRIVILEGES GRANT DELETE ON TABLES TO PUBLIC",
                          "ALTER DEFAULT PRIVILEGES REVOKE DELETE ON TABLES FROM PUBLIC"):
        found = checks("default-privileges")
    assert [(f.severity, f.rule) for f in found] == [("high", "R-ACC-5")]
    assert "in every schema" in found[0].message
    # must NOT pass: a global entry that only restates the server's defaults (the
    # creator's own rights, PUBLIC's EXECUTE on functions)
    with perms_pg.changed("ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO ins_dba; "
                          "ALTER DEFAULT PRIVILEGES GRANT USAGE ON TYPES TO ins_dba",
                          "ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM ins_dba; "
                          "ALTER DEFAULT PRIVILEGES REVOKE USAGE ON TYPES FROM ins_dba"):
        assert perms_pg.sql("SELECT count(*) FROM pg_default_acl WHERE defaclnamespace = 0 "
                            "AND array_to_string(defaclacl, ',') LIKE '%=X/%'") == "1"
        assert checks("default-privileges") == []


# --- row-level security ------------------------------------------------------------------

def test_declared_table_without_row_level_security(perms_pg, checks):
    found = checks("row-security")
    assert [(f.severity, f.rule) for f in found] == [("high", "R-ACC-4")]
    assert found[0].message == (f"{TABLE} holds personal data but row-level security is off "
                                "in insurance: every reader sees every row")
    assert "SELECT granted to" in found[0].evidence and "ins_claims_ro" in found[0].evidence
    # undeclared, the same table is no finding (must NOT pass without the declaration)
    assert checks("row-security", declare=False) == []


def test_row_level_security_kept_apart_is_no_finding(perms_pg, checks):
    """Must NOT pass: enabled, forced, the readers limited, the dba (all_rows) whole."""
    with perms_pg.changed(KEPT_APART, UNDO_KEPT_APART):
        assert checks("row-security") == []


def test_missing_force_names_the_owner(perms_pg, checks):
    with perms_pg.changed(KEPT_APART + f"; ALTER TABLE {TABLE} NO FORCE ROW LEVEL SECURITY",
                          UNDO_KEPT_APART):
        found = checks("row-security")
    assert [(f.severity, f.rule) for f in found] == [("medium", "R-ACC-4")]
    assert "without FORCE" in found[0].message
    owner = perms_pg.sql(f"SELECT tableowner FROM pg_tables WHERE schemaname || '.' || "
                         f"tablename = '{TABLE}'")
    assert f"owner {owner}" in found[0].evidence and found[0].account == owner


def test_using_true_for_a_role_that_may_not_see_every_row(perms_pg, checks):
    with perms_pg.changed(KEPT_APART + f"; CREATE POLICY everything ON {TABLE} FOR SELECT "
                          "TO ins_claims_ro USING (true)",
                          f"DROP POLICY everything ON {TABLE}; " + UNDO_KEPT_APART):
        found = checks("row-security")
    assert [(f.account, f.severity) for f in found] == [("ins_claims_ro", "high")]
    assert found[0].message == (f"policy everything lets ins_claims_ro reach every row of "
                                f"{TABLE} in insurance")
    assert "all_rows): dba" in found[0].evidence
    # to PUBLIC, but narrowed by a restrictive policy: no finding (must NOT pass)
    with perms_pg.changed(KEPT_APART + f"; CREATE POLICY everything ON {TABLE} TO PUBLIC "
                          f"USING (true); CREATE POLICY only_resident ON {TABLE} AS "
                          "RESTRICTIVE TO PUBLIC USING (insurance_type = 'resident')",
                          f"DROP POLICY everything ON {TABLE}; DROP POLICY only_resident ON "
                          f"{TABLE}; " + UNDO_KEPT_APART):
        assert checks("row-security") == []
    # to PUBLIC, not narrowed
    with perms_pg.changed(KEPT_APART + f"; CREATE POLICY everything ON {TABLE} TO PUBLIC "
                          "USING (true)",
                          f"DROP POLICY everything ON {TABLE}; " + UNDO_KEPT_APART):
        found = checks("row-security")
    assert [f.account for f in found] == ["PUBLIC"]
    assert "every role (PUBLIC)" in found[0].message


def test_bypassrls_role(perms_pg, checks):
    with perms_pg.changed(KEPT_APART + "; ALTER ROLE ins_claims_ro BYPASSRLS",
                          "ALTER ROLE ins_claims_ro NOBYPASSRLS; " + UNDO_KEPT_APART):
        found = checks("row-security")
    assert [(f.account, f.severity) for f in found] == [("ins_claims_ro", "high")]
    assert found[0].evidence == f"pg_roles.rolbypassrls = true; holds SELECT on {TABLE}"
    # must NOT pass: the dba may see every row; a BYPASSRLS role without any privilege
    # on the table reads nothing of it
    with perms_pg.changed(KEPT_APART + "; ALTER ROLE ins_dba BYPASSRLS; "
                          "ALTER ROLE ins_refund BYPASSRLS",
                          "ALTER ROLE ins_dba NOBYPASSRLS; ALTER ROLE ins_refund "
                          "NOBYPASSRLS; " + UNDO_KEPT_APART):
        assert checks("row-security") == []


BYP_ROLE = ("CREATE ROLE ins_byp NOLOGIN BYPASSRLS; GRANT USAGE ON SCHEMA ins TO ins_byp; "
            "GRANT SELECT (id, {column}) ON {table} TO ins_byp")
BYP_UNDO = "; DROP OWNED BY ins_byp; DROP ROLE ins_byp"
BYP_READS = "SET ROLE ins_byp; SELECT count(id_number) FROM ins.insured_persons; RESET ROLE"


def test_bypassrls_role_with_column_privileges_only(perms_pg, checks):
    """Probe F2: SELECT on some columns of a table with row-level security reads
    those columns of every row when the role has BYPASSRLS."""
    with perms_pg.changed(KEPT_APART + "; " + BYP_ROLE.format(column="id_number", table=TABLE),
                          UNDO_KEPT_APART + BYP_UNDO):
        found = checks("row-security")
        # the server: every row (2) with BYPASSRLS, none (no policy for it) without
        assert perms_pg.sql(BYP_READS) == "2"
        perms_pg.sql("ALTER ROLE ins_byp NOBYPASSRLS")
        assert perms_pg.sql(BYP_READS) == "0"
    assert [(f.account, f.severity, f.rule) for f in found] == [("ins_byp", "high", "R-ACC-4")]
    assert found[0].evidence == ("pg_roles.rolbypassrls = true; holds SELECT (id, id_number) "
                                 f"on {TABLE}")
    # must NOT pass: the same column grant on a table without row-level security
    with perms_pg.changed(KEPT_APART + "; " + BYP_ROLE.format(column="amount", table="ins.claims"),
                          UNDO_KEPT_APART + BYP_UNDO):
        assert checks("row-security") == []


def test_owner_bypass_on_an_undeclared_table(perms_pg, checks):
    # a table of its own: changing an existing table's owner would move its grants
    with perms_pg.changed("CREATE TABLE ins.desk_notes (id int); "
                          "ALTER TABLE ins.desk_notes OWNER TO ins_claims_rw; "
                          "ALTER TABLE ins.desk_notes ENABLE ROW LEVEL SECURITY",
                          "DROP TABLE ins.desk_notes"):
        found = checks("row-security", declare=False)
        with perms_pg.changed("ALTER TABLE ins.desk_notes FORCE ROW LEVEL SECURITY",
                              "ALTER TABLE ins.desk_notes NO FORCE ROW LEVEL SECURITY"):
            forced = checks("row-security", declare=False)
    assert [(f.account, f.severity) for f in found] == [("ins_claims_rw", "low")]
    assert found[0].message == ("ins_claims_rw owns ins.desk_notes in insurance and bypasses "
                                "its row-level security (no FORCE)")
    assert "login roles holding its privileges: wu.xia, xuj" in found[0].evidence
    assert forced == []


def test_declared_table_missing_from_a_named_database(perms_pg, checks, tmp_path):
    org = Org(tmp_path / "org-missing")
    org.roles["row_security"] = {"ins.no_such_table": {"databases": ["insurance"]},
                                 "ins.elsewhere": {"databases": ["other"]}}
    org.save(databases={"insurance": perms_pg.entry(tmp_path)})
    config = load_config(org.config)
    snap = take_snapshot([], [perms_pg.spec(tmp_path)])
    result = analyse(snap, load_declared(config), Options.from_config(config))
    found = [f for f in result.findings if f.check == "row-security"]
    assert [f.message for f in found] == ["ins.no_such_table (roles.yaml row_security) is not "
                                          "in insurance"]
