"""default-privileges: what every future object will grant (pg_default_acl, #19 case 11).

``ALTER DEFAULT PRIVILEGES`` decides what roles receive on tables, sequences,
functions, types and schemas that do not exist yet, so today's grants do not
show it. Reported, per database (``database`` checks get a DatabaseFacts,
``db-role`` checks a RoleFacts, opskit.perms.facts):

* write privileges on future tables or sequences reaching a query-tier group
  role -- granted to it, to a role it inherits, or one it can SET ROLE to --
  or a person holding only query-tier roles (R-ACC-5, high);
* grants to PUBLIC beyond the server's own defaults (EXECUTE on functions,
  USAGE on types): every role gets them (R-ACC-4; R-ACC-5 high when they write).

A global entry (no schema) restates the creating role's own privileges; those
are its owner's rights, not a grant, and are left out.
"""
from __future__ import annotations

from ..findings import Finding, finding_check
from ..postgres import WRITE_PRIVILEGES

_WRITES = {"tables": WRITE_PRIVILEGES, "sequences": frozenset({"UPDATE"})}
# what PUBLIC gets on a new object when nobody altered the defaults
_SERVER_DEFAULTS = {"functions": {"EXECUTE"}, "types": {"USAGE"}}


def _grants(db):
    """(entry, base privileges) for each default-ACL entry granting to someone other
    than the creating role."""
    for e in db.data.get("default_acl") or ():
        if e["grantee"] != e["role"]:
            yield e, {p.split(" ", 1)[0] for p in e["privileges"]}


def _writes(e: dict, privs: set[str]) -> list[str]:
    return sorted(privs & _WRITES.get(e["objects"], frozenset()))


def _future(e: dict) -> str:
    where = f"in schema {e['schema']}" if e.get("schema") else "in every schema"
    return f"future {e['objects']} {where} created by {e['role']}"


def _statement(e: dict) -> str:
    where = f" IN SCHEMA {e['schema']}" if e.get("schema") else ""
    return (f"ALTER DEFAULT PRIVILEGES FOR ROLE {e['role']}{where} GRANT "
            f"{', '.join(e['privileges'])} ON {e['objects'].upper()} TO {e['grantee']}")


def _how(db, role: str, grantee: str, held: set[str]) -> str:
    if grantee == role:
        return ""
    if grantee in held:
        return f" (inherited through {' -> '.join(db.graph.path(role, grantee))})"
    return f" (reachable through SET ROLE {grantee}, not held)"


def _future_writes(db, role: str, held: set[str], set_only: set[str]):
    """(entry, written privileges, how) for each future write grant reaching ``role``."""
    for e, privs in _grants(db):
        w = _writes(e, privs)
        if w and e["grantee"] in held | set_only:
            yield e, w, _how(db, role, e["grantee"], held)


@finding_check("database", "default-privileges", fleet_wide=True)
def query_role_future_writes(ctx, db):
    """R-ACC-5: a query-tier group role will be able to write future tables or sequences."""
    for pg, tier_roles in sorted(ctx.query_pg_roles.items()):
        if pg not in db.roles:
            continue
        held = {pg} | db.effective(pg)
        for e, w, how in _future_writes(db, pg, held, db.set_role_only(pg)):
            yield Finding("default-privileges", "high", f"PostgreSQL role {pg} (query tier: "
                          f"{', '.join(tier_roles)}) will get {', '.join(w)} on {_future(e)} "
                          f"in {db.name}", _statement(e) + how, None, pg, db.where,
                          rule="R-ACC-5")


@finding_check("database", "default-privileges", fleet_wide=True)
def public_future_grants(ctx, db):
    """R-ACC-4 (R-ACC-5 when it writes): every role will get privileges on future objects."""
    for e, privs in _grants(db):
        extra = privs - _SERVER_DEFAULTS.get(e["objects"], set())
        if e["grantee"] != "PUBLIC" or not extra:
            continue
        w = _writes(e, extra)
        yield Finding("default-privileges", "high" if w else "medium",
                      f"every role (PUBLIC) will get {', '.join(sorted(extra))} on {_future(e)} "
                      f"in {db.name}", _statement(e) + ("; query-tier roles included"
                                                        if w else ""),
                      None, "PUBLIC", db.where, rule="R-ACC-5" if w else "R-ACC-4")


@finding_check("db-role", "default-privileges", on=("person",))
def query_person_future_writes(ctx, r):
    """R-ACC-5: someone holding only query-tier roles will be able to write future objects.
    Grants reaching a query-tier group role are reported once, on that role."""
    if r.tiers != {"query"}:
        return
    covered = r.db.query_covered
    held = ({r.name} | r.effective) - covered
    for e, w, how in _future_writes(r.db, r.name, held, r.set_role_only - covered):
        yield Finding("default-privileges", "high", f"{r.person.id} holds only query-tier "
                      f"roles but will get {', '.join(w)} on {_future(e)} in {r.db.name}",
                      _statement(e) + how, r.person.id, r.name, r.db.where, rule="R-ACC-5")
