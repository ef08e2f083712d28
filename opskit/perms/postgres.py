"""The PostgreSQL collector: roles, memberships and privileges from pg_catalog.

information_schema only shows what the connecting role may see
(role_table_grants lists grants where it is grantor or grantee), so it
under-reports; this collector reads pg_catalog instead and expands every ACL
with ``aclexplode`` -- ``acldefault`` stands in for a NULL ACL, so the owner's
implicit rights and PUBLIC's defaults are counted too:

* roles and their attributes (superuser, createrole, createdb, login,
  replication, bypassrls, inherit, valid until) from pg_roles;
* direct memberships from pg_auth_members (inherited ones are derived by
  the analysis: opskit.perms.pg_effective);
* database, schema, table (tables, views, materialized views, foreign and
  partitioned tables), sequence, column and function privileges, and the
  owner of every database, schema, table and function;
* functions: SECURITY DEFINER (executing one acts as its owner), volatility,
  and the tables their SQL / PL/pgSQL body writes (``writes``; ``body``
  says whether the body could be read: ``sql``, ``dynamic`` when it runs
  EXECUTE'd text, ``opaque`` for other languages) -- detail only: whether a
  SECURITY DEFINER function writes is judged by its owner
  (opskit.perms.pg_effective.writing_functions);
* large objects' privileges (UPDATE lets a role overwrite one with lo_put), and
  whether ``lo_compat_privileges`` lifts every check on the existing ones;
* default privileges (pg_default_acl: grants every future object gets);
* row-level security: per table whether it is enabled / forced and its
  policies with their roles (pg_policies).

The effective privileges -- memberships, predefined roles, superuser,
SET ROLE reachability -- are derived from these facts by
opskit.perms.pg_effective, the way the server derives them.

The connection needs enough privilege to see everything: the snapshot carries
a warning when the role is not a superuser, lacks pg_read_all_settings /
pg_read_all_stats, or cannot see a schema's contents. Every query is fixed
text; the one value passed in (the database name) is a bound parameter.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from opskit.core.errors import ConfigError, OperationalError
from opskit.core.optional import require

EXCLUDED_SCHEMAS = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"


# Object keys: schema.table[.column] and schema.function(args), each name in double
# quotes (doubled inside) when it holds a dot or a double quote, so that a table
# "k.l".m and a sequence k."l.m" never share a key; ordinary names read as before.
def _sql_part(col: str) -> str:
    return f"""CASE WHEN {col} ~ '[."]' THEN '"' || replace({col}, '"', '""') || '"' ELSE {col} END"""


def sql_name(*cols: str) -> str:
    """The SQL expression of the key of the object named by columns ``cols``."""
    return " || '.' || ".join(_sql_part(c) for c in cols)


def qualified(*parts: str) -> str:
    """The key of an object from its names (what ``sql_name`` computes)."""
    return ".".join('"' + p.replace('"', '""') + '"' if "." in p or '"' in p else p
                    for p in parts)


def split_qualified(key: str) -> list[str]:
    """The names in a key (``qualified``'s inverse); a function's argument list stays
    with its name."""
    parts, i = [], 0
    while True:
        if key.startswith('"', i):
            j, name = i + 1, []
            while j < len(key):
                if key[j] == '"':
                    if key.startswith('""', j):
                        name.append('"')
                        j += 2
                        continue
                    break
                name.append(key[j])
                j += 1
            end = j + 1 if key.startswith(".", j + 1) else -1
            parts.append("".join(name) + ("" if end >= 0 else key[j + 1:]))
        else:
            paren = key.find("(", i)
            end = key.find(".", i)
            if paren >= 0 and (end < 0 or paren < end):
                end = -1
            parts.append(key[i:end] if end >= 0 else key[i:])
        if end < 0:
            return parts
        i = end + 1


def schema_of(key: str) -> str:
    """The schema of a table, column, sequence or function key."""
    return split_qualified(key)[0] if "." in key else key


def table_of(column_key: str) -> str:
    """The table key of a column key."""
    return qualified(*split_qualified(column_key)[:-1])

ROLES_SQL = """
SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
       rolreplication, rolbypassrls, rolvaliduntil::text, rolconnlimit, oid < 16384 AS builtin
FROM pg_catalog.pg_roles ORDER BY rolname"""

MEMBERS_SQL = """
SELECT m.rolname AS member, r.rolname AS role, am.admin_option, {inherit} AS inherit,
       {set} AS set
FROM pg_catalog.pg_auth_members am
JOIN pg_catalog.pg_roles r ON r.oid = am.roleid
JOIN pg_catalog.pg_roles m ON m.oid = am.member
ORDER BY 1, 2"""

DATABASE_SQL = """
SELECT COALESCE(g.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
FROM pg_catalog.pg_database d,
     aclexplode(COALESCE(d.datacl, acldefault('d'::"char", d.datdba))) a
LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
WHERE d.datname = %s"""

# an object whose ACL grants nothing (REVOKE ALL, even from its owner) still gives a
# row, with no grantee: its owner and kind are collected all the same
GRANTEE = "CASE WHEN a.grantee IS NOT NULL THEN COALESCE(g.rolname, 'PUBLIC') END"

SCHEMAS_SQL = f"""
SELECT n.nspname, {GRANTEE}, a.privilege_type, a.is_grantable,
       pg_catalog.has_schema_privilege(n.oid, 'USAGE') AS visible,
       pg_catalog.pg_get_userbyid(n.nspowner)
FROM pg_catalog.pg_namespace n
LEFT JOIN LATERAL aclexplode(COALESCE(n.nspacl, acldefault('n'::"char", n.nspowner))) a ON true
LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
WHERE {EXCLUDED_SCHEMAS}"""

TABLES_SQL = f"""
SELECT n.nspname, c.relname, c.relkind, {GRANTEE}, a.privilege_type,
       a.is_grantable, pg_catalog.pg_get_userbyid(c.relowner)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL aclexplode(COALESCE(c.relacl,
                         acldefault((CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char",
                                    c.relowner))) a ON true
LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {EXCLUDED_SCHEMAS}"""

COLUMNS_SQL = f"""
SELECT n.nspname, c.relname, att.attname, COALESCE(g.rolname, 'PUBLIC'), a.privilege_type,
       a.is_grantable
FROM pg_catalog.pg_attribute att
JOIN pg_catalog.pg_class c ON c.oid = att.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(att.attacl) a
LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
WHERE att.attacl IS NOT NULL AND NOT att.attisdropped AND {EXCLUDED_SCHEMAS}"""

FUNCTION_SIGNATURE = (sql_name("n.nspname", "p.proname") + " || '(' || "
                      "pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'")

FUNCTIONS_SQL = f"""
SELECT {FUNCTION_SIGNATURE}, pg_catalog.pg_get_userbyid(p.proowner), p.prosecdef,
       p.provolatile = 'v', l.lanname,
       CASE WHEN l.lanname IN ('sql', 'plpgsql') THEN p.prosrc END
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE {EXCLUDED_SCHEMAS}"""

FUNCTION_ACL_SQL = f"""
SELECT {FUNCTION_SIGNATURE}, COALESCE(g.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace,
     aclexplode(COALESCE(p.proacl, acldefault('f'::"char", p.proowner))) a
LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
WHERE {EXCLUDED_SCHEMAS}"""

LARGE_OBJECTS_SQL = f"""
SELECT l.oid::text, {GRANTEE}, a.privilege_type, a.is_grantable
FROM pg_catalog.pg_largeobject_metadata l
LEFT JOIN LATERAL aclexplode(COALESCE(l.lomacl, acldefault('L'::"char", l.lomowner))) a ON true
LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee"""

LO_COMPAT_SQL = "SELECT pg_catalog.current_setting('lo_compat_privileges')::bool"

DEFAULT_ACL_SQL = """
SELECT r.rolname, n.nspname, d.defaclobjtype::text, COALESCE(g.rolname, 'PUBLIC'),
       a.privilege_type, a.is_grantable
FROM pg_catalog.pg_default_acl d
JOIN pg_catalog.pg_roles r ON r.oid = d.defaclrole
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = d.defaclnamespace,
     aclexplode(d.defaclacl) a
LEFT JOIN pg_catalog.pg_roles g ON g.oid = a.grantee"""

RLS_SQL = f"""
SELECT {sql_name("n.nspname", "c.relname")}, c.relrowsecurity, c.relforcerowsecurity
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p
                                   WHERE p.polrelid = c.oid)) AND {EXCLUDED_SCHEMAS}"""

POLICIES_SQL = f"""
SELECT {sql_name("schemaname", "tablename")}, policyname, permissive, roles::text[], cmd, qual,
       with_check
FROM pg_catalog.pg_policies ORDER BY 1, 2"""

DATABASE_OWNER_SQL = """
SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_catalog.pg_database WHERE datname = %s"""

WHOAMI_SQL = """
SELECT current_user, current_database(), r.rolsuper,
       pg_catalog.pg_has_role(current_user, 'pg_read_all_settings', 'USAGE'),
       pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
       pg_catalog.current_setting('server_version_num')::int,
       pg_catalog.current_setting('server_version')
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"""

WRITE_PRIVILEGES = frozenset({"INSERT", "UPDATE", "DELETE", "TRUNCATE"})


@dataclass
class DatabaseSpec:
    """One ``perms.databases`` entry, resolved (paths relative to the config)."""

    name: str
    dsn: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    dbname: str | None = None
    password_file: str | None = None
    section = "perms.databases"      # where the entry lives, for messages (not a field)

    def conninfo(self) -> str:
        make_conninfo = require("psycopg.conninfo", extra="postgres").make_conninfo
        extra = {k: v for k, v in (("host", self.host), ("port", self.port),
                                   ("user", self.user), ("dbname", self.dbname))
                 if v is not None}
        if not self.dsn and "dbname" not in extra:
            extra["dbname"] = self.name
        return make_conninfo(self.dsn or "", **extra)

    def describe(self) -> str:
        """Where, without any password: user@host:port/dbname."""
        try:
            conninfo_to_dict = require("psycopg.conninfo", extra="postgres").conninfo_to_dict
            d = conninfo_to_dict(self.conninfo())
        except Exception:
            return self.name
        return (f"{d.get('user') or '(default user)'}@{d.get('host') or '(default host)'}:"
                f"{d.get('port') or 5432}/{d.get('dbname') or self.name}")

    def password(self) -> str | None:
        if not self.password_file:
            return None
        try:
            st = os.stat(self.password_file)
        except FileNotFoundError:
            raise ConfigError(f"{self.section}.{self.name}.password_file: "
                              f"{self.password_file} not found") from None
        if st.st_mode & 0o077:
            raise ConfigError(f"password file {self.password_file} is readable by others",
                              hint=f"chmod 600 {self.password_file}")
        with open(self.password_file, encoding="utf-8") as fh:
            return fh.readline().strip()


def database_specs(config, names: list[str] | None = None) -> list[DatabaseSpec]:
    """The configured databases (template entries '<...>' skipped); ``names``
    picks some (UsageError, exit 2, naming the known ones if one is unknown)."""
    from opskit.core.errors import UsageError
    configured = {}
    for name, entry in (config.get("perms.databases") or {}).items():
        if name.startswith("<"):
            continue
        pw = entry.get("password_file")
        configured[name] = DatabaseSpec(name, entry.get("dsn"), entry.get("host"),
                                        entry.get("port"), entry.get("user"),
                                        entry.get("dbname"),
                                        config.relative_path(pw) if pw else None)
    if names is None:
        return list(configured.values())
    missing = [n for n in names if n not in configured]
    if missing:
        raise UsageError(f"unknown database {', '.join(repr(m) for m in missing)}; configured "
                         f"under perms.databases: {', '.join(sorted(configured)) or '(none)'}")
    return [configured[n] for n in names]


def _acl_map(rows, key_cols: int) -> dict[str, dict[str, list[str]]]:
    """rows (key..., grantee, privilege, grantable) -> {grantee: {key: [privileges]}}."""
    out: dict[str, dict[str, set[str]]] = {}
    for row in rows:
        key = qualified(*row[:key_cols]) if key_cols > 1 else row[0]   # a name or a key
        grantee, priv, grantable = row[key_cols], row[key_cols + 1], row[key_cols + 2]
        out.setdefault(grantee, {}).setdefault(key, set()).add(
            priv + (" WITH GRANT OPTION" if grantable else ""))
    return {g: {k: sorted(v) for k, v in sorted(objs.items())} for g, objs in sorted(out.items())}


def collect_postgres(spec: DatabaseSpec, connect_timeout: float = 10.0) -> dict:
    """The database's part of a snapshot (docs/perms.md). Connection failures
    raise OperationalError (the snapshot records the database as failed)."""
    psycopg = require("psycopg", extra="postgres")
    kwargs: dict[str, Any] = {"connect_timeout": int(connect_timeout), "autocommit": True}
    pw = spec.password()
    if pw is not None:
        kwargs["password"] = pw
    try:
        conn = psycopg.connect(spec.conninfo(), **kwargs)
    except psycopg.Error as exc:
        raise OperationalError(f"database {spec.name} ({spec.describe()}): cannot connect: "
                               f"{_pg_message(exc)}") from None
    try:
        conn.read_only = True
        with conn.cursor() as cur:
            return _collect(cur)
    except psycopg.Error as exc:
        raise OperationalError(f"database {spec.name} ({spec.describe()}): "
                               f"{_pg_message(exc)}") from None
    finally:
        conn.close()


def _collect(cur) -> dict:
    """Every fact of one database, read through ``cur`` (see module doc)."""
    warnings: list[str] = []
    cur.execute(WHOAMI_SQL)
    user, dbname, superuser, settings, stats, version_num, version = cur.fetchone()
    if not superuser:
        warnings.append(f"connected as {user}, not a superuser: objects in schemas it "
                        "has no USAGE on, other databases and role passwords' "
                        "validity may be incomplete; collect as a superuser to see "
                        "everything")
        lacking = [r for r, has in (("pg_read_all_settings", settings),
                                    ("pg_read_all_stats", stats)) if not has]
        if lacking:
            warnings.append(f"{user} is not a member of {', '.join(lacking)}")
    roles = _roles(cur)
    member_of = _members(cur, roles, version_num)
    cur.execute(DATABASE_SQL, (dbname,))
    database = _acl_map([("database",) + tuple(r) for r in cur.fetchall()], 1)
    cur.execute(DATABASE_OWNER_SQL, (dbname,))
    owners: dict[str, dict] = {"database": {"database": cur.fetchone()[0]}}
    cur.execute(SCHEMAS_SQL)
    rows = cur.fetchall()
    hidden = sorted({r[0] for r in rows if not r[4]})
    if hidden and not superuser:
        warnings.append(f"{user} has no USAGE on schema(s) {', '.join(hidden)}")
    schemas = _acl_map([r[:4] for r in rows if r[1] is not None], 1)
    owners["schemas"] = {r[0]: r[5] for r in rows}
    cur.execute(TABLES_SQL)
    rows = cur.fetchall()
    kinds = {qualified(r[0], r[1]): r[2] for r in rows}
    owners["tables"] = {qualified(r[0], r[1]): r[6] for r in rows}
    tables = _acl_map([(r[0], r[1], r[3], r[4], r[5]) for r in rows if r[3] is not None], 2)
    cur.execute(COLUMNS_SQL)
    columns = _acl_map(cur.fetchall(), 3)
    functions = _functions(cur)
    owners["functions"] = {sig: f.pop("owner") for sig, f in functions.items()}
    cur.execute(FUNCTION_ACL_SQL)
    function_acl = _acl_map(cur.fetchall(), 1)
    cur.execute(LARGE_OBJECTS_SQL)
    rows = cur.fetchall()
    large_objects = _acl_map([r for r in rows if r[1] is not None], 1)
    cur.execute(LO_COMPAT_SQL)
    lo_compat = bool(cur.fetchone()[0]) and bool(rows)
    return {"connected_as": user, "dbname": dbname, "superuser": bool(superuser),
            "server_version": version, "server_version_num": version_num,
            "roles": roles, "member_of": member_of, "owners": owners,
            "privileges": {"database": database, "schemas": schemas, "tables": tables,
                           "columns": columns, "functions": function_acl,
                           "large_objects": large_objects},
            "lo_compat_privileges": lo_compat,
            "relkinds": kinds, "functions": functions, "default_acl": _default_acl(cur),
            "rls": _rls(cur), "warnings": warnings}


def _roles(cur) -> dict[str, dict]:
    cur.execute(ROLES_SQL)
    roles = {}
    for (name, su, inherit, createrole, createdb, login, repl, bypass, until, limit,
         builtin) in cur.fetchall():
        roles[name] = {"superuser": su, "inherit": inherit, "createrole": createrole,
                       "createdb": createdb, "login": login, "replication": repl,
                       "bypassrls": bypass, "valid_until": until,
                       "connlimit": limit, "builtin": builtin}
    return roles


def _members(cur, roles: dict, version_num: int) -> dict[str, list[dict]]:
    """Direct memberships. Before PostgreSQL 16 a membership inherits when its
    member has INHERIT and every membership allows SET ROLE; from 16 on each
    membership carries its own INHERIT and SET options."""
    pg16 = version_num >= 160000
    cur.execute(MEMBERS_SQL.format(inherit="am.inherit_option" if pg16 else "NULL::boolean",
                                   set="am.set_option" if pg16 else "NULL::boolean"))
    member_of: dict[str, list[dict]] = {}
    for member, role, admin, inherit, can_set in cur.fetchall():
        member_of.setdefault(member, []).append(
            {"role": role, "admin": admin,
             "inherit": roles.get(member, {}).get("inherit", True)
             if inherit is None else inherit,
             "set": True if can_set is None else can_set})
    return member_of


# statements that write a table, as they appear in a function's body
_WRITE_STMT = re.compile(r"(?<!for )(?<!do )\b(insert\s+into|update|delete\s+from|"
                         r"truncate(?:\s+table)?|merge\s+into|copy)\s+(?:only\s+)?"
                         r"((?:\"[^\"]+\"|[\w$]+)(?:\.(?:\"[^\"]+\"|[\w$]+))?)",
                         re.IGNORECASE)
_NOT_A_TABLE = {"set", "of", "skip", "nowait"}


def body_writes(language: str, source: str | None) -> tuple[str, list[str]]:
    """What a function body writes: (how it was read, the tables named by its
    INSERT/UPDATE/DELETE/TRUNCATE/MERGE/COPY statements). ``dynamic``: it also
    runs EXECUTE'd text, ``opaque``: not SQL or PL/pgSQL (C, PL/Python ...)."""
    if source is None:
        return "opaque", []
    text = re.sub(r"--[^\n]*", " ", source)
    targets = sorted({m.group(2).replace('"', "") for m in _WRITE_STMT.finditer(text)
                      if m.group(2).lower() not in _NOT_A_TABLE})
    dynamic = language == "plpgsql" and re.search(r"\bexecute\b", text, re.IGNORECASE)
    return ("dynamic" if dynamic else "sql"), targets


def _functions(cur) -> dict[str, dict]:
    cur.execute(FUNCTIONS_SQL)
    out = {}
    for sig, owner, secdef, volatile, language, source in cur.fetchall():
        body, writes = body_writes(language, source)
        out[sig] = {"owner": owner, "security_definer": secdef, "volatile": volatile,
                    "language": language, "body": body, "writes": writes}
    return out


DEFAULT_ACL_OBJECTS = {"r": "tables", "S": "sequences", "f": "functions", "T": "types",
                       "n": "schemas"}


def _default_acl(cur) -> list[dict]:
    """Future grants: one entry per (creating role, schema or every schema, kind
    of object, grantee)."""
    cur.execute(DEFAULT_ACL_SQL)
    grouped: dict[tuple, set[str]] = {}
    for role, schema, objtype, grantee, priv, grantable in cur.fetchall():
        key = (role, schema, DEFAULT_ACL_OBJECTS.get(objtype, objtype), grantee)
        grouped.setdefault(key, set()).add(priv + (" WITH GRANT OPTION" if grantable else ""))
    return [{"role": k[0], "schema": k[1], "objects": k[2], "grantee": k[3],
             "privileges": sorted(v)} for k, v in sorted(grouped.items(),
                                                         key=lambda kv: tuple(map(str, kv[0])))]


def _rls(cur) -> dict[str, dict]:
    """Row-level security per table that has it enabled or has policies."""
    cur.execute(RLS_SQL)
    out = {t: {"enabled": en, "forced": forced, "policies": []}
           for t, en, forced in cur.fetchall()}
    cur.execute(POLICIES_SQL)
    for table, name, permissive, roles, cmd, qual, check in cur.fetchall():
        if table in out:
            out[table]["policies"].append(
                {"name": name, "permissive": permissive == "PERMISSIVE",
                 "roles": sorted("PUBLIC" if r == "public" else r for r in roles),
                 "command": cmd, "using": qual, "check": check})
    return out


def _pg_message(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
