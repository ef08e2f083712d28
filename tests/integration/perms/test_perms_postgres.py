"""The PostgreSQL collector and its findings on a real server with the insurance
schema (insured persons, claims, settlements, refunds, benefit activations).

Roles are cluster-wide and other tests create their own, so findings are
looked at for this bureau's roles only (tests/harness/perms.py)."""
import pytest

from opskit.accounts.declared import load_declared
from opskit.core.errors import OperationalError
from opskit.perms.analysis import Options, analyse
from opskit.perms.postgres import DatabaseSpec, collect_postgres
from opskit.perms.snapshot import take_snapshot
from opskit.settings import load_config
from tests.fixtures.perms.trees import Org
from tests.harness.perms import FROZEN_ROLES, GROUP_ROLES, LOGIN_ROLES
from tests.harness.postgres import PsqlError

pytestmark = pytest.mark.integration
OURS = {*LOGIN_ROLES, *FROZEN_ROLES, *GROUP_ROLES, "ins_temp_clerk", "guest", "ins_helper"}


@pytest.fixture
def bureau(tmp_path, perms_pg):
    org = Org(tmp_path / "org")
    org.save(databases={"insurance": perms_pg.entry(tmp_path)})
    config = load_config(org.config)
    roster = load_declared(config)

    def run():
        snap = take_snapshot([], [perms_pg.spec(tmp_path)])
        assert snap.failed() == [], snap.databases
        result = analyse(snap, roster, Options.from_config(config))
        return [f for f in result.findings if f.account in OURS or f.person], result, snap
    return run


def test_collects_roles_memberships_and_privileges(perms_pg, tmp_path):
    data = collect_postgres(perms_pg.spec(tmp_path))
    assert data["superuser"] is True and data["warnings"] == []
    assert data["roles"]["wu.xia"]["login"] is True and data["roles"]["guo.qiang"]["login"] is False
    assert {m["role"] for m in data["member_of"]["wu.xia"]} == {"ins_claims_rw", "ins_refund"}
    assert [m["role"] for m in data["member_of"]["ins_claims_rw"]] == ["ins_claims_ro"]
    tables = data["privileges"]["tables"]
    assert tables["ins_claims_ro"]["ins.claims"] == ["SELECT"]
    assert tables["ins_claims_ro"]["ins.claim_overview"] == ["SELECT"]
    assert tables["ins_claims_rw"]["ins.claims"] == ["INSERT", "SELECT", "UPDATE"]
    assert "ins.claims_id_seq" in tables["ins_claims_rw"]                # sequences too
    # column privileges (aclexplode of pg_attribute.attacl) and schema ACLs
    assert data["privileges"]["columns"]["ins_refund"]["ins.refunds.approved_by"] == ["UPDATE"]
    assert data["privileges"]["schemas"]["ins_claims_ro"]["ins"] == ["USAGE"]
    assert "PUBLIC" not in data["privileges"]["schemas"] or \
        "public" not in data["privileges"]["schemas"]["PUBLIC"]


def test_warns_when_the_connecting_role_cannot_see_everything(perms_pg, tmp_path):
    with perms_pg.changed("ALTER ROLE \"ma.lin\" PASSWORD 'reader-pw-1'",
                          "ALTER ROLE \"ma.lin\" PASSWORD NULL"):
        pw = tmp_path / "ml.pw"
        pw.write_text("reader-pw-1\n")
        pw.chmod(0o600)
        spec = DatabaseSpec("insurance", host=perms_pg.server.host, port=perms_pg.server.port,
                            user="ma.lin", dbname=perms_pg.dbname, password_file=str(pw))
        data = collect_postgres(spec)
    assert data["superuser"] is False
    text = " ".join(data["warnings"])
    assert "connected as ma.lin, not a superuser" in text
    assert "not a member of pg_read_all_settings, pg_read_all_stats" in text
    assert "no USAGE on schema(s) public" in text
    # the catalogue still shows the grants information_schema would hide from ma.lin
    assert "ins_refund" in data["privileges"]["tables"]


def test_bad_connection_is_a_row_not_a_crash(perms_pg, tmp_path):
    pw = tmp_path / "bad.pw"
    pw.write_text("wrong\n")
    pw.chmod(0o600)
    spec = DatabaseSpec("insurance", host=perms_pg.server.host, port=perms_pg.server.port,
                        user=perms_pg.server.superuser, dbname=perms_pg.dbname,
                        password_file=str(pw))
    with pytest.raises(OperationalError, match="cannot connect"):
        collect_postgres(spec)
    snap = take_snapshot([], [spec])
    assert snap.failed() == ["db:insurance"] and "wrong" not in str(snap.content)
    pw.chmod(0o644)
    with pytest.raises(Exception, match="readable by others"):
        spec.password()


def test_baseline_database_matches_the_roster(bureau):
    findings, result, _snap = bureau()
    assert findings == []
    assert [d for d in result.diff if d.where == "db:insurance"] == []


def test_query_tier_write_grants_direct_and_inherited(perms_pg, bureau):
    with perms_pg.changed("GRANT UPDATE ON ins.claims TO ins_claims_ro",
                          "REVOKE UPDATE ON ins.claims FROM ins_claims_ro"):
        findings, _r, _s = bureau()
    q = [f for f in findings if f.check == "query-write"]
    # reported once, on the query-tier role; its members are not repeated one by one
    assert [(f.account, f.person, f.rule) for f in q] == [("ins_claims_ro", None, "R-ACC-5")]
    assert "UPDATE on ins.claims (granted to ins_claims_ro)" in q[0].evidence
    assert "(query tier: claims-viewer)" in q[0].message
    # through a role ins_claims_ro is a member of (recursive membership)
    with perms_pg.changed("CREATE ROLE ins_helper NOLOGIN; "
                          "GRANT INSERT ON ins.refunds TO ins_helper; "
                          "GRANT ins_helper TO ins_claims_ro",
                          "REVOKE ins_helper FROM ins_claims_ro; "
                          "REVOKE ALL ON ins.refunds FROM ins_helper; DROP ROLE ins_helper"):
        findings, _r, _s = bureau()
    q = [f for f in findings if f.check == "query-write"]
    assert len(q) == 1 and "INSERT on ins.refunds (granted to ins_helper)" in q[0].evidence
    # a query-tier person with a write grant of their own is reported as a person
    with perms_pg.changed('GRANT UPDATE ON ins.claims TO "ma.lin"',
                          'REVOKE UPDATE ON ins.claims FROM "ma.lin"'):
        findings, _r, _s = bureau()
    q = [f for f in findings if f.check == "query-write"]
    assert [(f.person, f.where) for f in q] == [("ma.lin", "db:insurance")]
    assert "UPDATE on ins.claims (granted to ma.lin)" in q[0].evidence


def test_query_tier_member_of_pg_write_all_data(perms_pg, bureau):
    """#19 case 9 (R-ACC-5): pg_write_all_data writes every table without a grant."""
    with perms_pg.changed('GRANT pg_write_all_data TO "ma.lin"',
                          'REVOKE pg_write_all_data FROM "ma.lin"'):
        findings, _r, _s = bureau()
    q = [f for f in findings if f.check == "query-write"]
    assert [(f.person, f.severity, f.rule) for f in q] == [("ma.lin", "high", "R-ACC-5")]
    assert "pg_write_all_data" in q[0].evidence
    # reading everything is not writing: no query-write finding (must NOT pass)
    with perms_pg.changed('GRANT pg_read_all_data TO "ma.lin"',
                          'REVOKE pg_read_all_data FROM "ma.lin"'):
        findings, _r, _s = bureau()
    assert [f for f in findings if f.check == "query-write"] == []


def test_beyond_role_in_the_database(perms_pg, bureau):
    with perms_pg.changed('GRANT ins_refund TO "ma.lin"; ALTER ROLE "xuj" CREATEROLE; '
                          'GRANT DELETE ON ins.settlements TO "wu.xia"',
                          'REVOKE ins_refund FROM "ma.lin"; ALTER ROLE "xuj" NOCREATEROLE; '
                          'REVOKE DELETE ON ins.settlements FROM "wu.xia"'):
        findings, result, _s = bureau()
    beyond = {(f.person, f.severity, f.message) for f in findings if f.check == "beyond-role"}
    assert ("ma.lin", "high", "ma.lin is a member of ins_refund in insurance, which none of "
                              "their roles gives") in beyond
    assert ("xu.jing", "high", "xu.jing's role has CREATEROLE in insurance") in beyond
    assert ("wu.xia", "medium", "wu.xia holds DELETE on table ins.settlements in insurance "
                                "directly, not through a role") in beyond
    # ma.lin now also holds a special role with write grants: query-write, and a
    # special-tier holder beyond the roster
    assert any(f.check == "query-write" and f.person == "ma.lin" for f in findings)
    kinds = {(d.person, d.kind, d.item) for d in result.diff}
    assert ("ma.lin", "pg-member", "ins_refund") in kinds and ("xu.jing", "pg-attr",
                                                               "CREATEROLE") in kinds


def test_missing_unknown_generic_and_unfrozen_roles(perms_pg, bureau):
    with perms_pg.changed('REVOKE ins_claims_rw FROM "xuj"; CREATE ROLE ins_temp_clerk LOGIN; '
                          'CREATE ROLE guest LOGIN; ALTER ROLE "guo.qiang" LOGIN; '
                          'GRANT ins_claims_ro TO "guo.qiang"',
                          'GRANT ins_claims_rw TO "xuj"; DROP ROLE ins_temp_clerk; '
                          'DROP ROLE guest; REVOKE ins_claims_ro FROM "guo.qiang"; '
                          'ALTER ROLE "guo.qiang" NOLOGIN'):
        findings, _r, _s = bureau()
    by = {}
    for f in findings:
        by.setdefault(f.check, []).append(f)
    assert [(f.person, f.rule) for f in by["declared-missing"]] == [("xu.jing", "R-ACC-3")]
    assert by["declared-missing"][0].message == ("xu.jing is not a member of ins_claims_rw in "
                                                 "insurance")
    assert {f.account for f in by["not-in-roster"]} == {"ins_temp_clerk", "guest"}
    assert all(f.rule == "R-ACC-1" for f in by["not-in-roster"])
    assert [f.account for f in by["generic-account"]] == ["guest"]
    nf = by["not-frozen"]
    assert [(f.person, f.rule, f.severity) for f in nf] == [("guo.qiang", "R-ACC-6", "high")]
    assert "can log in" in nf[0].evidence and "member of ins_claims_ro" in nf[0].evidence
    # frozen with a past VALID UNTIL is frozen too
    with perms_pg.changed("ALTER ROLE \"guo.qiang\" LOGIN VALID UNTIL '2001-01-01'",
                          "ALTER ROLE \"guo.qiang\" NOLOGIN VALID UNTIL 'infinity'"):
        findings, _r, _s = bureau()
    assert not [f for f in findings if f.check == "not-frozen"]


def test_valid_until_infinity_and_past(perms_pg, tmp_path):
    with perms_pg.changed("ALTER ROLE \"ma.lin\" VALID UNTIL 'infinity'",
                          "ALTER ROLE \"ma.lin\" VALID UNTIL 'infinity'"):
        data = collect_postgres(perms_pg.spec(tmp_path))
    assert data["roles"]["ma.lin"]["valid_until"] == "infinity"


def _server_says(perms_pg, call: str) -> bool:
    return perms_pg.sql(f"SELECT {call}") == "t"


def test_case_9_predefined_roles_are_expanded(perms_pg, bureau, tmp_path):
    """#19 case 9: pg_read_all_data reads every table; pg_execute_server_program and
    the server-file roles are high-risk attributes, also when held through a group."""
    with perms_pg.changed('GRANT pg_read_all_data TO "ma.lin"; '
                          "GRANT pg_execute_server_program TO ins_claims_ro",
                          'REVOKE pg_read_all_data FROM "ma.lin"; '
                          "REVOKE pg_execute_server_program FROM ins_claims_ro"):
        findings, result, _s = bureau()
        data = collect_postgres(perms_pg.spec(tmp_path))
        reads = _server_says(perms_pg, "has_table_privilege('ma.lin', 'ins.refunds', 'SELECT')")
    risky = [f for f in findings if "pg_execute_server_program" in f.message]
    assert {(f.person, f.severity, f.rule) for f in risky} == {
        ("ma.lin", "high", "R-ACC-4"), ("wu.xia", "high", "R-ACC-4"),
        ("xu.jing", "high", "R-ACC-4")}           # ins_claims_rw is in ins_claims_ro
    assert "ins_claims_ro -> pg_execute_server_program" in \
        [f for f in risky if f.person == "ma.lin"][0].evidence
    assert ("ma.lin", "pg-attr", "pg_execute_server_program") in \
        {(d.person, d.kind, d.item) for d in result.diff}
    from opskit.perms.pg_effective import Effective
    eff = Effective(data)
    assert eff.has("ma.lin", "tables", "ins.refunds", "SELECT") is reads is True
    assert "pg_read_all_data gives SELECT" in eff.why("ma.lin", "tables", "ins.refunds",
                                                       "SELECT")
    # reading is not writing (must NOT pass)
    assert eff.has("ma.lin", "tables", "ins.refunds", "UPDATE") is False
    # the database owner is a member of pg_database_owner (owns schema public)
    owner = perms_pg.sql("SELECT pg_get_userbyid(datdba) FROM pg_database "
                         "WHERE datname = current_database()")
    assert eff.has(owner, "schemas", "public", "CREATE") is _server_says(
        perms_pg, f"has_schema_privilege('{owner}', 'public', 'CREATE')") is True


def test_case_10_noinherit_membership_is_reachable_not_held(perms_pg, bureau, tmp_path):
    """#19 case 10: a NOINHERIT member does not hold the role's privileges; the role
    is reported as reachable through SET ROLE, and counts for SoD (R-ACC-2)."""
    with perms_pg.changed('ALTER ROLE "ma.lin" NOINHERIT; GRANT ins_refund TO "ma.lin"',
                          'REVOKE ins_refund FROM "ma.lin"; ALTER ROLE "ma.lin" INHERIT'):
        findings, _r, _s = bureau()
        data = collect_postgres(perms_pg.spec(tmp_path))
        server = [_server_says(perms_pg, f"has_table_privilege('ma.lin', '{t}', 'SELECT')")
                  for t in ("ins.claims", "ins.refunds")]
    q = [f for f in findings if f.check == "query-write"]
    assert [f.person for f in q] == ["ma.lin"]
    assert "(reachable through SET ROLE ins_refund, not held)" in q[0].evidence
    assert "granted to ins_refund" not in q[0].evidence
    from opskit.perms.pg_effective import Effective
    eff = Effective(data)
    # not even ins_claims_ro's SELECT is held, as the server says
    assert server == [False, False]
    assert [eff.has("ma.lin", "tables", t, "SELECT") for t in ("ins.claims", "ins.refunds")] \
        == server
    assert eff.graph.set_role_only("ma.lin") == {"ins_refund", "ins_claims_ro"}
    # SoD: a maintainer who can SET ROLE to the claims writers combines admin and operator
    with perms_pg.changed('ALTER ROLE "he.ping" NOINHERIT; GRANT ins_claims_rw TO "he.ping"',
                          'REVOKE ins_claims_rw FROM "he.ping"; ALTER ROLE "he.ping" INHERIT'):
        findings, _r, _s = bureau()
    sod = [f for f in findings if f.check == "sod-conflict" and f.person == "he.ping"]
    assert len(sod) == 1 and sod[0].rule == "R-ACC-2"
    assert "claims-clerk (reachable through SET ROLE)" in sod[0].evidence


WRITER_FN = ("CREATE FUNCTION ins.approve_refund(r int) RETURNS void LANGUAGE plpgsql "
             "{opts} AS $$ BEGIN UPDATE ins.refunds SET approved_at = now() "
             "WHERE id = r; END $$; ALTER FUNCTION ins.approve_refund(int) OWNER TO ins_dba")
DROP_FN = "DROP FUNCTION ins.approve_refund(int)"


def test_case_11_security_definer_writer_executable_by_public(perms_pg, bureau, tmp_path):
    """#19 case 11: PUBLIC's default EXECUTE on a SECURITY DEFINER function that
    updates refunds lets every query-tier role write as the function's owner."""
    with perms_pg.changed(WRITER_FN.format(opts="SECURITY DEFINER"), DROP_FN):
        data = collect_postgres(perms_pg.spec(tmp_path))
        findings, _r, _s = bureau()
    sig = "ins.approve_refund(r integer)"
    q = [f for f in findings if f.check == "query-write"]
    assert [(f.account, f.severity) for f in q] == [("ins_claims_ro", "high")]
    assert (f"EXECUTE on SECURITY DEFINER function {sig}, which writes ins.refunds as its "
            "owner ins_dba, who can write: INSERT, UPDATE, DELETE, TRUNCATE on ins.refunds; ") \
        in q[0].evidence and q[0].evidence.endswith("(granted to PUBLIC)")
    assert data["functions"][sig]["security_definer"] is True
    assert data["functions"][sig]["writes"] == ["ins.refunds"]
    assert data["owners"]["functions"][sig] == "ins_dba"
    assert data["privileges"]["functions"]["PUBLIC"][sig] == ["EXECUTE"]
    # must NOT pass: an invoker's function, or one PUBLIC may not execute
    with perms_pg.changed(WRITER_FN.format(opts="SECURITY INVOKER"), DROP_FN):
        findings, _r, _s = bureau()
    assert [f for f in findings if f.check == "query-write"] == []
    with perms_pg.changed(WRITER_FN.format(opts="SECURITY DEFINER") + "; REVOKE EXECUTE ON "
                          "FUNCTION ins.approve_refund(int) FROM PUBLIC", DROP_FN):
        findings, _r, _s = bureau()
    assert [f for f in findings if f.check == "query-write"] == []


# SECURITY DEFINER functions whose writes a reading of the body misses (probe F1):
# each is owned by ins_dba (who can write ins.refunds) and PUBLIC keeps EXECUTE
HELPER_FN = ("CREATE FUNCTION ins.h(r int) RETURNS void LANGUAGE sql AS $$ UPDATE ins.refunds "
             "SET approved_at = now() WHERE id = r $$; ")
DEFINER_BODIES = {
    "calls-a-helper": HELPER_FN + "CREATE FUNCTION ins.w(r int) RETURNS void LANGUAGE sql "
                                  "{sec} AS $$ SELECT ins.h(r) $$",
    "begin-atomic": "CREATE FUNCTION ins.w(r int) RETURNS void LANGUAGE sql {sec} BEGIN ATOMIC "
                    "UPDATE ins.refunds SET approved_at = now() WHERE id = r; END",
    "stable-performs-helper": HELPER_FN + "CREATE FUNCTION ins.w(r int) RETURNS int LANGUAGE "
                                          "plpgsql STABLE {sec} AS $$ BEGIN PERFORM ins.h(r); "
                                          "RETURN 1; END $$",
    "quoted-no-space": "CREATE FUNCTION ins.w(r int) RETURNS void LANGUAGE sql {sec} AS $$ "
                       'UPDATE"ins".refunds SET approved_at = now() WHERE id = r $$',
    "comment-for-space": "CREATE FUNCTION ins.w(r int) RETURNS void LANGUAGE sql {sec} AS $$ "
                         "UPDATE/**/ins.refunds SET approved_at = now() WHERE id = r $$",
    "grants-to-public": "GRANT UPDATE ON ins.refunds TO ins_dba WITH GRANT OPTION; "
                        "CREATE FUNCTION ins.w(r int) RETURNS void LANGUAGE plpgsql {sec} AS $$ "
                        "BEGIN GRANT UPDATE ON ins.refunds TO PUBLIC; END $$",
}
DEFINER_UNDO = ("DROP FUNCTION IF EXISTS ins.w(int); DROP FUNCTION IF EXISTS ins.h(int); "
                "REVOKE GRANT OPTION FOR UPDATE ON ins.refunds FROM ins_dba CASCADE; "
                "UPDATE ins.refunds SET approved_at = NULL")
# what ins_claims_ro does through the function; after it a refund is approved
RUN_AS_QUERY_TIER = ("SET ROLE ins_claims_ro; SELECT ins.w(1); {after}RESET ROLE; "
                     "SELECT count(*) FROM ins.refunds WHERE approved_at IS NOT NULL")


def _definer(case: str, sec: str = "SECURITY DEFINER", owner: str = "ins_dba") -> str:
    sql = DEFINER_BODIES[case].format(sec=sec) + f"; ALTER FUNCTION ins.w(int) OWNER TO {owner}"
    return sql + (f"; ALTER FUNCTION ins.h(int) OWNER TO {owner}" if HELPER_FN in sql else "")


def _run_as_query_tier(perms_pg, case: str) -> str:
    after = "UPDATE ins.refunds SET approved_at = now(); " if case == "grants-to-public" else ""
    return perms_pg.sql(RUN_AS_QUERY_TIER.format(after=after))


@pytest.mark.parametrize("case", list(DEFINER_BODIES))
def test_security_definer_writes_judged_by_its_owner_not_its_body(perms_pg, bureau, case):
    """A SECURITY DEFINER function the query tier may execute writes as its owner,
    however its body is written (a helper, BEGIN ATOMIC, STABLE, quoting, a GRANT):
    reported because its owner ins_dba can write, and the server agrees."""
    with perms_pg.changed(_definer(case), DEFINER_UNDO):
        findings, _r, _s = bureau()
        # the server: ins_claims_ro approves a refund through it
        assert perms_pg.sql("SELECT count(*) FROM ins.refunds WHERE approved_at IS NOT NULL") \
            == "0"
        assert _run_as_query_tier(perms_pg, case).splitlines()[-1] == "1"
    q = [f for f in findings if f.check == "query-write"]
    assert [(f.account, f.severity, f.rule) for f in q] == [("ins_claims_ro", "high", "R-ACC-5")]
    assert "EXECUTE on SECURITY DEFINER function ins.w(r integer), which " in q[0].evidence
    assert "as its owner ins_dba, who can write: " in q[0].evidence
    assert "(granted to PUBLIC)" in q[0].evidence


@pytest.mark.parametrize("setup", ["invoker", "owner-only-selects", "execute-revoked"])
def test_security_definer_not_reported_when_it_cannot_write(perms_pg, bureau, setup):
    """Must NOT be flagged: an invoker's function, a DEFINER function whose owner may
    only read, and one whose EXECUTE is revoked from PUBLIC and given to no query-tier
    role; the server refuses the write each time."""
    do, undo = {
        "invoker": (_definer("begin-atomic", sec="SECURITY INVOKER"), ""),
        "owner-only-selects": (
            "CREATE ROLE ins_sel_owner NOLOGIN; GRANT USAGE ON SCHEMA ins TO ins_sel_owner; "
            "GRANT SELECT ON ins.refunds TO ins_sel_owner; "
            + _definer("begin-atomic", owner="ins_sel_owner"),
            "; DROP OWNED BY ins_sel_owner; DROP ROLE ins_sel_owner"),
        "execute-revoked": (_definer("calls-a-helper") + "; REVOKE EXECUTE ON FUNCTION "
                            "ins.w(int) FROM PUBLIC; GRANT EXECUTE ON FUNCTION ins.w(int) "
                            "TO ins_refund", ""),
    }[setup]
    with perms_pg.changed(do, DEFINER_UNDO + undo):
        findings, _r, _s = bureau()
        with pytest.raises(PsqlError, match="permission denied for (table refunds|function w)"):
            _run_as_query_tier(perms_pg, "begin-atomic")
        assert perms_pg.sql("SELECT count(*) FROM ins.refunds WHERE approved_at IS NOT NULL") \
            == "0"
    assert [f for f in findings if f.check == "query-write"] == []


def _query_tier_writes(perms_pg, bureau, do: str, undo: str, act: str, check: tuple):
    """ins_claims_ro's one query-write finding with ``do`` applied; on the server,
    ``act`` run as ins_claims_ro then leaves ``check`` (sql, its answer) true."""
    with perms_pg.changed(do, undo):
        findings, _r, _s = bureau()
        perms_pg.sql("SET ROLE ins_claims_ro; " + act)
        assert perms_pg.sql(check[0]) == check[1]
    q = [f for f in findings if f.check == "query-write"]
    assert [(f.account, f.severity, f.rule) for f in q] == [("ins_claims_ro", "high", "R-ACC-5")]
    return q[0]


def test_query_tier_owning_a_table_or_schema_writes(perms_pg, bureau):
    """Probe: the owner of a table may grant itself back every privilege revoked from
    it, the owner of a schema may drop the tables in it; the server lets it."""
    found = _query_tier_writes(
        perms_pg, bureau, "CREATE TABLE ins.ro_notes (x int); ALTER TABLE ins.ro_notes OWNER TO "
        "ins_claims_ro; REVOKE ALL ON ins.ro_notes FROM ins_claims_ro; CREATE SCHEMA ro_own "
        "AUTHORIZATION ins_claims_ro; CREATE TABLE ro_own.t (x int)",
        "DROP TABLE ins.ro_notes; DROP SCHEMA ro_own CASCADE",
        "GRANT INSERT ON ins.ro_notes TO ins_claims_ro; INSERT INTO ins.ro_notes VALUES (1); "
        "DROP TABLE ro_own.t", ("SELECT count(*) FROM ins.ro_notes", "1"))
    assert "owns ins.ro_notes (can grant itself any privilege on it)" in found.evidence
    assert "owns schema ro_own (can drop the tables in it)" in found.evidence
    # must NOT pass: an operator role owning them is not the query tier's
    with perms_pg.changed("CREATE TABLE ins.ro_notes (x int); ALTER TABLE ins.ro_notes OWNER "
                          "TO ins_claims_rw; CREATE SCHEMA ro_own AUTHORIZATION ins_claims_rw; "
                          "CREATE TABLE ro_own.t (x int)",
                          "DROP TABLE ins.ro_notes; DROP SCHEMA ro_own CASCADE"):
        findings, _r, _s = bureau()
    assert [f for f in findings if f.check == "query-write"] == []


LO_FORGED = ("SELECT convert_from(lo_get(424242), 'UTF8')", "forgedscan")


def test_query_tier_updating_a_large_object(perms_pg, bureau):
    """Probe: UPDATE on a large object lets the query tier overwrite it (lo_put)."""
    found = _query_tier_writes(
        perms_pg, bureau, "SELECT lo_from_bytea(424242, 'claim scan'); GRANT SELECT, UPDATE ON "
        "LARGE OBJECT 424242 TO ins_claims_ro", "SELECT lo_unlink(424242)",
        "SELECT lo_put(424242, 0, 'forged')", LO_FORGED)
    assert found.evidence == "UPDATE on large object 424242 (granted to ins_claims_ro)"
    # must NOT pass: reading one
    with perms_pg.changed("SELECT lo_from_bytea(424242, 'claim scan'); GRANT SELECT ON "
                          "LARGE OBJECT 424242 TO ins_claims_ro", "SELECT lo_unlink(424242)"):
        findings, _r, _s = bureau()
    assert [f for f in findings if f.check == "query-write"] == []
    # lo_compat_privileges = on: every existing large object is everyone's
    found = _query_tier_writes(
        perms_pg, bureau, "SELECT lo_from_bytea(424242, 'claim scan'); ALTER DATABASE "
        "perms_insurance SET lo_compat_privileges = on", "SELECT lo_unlink(424242); ALTER "
        "DATABASE perms_insurance RESET lo_compat_privileges",
        "SELECT lo_put(424242, 0, 'forged')", LO_FORGED)
    assert found.evidence == ("every large object (lo_compat_privileges = on) "
                              "(granted to PUBLIC)")


def test_query_tier_with_createrole_before_16(perms_pg, bureau):
    """Probe: before PostgreSQL 16 a CREATEROLE role may grant itself pg_write_all_data."""
    assert int(perms_pg.sql("SHOW server_version_num")) < 160000
    found = _query_tier_writes(
        perms_pg, bureau, "ALTER ROLE ins_claims_ro CREATEROLE",
        "REVOKE pg_write_all_data FROM ins_claims_ro; ALTER ROLE ins_claims_ro NOCREATEROLE; "
        "UPDATE ins.claims SET hospital_code = 'H3209002' WHERE id = 2",
        "GRANT pg_write_all_data TO ins_claims_ro; UPDATE ins.claims SET hospital_code = "
        "'FORGED' WHERE id = 2", ("SELECT hospital_code FROM ins.claims WHERE id = 2", "FORGED"))
    assert "CREATEROLE before PostgreSQL 16: can GRANT pg_write_all_data to itself" \
        in found.evidence


def test_case_11_default_acl_rls_and_schema_usage(perms_pg, bureau, tmp_path):
    """#19 case 11: future grants and row-level security are collected; a write grant
    on a table in a schema the role has no USAGE on is marked unusable."""
    with perms_pg.changed(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA ins GRANT SELECT ON TABLES TO ins_claims_ro; "
            "ALTER TABLE ins.refunds ENABLE ROW LEVEL SECURITY; "
            "CREATE POLICY own_refunds ON ins.refunds FOR UPDATE TO ins_refund "
            "USING (approved_by = current_user); "
            'CREATE TABLE public.notes (x int); GRANT UPDATE ON public.notes TO "ma.lin"',
            "ALTER DEFAULT PRIVILEGES IN SCHEMA ins REVOKE SELECT ON TABLES FROM ins_claims_ro; "
            "DROP POLICY own_refunds ON ins.refunds; "
            "ALTER TABLE ins.refunds DISABLE ROW LEVEL SECURITY; DROP TABLE public.notes"):
        data = collect_postgres(perms_pg.spec(tmp_path))
        findings, _r, _s = bureau()
    q = [f for f in findings if f.check == "query-write" and f.person == "ma.lin"]
    assert q and ("UPDATE on public.notes (granted to ma.lin) (unusable: ma.lin has no "
                  "USAGE on schema public)") in q[0].evidence
    assert {"role": perms_pg.server.superuser, "schema": "ins", "objects": "tables",
            "grantee": "ins_claims_ro", "privileges": ["SELECT"]} in data["default_acl"]
    rls = data["rls"]["ins.refunds"]
    assert rls["enabled"] is True and rls["forced"] is False
    assert [(p["name"], p["command"], p["roles"]) for p in rls["policies"]] == [
        ("own_refunds", "UPDATE", ["ins_refund"])]
    from opskit.perms.pg_effective import Effective
    eff = Effective(data)
    assert eff.has("ma.lin", "tables", "public.notes", "UPDATE") is True   # as the server says
    assert eff.held("ma.lin")["tables"]["public.notes"] == [
        "UPDATE (no USAGE on schema public)"]
