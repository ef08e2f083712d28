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
            table = obj.rsplit(".", 1)[0]
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
                schema = obj.split(".", 1)[0]
                if kind in ("tables", "sequences", "columns", "functions") and \
                        not self.has(role, "schemas", schema, "USAGE"):
                    got = [f"{p} (no USAGE on schema {schema})" for p in got]
                out.setdefault(kind, {})[obj] = got
        return out

    def unusable(self, role: str, kind: str, obj: str) -> bool:
        """Whether ``obj`` (a table, sequence, column or function) is out of reach
        for ``role``: no USAGE on its schema."""
        return not self.has(role, "schemas", obj.split(".", 1)[0], "USAGE")


def writing_functions(data: dict) -> dict[str, str]:
    """SECURITY DEFINER functions of a collected database that may write as their
    owner -> what they write: VOLATILE, and the body names tables it writes or
    cannot be read (executing one acts as its owner, #19 case 11)."""
    out = {}
    owners = (data.get("owners") or {}).get("functions", {})
    for sig, f in sorted((data.get("functions") or {}).items()):
        if not (f.get("security_definer") and f.get("volatile")):
            continue
        owner = owners.get(sig, "?")
        if f.get("writes"):
            out[sig] = f"writes {', '.join(f['writes'])} as its owner {owner}"
        elif f.get("body") in ("dynamic", "opaque"):
            out[sig] = (f"may write as its owner {owner} ({f.get('language')} body "
                        f"{'runs dynamic SQL' if f.get('body') == 'dynamic' else 'unread'})")
    return out
