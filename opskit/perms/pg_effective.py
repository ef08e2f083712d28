"""PostgreSQL effective privileges, derived from a snapshot the way the server derives them.

The collector (opskit.perms.postgres) records the catalogue: ACLs (with the
owner's and PUBLIC's defaults), memberships with their INHERIT / SET options,
owners, attributes. This module answers what ``has_table_privilege``,
``has_column_privilege``, ``has_schema_privilege``, ``has_function_privilege``,
``has_sequence_privilege``, ``has_database_privilege`` and ``pg_has_role``
answer on the server (#19 items 9-11; the differential test
tests/integration/perms/test_perms_pg_differential.py holds it to that):

* a superuser holds every privilege;
* a role uses the privileges of the roles it *inherits*: memberships followed
  while they inherit (before PostgreSQL 16: while the member has INHERIT;
  from 16: the membership's INHERIT option); the database owner is an
  implicit member of ``pg_database_owner``;
* ``pg_read_all_data`` adds SELECT on every table, view and sequence and
  USAGE on every schema, ``pg_write_all_data`` INSERT, UPDATE, DELETE on them
  (UPDATE on sequences) and USAGE on every schema;
* a column privilege is held when the table privilege is, or the column's ACL
  gives it;
* roles reachable only through ``SET ROLE`` (a NOINHERIT membership, or from
  16 one without INHERIT) are not privileges held but are reported apart
  (``set_role_only``): they count for separation of duties (R-ACC-2).

Table privileges are what the server's functions answer, which ignore schema
USAGE; ``unusable`` tells which of them cannot be used because the role has
no USAGE on the table's schema.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .postgres import WRITE_PRIVILEGES, schema_of, table_of

PRIVILEGES = {
    "database": ("CONNECT", "CREATE", "TEMPORARY"),
    "schemas": ("USAGE", "CREATE"),
    "tables": ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"),
    "sequences": ("USAGE", "SELECT", "UPDATE"),
    "columns": ("SELECT", "INSERT", "UPDATE", "REFERENCES"),
    "functions": ("EXECUTE",),
}
# what a predefined role adds, per kind of object (PostgreSQL 14+)
PREDEFINED = {
    "pg_read_all_data": {"tables": {"SELECT"}, "sequences": {"SELECT"}, "schemas": {"USAGE"}},
    "pg_write_all_data": {"tables": {"INSERT", "UPDATE", "DELETE"}, "sequences": {"UPDATE"},
                          "schemas": {"USAGE"}},
}
# predefined roles that reach outside the database: reported as high-risk attributes
HIGH_RISK_ROLES = {
    "pg_execute_server_program": "runs programs on the database server as its OS user",
    "pg_read_server_files": "reads any file the database server's OS user can read",
    "pg_write_server_files": "writes any file the database server's OS user can write",
}
DATABASE_OWNER_ROLE = "pg_database_owner"
# the write privileges, in the server's order
TABLE_WRITES = tuple(p for p in PRIVILEGES["tables"] if p in WRITE_PRIVILEGES)


@dataclass
class RoleGraph:
    """The memberships of one database's cluster, with the server's two walks:
    ``privileges_of`` (has_privs_of_role, pg_has_role USAGE) and ``reachable``
    (SET ROLE: pg_has_role MEMBER before 16, SET from 16)."""

    roles: dict[str, dict]
    member_of: dict[str, list[dict]]
    database_owner: str | None = None
    version_num: int = 0
    _memo: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_data(cls, data: dict) -> "RoleGraph":
        return cls(data.get("roles", {}), data.get("member_of", {}),
                   (data.get("owners") or {}).get("database", {}).get("database"),
                   data.get("server_version_num") or 0)

    def superuser(self, role: str) -> bool:
        return bool(self.roles.get(role, {}).get("superuser"))

    def _edges(self, role: str, option: str) -> list[tuple[str, bool]]:
        """(granted role, option allows) for each direct membership of ``role``,
        with the database owner's implicit membership in pg_database_owner."""
        out = [(m["role"], m.get(option, True) is not False) for m in self.member_of.get(role, ())]
        if role == self.database_owner:
            # before 16 the implicit membership inherits only if the owner has INHERIT
            inherit = self.version_num >= 160000 or self.roles.get(role, {}).get("inherit", True)
            out.append((DATABASE_OWNER_ROLE, bool(inherit) if option == "inherit" else True))
        return out

    def walk(self, role: str, option: str | None) -> dict[str, str | None]:
        """Every role reached from ``role`` following memberships whose ``option``
        ('inherit', 'set' or None for any) allows, -> the role it was reached from."""
        key = (role, option)
        found = self._memo.get(key)
        if found is None:
            found = {role: None}
            queue = deque([role])
            while queue:
                cur = queue.popleft()
                for nxt, ok in self._edges(cur, option or "any"):
                    if (ok or option is None) and nxt not in found:
                        found[nxt] = cur
                        queue.append(nxt)
            self._memo[key] = found
        return found

    def privileges_of(self, role: str) -> set[str]:
        """The roles whose privileges ``role`` uses, itself included."""
        return set(self.walk(role, "inherit"))

    def reachable(self, role: str) -> set[str]:
        """The roles ``role`` can SET ROLE to (itself included)."""
        return set(self.walk(role, "set" if self.version_num >= 160000 else None))

    def set_role_only(self, role: str) -> set[str]:
        """Roles reachable through SET ROLE whose privileges are not held without it."""
        return self.reachable(role) - self.privileges_of(role)

    def has_role(self, role: str, target: str, mode: str) -> bool:
        """What pg_has_role(role, target, mode) answers: USAGE (holds its privileges),
        MEMBER (any chain of memberships), SET (SET ROLE allowed, PostgreSQL 16+)."""
        if self.superuser(role) or role == target:
            return True
        option = {"USAGE": "inherit", "MEMBER": None, "SET": "set"}[mode]
        return target in self.walk(role, option)

    def path(self, role: str, target: str, option: str | None = "inherit") -> list[str]:
        """The membership chain from ``role`` to ``target`` (empty when none)."""
        found = self.walk(role, option)
        if target not in found:
            return []
        chain = [target]
        while found[chain[-1]] is not None:
            chain.append(found[chain[-1]])
        return chain[::-1]


def _acl_by_object(acl: dict) -> dict[str, dict[str, set[str]]]:
    """{grantee: {obj: [privs]}} -> {obj: {grantee: {base privileges}}}."""
    out: dict[str, dict[str, set[str]]] = {}
    for grantee, objs in (acl or {}).items():
        for obj, plist in objs.items():
            out.setdefault(obj, {}).setdefault(grantee, set()).update(
                p.split(" ", 1)[0] for p in plist)
    return out


def owner_writes(data: dict) -> list[tuple[str, str, str]]:
    """(owner, text, schema) for each table, view or other relation but a sequence
    whose owner holds no write privilege on it by its ACL (an owner can grant itself
    any privilege back), and each schema holding relations (its owner can drop them)."""
    owners, relkinds = data.get("owners") or {}, data.get("relkinds") or {}
    acl = (data.get("privileges") or {}).get("tables") or {}
    out = []
    for obj, owner in sorted((owners.get("tables") or {}).items()):
        if relkinds.get(obj) != "S" and not any(
                p.split(" ", 1)[0] in WRITE_PRIVILEGES for p in acl.get(owner, {}).get(obj, ())):
            out.append((owner, f"owns {obj} (can grant itself any privilege on it)",
                        schema_of(obj)))
    holding = {schema_of(obj) for obj in owners.get("tables") or {}}
    out += [(owner, f"owns schema {schema} (can drop the tables in it)", schema)
            for schema, owner in sorted((owners.get("schemas") or {}).items())
            if schema in holding]
    return out


class Effective:
    """Effective privileges in one collected database (see module doc)."""

    def __init__(self, data: dict):
        self.graph = RoleGraph.from_data(data)
        privs = data.get("privileges", {})
        relkinds = data.get("relkinds", {})
        rel = _acl_by_object(privs.get("tables"))
        self.acl = {
            "database": _acl_by_object(privs.get("database")),
            "schemas": _acl_by_object(privs.get("schemas")),
            "tables": {o: a for o, a in rel.items() if relkinds.get(o) != "S"},
            "sequences": {o: a for o, a in rel.items() if relkinds.get(o) == "S"},
            "columns": _acl_by_object(privs.get("columns")),
            "functions": _acl_by_object(privs.get("functions")),
        }
        self.rls = data.get("rls", {})
        self._owned = owner_writes(data)

    def objects(self, kind: str) -> list[str]:
        return sorted(self.acl[kind])

    def has(self, role: str, kind: str, obj: str, priv: str) -> bool:
        """What the server's has_<kind>_privilege(role, obj, priv) answers."""
        return self.why(role, kind, obj, priv) is not None

    def why(self, role: str, kind: str, obj: str, priv: str) -> str | None:
        """How ``role`` holds ``priv`` on ``obj`` (the grant path), or None."""
        g = self.graph
        if g.superuser(role):
            return f"{role} is a superuser"
        held = g.walk(role, "inherit")
        for grantee, plist in sorted(self.acl[kind].get(obj, {}).items()):
            if priv in plist and (grantee == "PUBLIC" or grantee in held):
                return self._via(role, grantee, f"{priv} on {obj} granted to {grantee}")
        for pre, adds in PREDEFINED.items():
            if priv in adds.get(kind, ()) and pre in held:
                return self._via(role, pre, f"{pre} gives {priv} on every "
                                            f"{'schema' if kind == 'schemas' else 'table'}")
        if kind == "columns":
            table = table_of(obj)
            kind_t = "sequences" if table in self.acl["sequences"] else "tables"
            hit = self.why(role, kind_t, table, priv)
            return f"table privilege: {hit}" if hit else None
        return None

    def _via(self, role: str, grantee: str, text: str) -> str:
        if grantee in ("PUBLIC", role):
            return text
        return f"{text}, inherited through {' -> '.join(self.graph.path(role, grantee))}"

    def held(self, role: str) -> dict[str, dict[str, list[str]]]:
        """Every privilege ``role`` holds: {kind: {object: [privileges]}}; a table,
        sequence or function privilege useless without USAGE on its schema is
        marked '(no USAGE on schema S)'."""
        out: dict[str, dict[str, list[str]]] = {}
        for kind, names in PRIVILEGES.items():
            for obj in self.objects(kind):
                got = [p for p in names if self.has(role, kind, obj, p)]
                if not got:
                    continue
                schema = schema_of(obj)
                if kind in ("tables", "sequences", "columns", "functions") and \
                        not self.has(role, "schemas", schema, "USAGE"):
                    got = [f"{p} (no USAGE on schema {schema})" for p in got]
                out.setdefault(kind, {})[obj] = got
        return out

    def columns_with(self, role: str, table: str, priv: str) -> list[str]:
        """The columns of ``table`` whose own ACL gives ``role`` ``priv`` (a column
        privilege lets it read or change those columns of every row it may reach)."""
        prefix = f"{table}."
        return [obj[len(prefix):] for obj in self.objects("columns")
                if obj.startswith(prefix) and self.has(role, "columns", obj, priv)]

    def writes(self, role: str) -> list[str]:
        """What ``role`` can write, as its own (inherited) privileges: SUPERUSER,
        CREATEROLE before 16, pg_write_all_data, what it owns (``owner_writes``), INSERT / UPDATE /
        DELETE / TRUNCATE on tables and INSERT / UPDATE on columns."""
        g = self.graph
        if g.superuser(role):
            return ["every table (SUPERUSER)"]
        if g.roles.get(role, {}).get("createrole") and g.version_num < 160000:
            return ["every table (CREATEROLE before PostgreSQL 16: can GRANT "
                    "pg_write_all_data to itself)"]
        held = g.privileges_of(role)
        out = [f"every table (member of {pre})" for pre in sorted(PREDEFINED)
               if pre in held and PREDEFINED[pre]["tables"] & WRITE_PRIVILEGES]
        if out:
            return out
        out += [text for owner, text, _schema in self._owned if owner in held]
        listed = set()
        for kind, privs in (("tables", TABLE_WRITES), ("columns", ("INSERT", "UPDATE"))):
            for obj in self.objects(kind):
                table = obj if kind == "tables" else table_of(obj)
                got = [p for p in privs if table not in listed and self.has(role, kind, obj, p)]
                if got:
                    out.append(f"{', '.join(got)} on {obj}")
                    listed.add(obj)
        return out

    def unusable(self, role: str, kind: str, obj: str) -> bool:
        """Whether ``obj`` (a table, sequence, column or function) is out of reach
        for ``role``: no USAGE on its schema."""
        return not self.has(role, "schemas", schema_of(obj), "USAGE")


def writing_functions(data: dict, eff: Effective | None = None) -> dict[str, str]:
    """SECURITY DEFINER functions of a collected database that write as their owner
    -> how. Executing one acts as its owner (#19 case 11), whatever its volatility
    or language, and what its body does cannot be read soundly (a helper it calls,
    a BEGIN ATOMIC body, quoting, GRANT ...): so a DEFINER function is a write path
    whenever its owner can write (``Effective.writes``), or can run another such
    function. The tables its body names (``body_writes``) only add detail; they
    never clear a function."""
    eff = eff or Effective(data)
    fns = data.get("functions") or {}
    owners = (data.get("owners") or {}).get("functions", {})
    definers = {sig: owners.get(sig) for sig, f in fns.items() if f.get("security_definer")}
    can: dict[str | None, list[str]] = {}
    for owner in set(definers.values()):
        can[owner] = eff.writes(owner) if owner else ["owner unknown"]
    out: dict[str, str] = {}
    grown = True
    while grown:            # an owner who can run another writing DEFINER function writes too
        grown = False
        for sig, owner in sorted(definers.items()):
            if sig in out:
                continue
            what = can[owner] or [f"EXECUTE on SECURITY DEFINER function {other}"
                                  for other in sorted(out)
                                  if eff.has(owner, "functions", other, "EXECUTE")][:1]
            if what:
                out[sig] = _definer_text(fns[sig], owner or "?", what)
                grown = True
    return out


def _definer_text(f: dict, owner: str, what: list[str]) -> str:
    named = tuple(f" {t}" for t in f.get("writes") or ())
    what = sorted(what, key=lambda w: not w.endswith(named)) if named else what
    shown = "; ".join(what[:3]) + (f"; ... {len(what) - 3} more" if len(what) > 3 else "")
    if f.get("writes"):
        head = f"writes {', '.join(f['writes'])} as its owner {owner}"
    else:
        head = f"runs as its owner {owner}"
        if f.get("body") in ("dynamic", "opaque"):
            head += (f" ({f.get('language')} body "
                     f"{'runs dynamic SQL' if f.get('body') == 'dynamic' else 'unread'})")
    return f"{head}, who can write: {shown}"
