"""opskit.perms.pg_effective on hand-written catalogue facts: the PostgreSQL 16
membership options (the test server is older, so the differential test cannot
reach them), what a function body writes, and snapshot migration to format 3.
The server's own answers are checked in tests/integration/perms/test_perms_pg_differential.py."""
import copy

import pytest

from opskit.core.errors import IntegrityError
from opskit.perms.pg_effective import Effective, RoleGraph, writing_functions
from opskit.perms.postgres import body_writes, qualified, schema_of, split_qualified, table_of
from opskit.perms.snapshot import FORMAT, migrate


def _data(version: int, member_of: dict, **extra) -> dict:
    roles = {r: {"inherit": True, "superuser": False} for r in
             ("ann", "bob", "grp", "writers", "pg_write_all_data", "boss", "pg_database_owner")}
    roles["boss"]["superuser"] = True
    data = {"roles": roles, "member_of": member_of, "server_version_num": version,
            "owners": {"database": {"database": "bob"}},
            "relkinds": {"s.t": "r", "s.q": "S"},
            "privileges": {"tables": {"writers": {"s.t": ["UPDATE"]},
                                      "pg_database_owner": {"s.q": ["USAGE"]}},
                           "schemas": {"PUBLIC": {"s": ["USAGE"]}}}}
    data.update(extra)
    return data


def edge(role, inherit=True, can_set=True):
    return {"role": role, "admin": False, "inherit": inherit, "set": can_set}


def test_pg16_membership_options():
    data = _data(160000, {"ann": [edge("grp", inherit=False), edge("writers", can_set=False)],
                          "grp": [edge("pg_write_all_data")]})
    g = RoleGraph.from_data(data)
    # INHERIT FALSE: grp and what grp inherits are reachable by SET ROLE, not held
    assert g.privileges_of("ann") == {"ann", "writers"}
    assert g.set_role_only("ann") == {"grp", "pg_write_all_data"}
    # SET FALSE: writers' privileges are held, but SET ROLE writers is refused
    assert g.has_role("ann", "writers", "USAGE") and not g.has_role("ann", "writers", "SET")
    assert g.has_role("ann", "grp", "MEMBER") and not g.has_role("ann", "grp", "USAGE")
    eff = Effective(data)
    assert eff.has("ann", "tables", "s.t", "UPDATE")
    assert not eff.has("ann", "tables", "s.t", "DELETE")      # pg_write_all_data not held
    assert eff.why("ann", "tables", "s.t", "UPDATE") == (
        "UPDATE on s.t granted to writers, inherited through ann -> writers")


def test_pre16_noinherit_member_and_database_owner():
    data = _data(150000, {"ann": [edge("grp", inherit=False)],
                          "grp": [edge("pg_write_all_data")]})
    data["roles"]["ann"]["inherit"] = False
    eff = Effective(data)
    assert not eff.has("ann", "tables", "s.t", "INSERT")
    data["member_of"]["ann"][0]["inherit"] = True                # the old, wrong reading
    assert Effective(data).has("ann", "tables", "s.t", "INSERT")
    # bob owns the database: pg_database_owner's grants are his -- unless he is
    # NOINHERIT before 16 (the server skips the implicit membership then)
    assert eff.has("bob", "sequences", "s.q", "USAGE")
    noinherit = copy.deepcopy(data)
    noinherit["roles"]["bob"]["inherit"] = False
    assert not Effective(noinherit).has("bob", "sequences", "s.q", "USAGE")
    noinherit["server_version_num"] = 160000
    assert Effective(noinherit).has("bob", "sequences", "s.q", "USAGE")
    # a superuser holds everything
    assert eff.has("boss", "tables", "s.t", "TRUNCATE")


def test_held_marks_privileges_without_schema_usage():
    data = _data(150000, {"ann": [edge("writers")]})
    data["privileges"]["schemas"] = {"bob": {"s": ["USAGE"]}}
    assert Effective(data).held("ann")["tables"] == {"s.t": ["UPDATE (no USAGE on schema s)"]}
    data["privileges"]["schemas"]["writers"] = {"s": ["USAGE"]}
    assert Effective(data).held("ann")["tables"] == {"s.t": ["UPDATE"]}


@pytest.mark.parametrize("language,source,expected", [
    ("sql", "UPDATE ins.refunds SET x = 1", ("sql", ["ins.refunds"])),
    ("plpgsql", "BEGIN INSERT INTO \"Ins\".log VALUES (1) ON CONFLICT DO UPDATE SET a = 1; "
                "PERFORM 1 FROM t FOR UPDATE OF t; END", ("sql", ["Ins.log"])),
    ("plpgsql", "BEGIN -- delete from nothing\n RETURN 1; END", ("sql", [])),
    ("plpgsql", "BEGIN EXECUTE format('DELETE FROM %I', t); END", ("dynamic", [])),
    ("c", None, ("opaque", [])),
])
def test_body_writes(language, source, expected):
    assert body_writes(language, source) == expected


def test_writing_functions_judge_a_definer_by_its_owner():
    """A SECURITY DEFINER function writes when its owner can, whatever its volatility
    or body (the body only adds detail). This replaces a test that asserted the old,
    unsound reading: a STABLE function or a body naming no table was cleared."""
    body = {"volatile": True, "body": "sql", "writes": [], "language": "sql"}
    fns = {"s.a()": {**body, "security_definer": True, "writes": ["s.t"]},
           "s.b()": {**body, "security_definer": False, "writes": ["s.t"]},   # invoker
           "s.c()": {**body, "security_definer": True, "volatile": False,     # STABLE
                     "writes": ["s.t"]},
           "s.d()": {**body, "security_definer": True},                       # reads alone
           "s.e()": {**body, "security_definer": True, "body": "opaque", "language": "c"},
           "s.f()": {**body, "security_definer": True},       # owner ann: only SELECT
           "s.g()": {**body, "security_definer": True},       # owner grp: may run s.a()
           "s.h()": {**body, "security_definer": True}}       # owner unknown
    owners = {"s.a()": "writers", "s.b()": "writers", "s.c()": "bob", "s.d()": "boss",
              "s.e()": "pg_write_all_data", "s.f()": "ann", "s.g()": "grp"}
    data = _data(150000, {"bob": [edge("writers")]}, functions=fns)
    data["owners"]["functions"] = owners
    data["privileges"]["tables"]["ann"] = {"s.t": ["SELECT"]}
    data["privileges"]["functions"] = {"grp": {"s.a()": ["EXECUTE"]}}
    out = writing_functions(data)
    assert out == {
        "s.a()": "writes s.t as its owner writers, who can write: UPDATE on s.t",
        "s.c()": "writes s.t as its owner bob, who can write: UPDATE on s.t",
        "s.d()": "runs as its owner boss, who can write: every table (SUPERUSER)",
        "s.e()": "runs as its owner pg_write_all_data (c body unread), who can write: "
                 "every table (member of pg_write_all_data)",
        "s.g()": "runs as its owner grp, who can write: EXECUTE on SECURITY DEFINER "
                 "function s.a()",
        "s.h()": "runs as its owner ?, who can write: owner unknown"}
    # before 16, a CREATEROLE owner may grant itself pg_write_all_data
    data["roles"]["ann"]["createrole"] = True
    assert "CREATEROLE before PostgreSQL 16" in writing_functions(data)["s.f()"]
    data["roles"]["ann"]["createrole"] = False
    # owning a table is a write even with every privilege on it revoked
    data["owners"]["tables"] = {"s.t": "ann"}
    assert writing_functions(data)["s.f()"] == ("runs as its owner ann, who can write: owns "
                                               "s.t (can grant itself any privilege on it)")


@pytest.mark.parametrize("parts,key", [
    (("ins", "refunds"), "ins.refunds"), (("k.l", "m"), '"k.l".m'), (("k", "l.m"), 'k."l.m"'),
    (('a"b', "c.d", "e"), '"a""b"."c.d".e'), (("S", "t"), "S.t")])
def test_keys_quote_names_holding_dots(parts, key):
    assert qualified(*parts) == key and split_qualified(key) == list(parts)
    assert schema_of(key) == parts[0]
    if len(parts) == 3:
        assert table_of(key) == qualified(*parts[:2])


def test_function_keys_keep_their_arguments():
    assert split_qualified('"x.y"."f.g"(a "t.u".typ)') == ["x.y", 'f.g(a "t.u".typ)']
    assert schema_of('x.f(a b.c)') == "x"


def test_migration_from_format_2_and_1():
    db = {"name": "insurance", "status": "ok",
          "data": {"roles": {}, "privileges": {"tables": {}},
                   "member_of": {"ann": [{"role": "grp", "admin": False, "inherit": True}]}}}
    old = {"format": "opskit-perms-snapshot/2", "hosts": [], "databases": [db]}
    new = migrate(copy.deepcopy(old))
    assert new["format"] == FORMAT and new["migrated_from"] == "opskit-perms-snapshot/2"
    data = new["databases"][0]["data"]
    assert data["functions"] == {} and data["default_acl"] == [] and data["rls"] == {}
    assert data["privileges"]["functions"] == {}
    assert data["member_of"]["ann"][0]["set"] is True
    assert any("were not collected" in w for w in new["warnings"])
    one = migrate(dict(copy.deepcopy(old), format="opskit-perms-snapshot/1"))
    assert one["format"] == FORMAT and len(one["warnings"]) == 2
    assert migrate(new) is new
    with pytest.raises(IntegrityError, match="not one this opskit reads"):
        migrate({"format": "opskit-perms-snapshot/9"})
