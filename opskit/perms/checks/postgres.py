"""PostgreSQL: login roles, memberships, attributes and grants against the roster.

``database`` checks get a DatabaseFacts, ``db-role`` checks a RoleFacts
(opskit.perms.facts) of the kinds they are registered ``on``: ``unaccounted``
(a login nobody declared), a ``leaver``'s, or an active ``person``'s.
"""
from __future__ import annotations

import datetime as _dt

from ..facts import PG_ATTRIBUTES
from ..findings import DiffRow, Finding, finding_check


def _first_eight(writes: list[str]) -> str:
    return "; ".join(writes[:8]) + (f"; ... {len(writes) - 8} more" if len(writes) > 8 else "")


def _evidence(attrs: dict, direct_of: list[str]) -> str:
    flags = [a.upper() for a in PG_ATTRIBUTES if attrs.get(a)]
    return (f"LOGIN {'yes' if attrs.get('login') else 'no'}"
            + (f", {', '.join(flags)}" if flags else "")
            + (f", member of {', '.join(sorted(direct_of))}" if direct_of else ""))


def _iso_epoch(text: str) -> float:
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


@finding_check("database", "query-write", fleet_wide=True)
def query_group_role_writes(ctx, db):
    """R-ACC-5: a query-tier group role (or a role it is in, or PUBLIC) can write."""
    public = db.writes.get("PUBLIC", [])
    for pg, tier_roles in sorted(ctx.query_pg_roles.items()):
        if pg not in db.roles:
            continue
        eff = {pg} | db.effective(pg)
        w = [f"{x} (granted to {g})" for g in sorted(eff) for x in db.writes.get(g, ())]
        w += [f"{x} (granted to PUBLIC)" for x in public]
        if w:
            yield Finding("query-write", "high", f"PostgreSQL role {pg} (query tier: "
                          f"{', '.join(tier_roles)}) can write in {db.name}", _first_eight(w),
                          None, pg, db.where)


@finding_check("db-role", "generic-account", on=("unaccounted",))
def generic_login_role(ctx, r):
    if ctx.is_generic(r.name):
        yield Finding("generic-account", "medium", f"generic or shared login role "
                      f"{r.name} in {r.db.name}", "name matches perms.generic_names",
                      None, r.name, r.db.where)


@finding_check("db-role", "not-in-roster", on=("unaccounted",))
def login_role_not_in_roster(ctx, r):
    """R-ACC-1: a login role nobody declared."""
    yield Finding("not-in-roster", "high" if r.attrs.get("superuser") else "medium",
                  f"login role {r.name} in {r.db.name} is not in the roster",
                  _evidence(r.attrs, r.direct_of), None, r.name, r.db.where)


@finding_check("db-role", "not-frozen", on=("leaver",))
def leaver_role_not_frozen(ctx, r):
    """R-ACC-6: a departing/transferred/departed person's role can still log in or act."""
    p, attrs, left = r.person, r.attrs, []
    until = attrs.get("valid_until")
    expired = until is not None and _iso_epoch(until) <= ctx.now
    if attrs.get("login") and not expired:
        left.append("can log in (LOGIN, no past VALID UNTIL)")
    if r.direct_of:
        left.append(f"member of {', '.join(sorted(r.direct_of))}")
    left += [a.upper() for a in PG_ATTRIBUTES if attrs.get(a)]
    if r.db.direct.get(r.name):
        left.append(f"{len(r.db.direct[r.name])} direct grant(s)")
    if not left:
        return
    for item in left:
        yield DiffRow(p.id, r.name, r.db.where, "pg-role", item, "extra", f"status {p.status}")
    yield Finding("not-frozen", "medium" if p.status == "departing" else "high",
                  f"{p.id} ({p.status}) still has access in {r.db.name}", "; ".join(left),
                  p.id, r.name, r.db.where)


@finding_check("db-role", "beyond-role", on=("person",))
def login_without_grants(ctx, r):
    """R-ACC-4: a person's login role though no role of theirs grants database access."""
    if not r.declared and r.attrs.get("login"):
        pid = r.person.id
        yield DiffRow(pid, r.name, r.db.where, "pg-role", r.name, "extra")
        yield Finding("beyond-role", "medium", f"{pid} has a login role in "
                      f"{r.db.name} though no role of theirs grants database access",
                      _evidence(r.attrs, r.direct_of), pid, r.name, r.db.where)


@finding_check("db-role", "beyond-role", on=("person",))
def extra_memberships(ctx, r):
    pid = r.person.id
    for m in sorted(set(r.direct_of) - r.declared):
        yield DiffRow(pid, r.name, r.db.where, "pg-member", m, "extra")
        yield Finding("beyond-role", "high" if m in ctx.special_pg else "medium",
                      f"{pid} is a member of {m} in {r.db.name}, which none of their "
                      "roles gives", f"pg_auth_members: {r.name} -> {m}; declared: "
                      f"{', '.join(sorted(r.declared)) or '-'}", pid, r.name, r.db.where)


@finding_check("db-role", "declared-missing", on=("person",))
def missing_memberships(ctx, r):
    pid = r.person.id
    for m in sorted(r.declared - set(r.direct_of) - r.effective):
        yield DiffRow(pid, r.name, r.db.where, "pg-member", m, "missing")
        yield Finding("declared-missing", "low", f"{pid} is not a member of {m} in "
                      f"{r.db.name}", f"declared by roles {', '.join(r.roles)}",
                      pid, r.name, r.db.where)


@finding_check("db-role", "beyond-role", on=("person",))
def role_attributes(ctx, r):
    """R-ACC-4: SUPERUSER, CREATEROLE, ... on a person's role (high unless an admin's)."""
    pid = r.person.id
    for a in PG_ATTRIBUTES:
        if r.attrs.get(a):
            yield DiffRow(pid, r.name, r.db.where, "pg-attr", a.upper(), "extra")
            yield Finding("beyond-role", "medium" if "admin" in r.tiers else "high",
                          f"{pid}'s role has {a.upper()} in {r.db.name}",
                          f"pg_roles.rol{a} = true; declared roles: "
                          f"{', '.join(r.roles) or '-'}", pid, r.name, r.db.where)


@finding_check("db-role", "beyond-role", on=("person",))
def direct_grants(ctx, r):
    """R-ACC-4: object privileges granted to the person's role itself, not through a role."""
    pid = r.person.id
    for obj in r.db.direct.get(r.name, ()):
        yield DiffRow(pid, r.name, r.db.where, "pg-grant", obj, "extra")
        yield Finding("beyond-role", "medium", f"{pid} holds {obj} in {r.db.name} "
                      "directly, not through a role", "aclexplode of pg_catalog ACLs",
                      pid, r.name, r.db.where)


@finding_check("db-role", "query-write", on=("person",))
def query_person_writes(ctx, r):
    """R-ACC-5: someone holding only query-tier roles can write. Writes through a
    query-tier group role are reported once, on that role (query_group_role_writes)."""
    if r.tiers != {"query"}:
        return
    w = [f"{x} (granted to {g})" for g in sorted(({r.name} | r.effective) - r.db.query_covered)
         for x in r.db.writes.get(g, ())]
    if w:
        yield Finding("query-write", "high", f"{r.person.id} holds only query-tier roles "
                      f"but can write in {r.db.name}", _first_eight(w),
                      r.person.id, r.name, r.db.where)
