"""row-security (R-ACC-4): tables of personal or insurance data whose rows are not kept apart.

roles.yaml ``row_security`` names the tables that must have PostgreSQL
row-level security and the roles that may see every row (docs/roster.md);
the snapshot holds pg_class.relrowsecurity / relforcerowsecurity, the
policies (pg_policies) and the owners (opskit.perms.postgres). ``database``
checks get a DatabaseFacts (opskit.perms.facts). Reported:

* a declared table with row-level security off: every role with SELECT sees
  every row (high);
* a declared table without FORCE: its owner, and every role holding the
  owner's privileges, bypass the policies (medium);
* on a declared table, a permissive policy ``USING (true)`` for a role that
  may not see every row, not narrowed by a restrictive policy (high);
* a role with BYPASSRLS holding a privilege on a table with row-level
  security on, on the table or on some of its columns (high on a declared
  table, medium on another);
* a table with row-level security on that roles.yaml does not name, whose
  owner bypasses it for want of FORCE (low).

A role may see every row when it holds the privileges of a PostgreSQL role of
an ``all_rows`` role (the server's has_privs_of_role, as policies apply).
Superusers bypass row-level security whatever is set; they are findings of
their own (beyond-role, not-in-roster), not repeated here.
"""
from __future__ import annotations

from ..findings import Finding, finding_check

_ROW_PRIVILEGES = ("SELECT", "UPDATE", "DELETE")


def _declared(ctx, db) -> dict:
    return {t: d for t, d in ctx.model.row_security.items() if d.applies(db.names)}


def _sees_all(db, role: str, allowed: set[str]) -> bool:
    return role != "PUBLIC" and bool(allowed & db.graph.privileges_of(role))


def _is_true(expr: str | None) -> bool:
    return expr is not None and expr.strip().strip("()").strip().lower() == "true"


def _owner(db, table: str) -> str | None:
    return ((db.data.get("owners") or {}).get("tables") or {}).get(table)


def _bypassing_owner(db, table: str) -> str:
    """Who bypasses ``table``'s policies as its owner: the owner and the login roles
    holding its privileges."""
    owner = _owner(db, table) or "?"
    others = sorted(r for r, a in db.roles.items() if r != owner and a.get("login")
                    and owner in db.graph.walk(r, "inherit"))
    shown = ", ".join(others[:8]) + (f", ... {len(others) - 8} more" if len(others) > 8 else "")
    return f"owner {owner}" + (f" and the login roles holding its privileges: {shown}"
                               if others else "")


@finding_check("database", "row-security", fleet_wide=True)
def declared_table_rls(ctx, db):
    """A declared table without row-level security, without FORCE, or with a policy
    letting a role see every row it should not."""
    rls, relkinds = db.data.get("rls") or {}, db.data.get("relkinds") or {}
    for table, decl in sorted(_declared(ctx, db).items()):
        if table not in relkinds:
            if decl.databases:          # named for this database: a typo hides the check
                yield Finding("row-security", "low", f"{table} (roles.yaml row_security) is "
                              f"not in {db.name}", f"databases: {', '.join(decl.databases)}",
                              None, None, db.where)
            continue
        info = rls.get(table) or {}
        if not info.get("enabled"):
            readers = sorted(g for g, objs in (db.data.get("privileges") or {})
                             .get("tables", {}).items()
                             if any(p.startswith("SELECT") for p in objs.get(table, ())))
            yield Finding("row-security", "high", f"{table} holds personal data but row-level "
                          f"security is off in {db.name}: every reader sees every row",
                          f"pg_class.relrowsecurity = false; SELECT granted to "
                          f"{', '.join(readers) or 'nobody'}; roles.yaml row_security "
                          f"{table}", None, None, db.where)
            continue
        if not info.get("forced"):
            yield Finding("row-security", "medium", f"{table} in {db.name} has row-level "
                          "security without FORCE: its owner bypasses the policies",
                          f"pg_class.relforcerowsecurity = false; {_bypassing_owner(db, table)}",
                          None, _owner(db, table), db.where)
        allowed = ctx.declared.pg(decl.all_rows, db.names)
        yield from _all_rows_policies(db, table, info["policies"], allowed, decl.all_rows)


def _all_rows_policies(db, table: str, policies: list[dict], allowed: set[str], all_rows):
    for pol in policies:
        if not pol["permissive"] or pol["command"] == "INSERT" or not _is_true(pol["using"]):
            continue
        for role in pol["roles"]:
            if _sees_all(db, role, allowed) or _narrowed(db, policies, pol, role):
                continue
            yield Finding("row-security", "high", f"policy {pol['name']} lets "
                          f"{'every role (PUBLIC)' if role == 'PUBLIC' else role} reach every "
                          f"row of {table} in {db.name}",
                          f"PERMISSIVE FOR {pol['command']} TO {role} USING (true); may see "
                          f"every row (roles.yaml all_rows): {', '.join(all_rows) or 'nobody'}",
                          None, role, db.where)


def _narrowed(db, policies: list[dict], pol: dict, role: str) -> bool:
    """Whether a restrictive policy (ANDed with the permissive ones) limits ``role``'s
    rows for ``pol``'s command."""
    held = {"PUBLIC", *db.graph.privileges_of(role)} if role != "PUBLIC" else {"PUBLIC"}
    return any(not p["permissive"] and p["command"] in ("ALL", pol["command"])
               and not _is_true(p["using"]) and held & set(p["roles"]) for p in policies)


def _row_privileges(eff, role: str, table: str) -> list[str]:
    """SELECT, UPDATE, DELETE ``role`` holds on ``table``: on the table, or on some of
    its columns ('SELECT (id, ssn)'), which reach every row all the same."""
    out = []
    for p in _ROW_PRIVILEGES:
        if eff.has(role, "tables", table, p):
            out.append(p)
        elif p != "DELETE" and (cols := eff.columns_with(role, table, p)):
            out.append(f"{p} ({', '.join(cols)})")
    return out


@finding_check("database", "row-security", fleet_wide=True)
def bypassrls_roles(ctx, db):
    """A role with BYPASSRLS (not inherited by its members) that can read or change
    rows of a table with row-level security on."""
    enabled = sorted(t for t, i in (db.data.get("rls") or {}).items() if i.get("enabled"))
    bypass = sorted(n for n, a in db.roles.items() if a.get("bypassrls") and not a.get("superuser"))
    if not (enabled and bypass):
        return
    declared = _declared(ctx, db)
    for name in bypass:
        person = ctx.declared.by_login.get(name)
        for table in enabled:
            decl = declared.get(table)
            if decl and _sees_all(db, name, ctx.declared.pg(decl.all_rows, db.names)):
                continue
            privs = _row_privileges(db.privileges, name, table)
            if privs:
                yield Finding("row-security", "high" if decl else "medium",
                              f"{name} has BYPASSRLS: the row-level security of {table} does "
                              f"not apply to it in {db.name}", f"pg_roles.rolbypassrls = true; "
                              f"holds {', '.join(privs)} on {table}",
                              person.id if person else None, name, db.where)


@finding_check("database", "row-security", fleet_wide=True)
def undeclared_owner_bypass(ctx, db):
    """A table roles.yaml does not name, with row-level security on but not forced:
    its owner (not a superuser) bypasses the policies."""
    declared = _declared(ctx, db)
    for table, info in sorted((db.data.get("rls") or {}).items()):
        owner = _owner(db, table)
        if (table in declared or not info.get("enabled") or info.get("forced")
                or owner is None or db.graph.superuser(owner)):
            continue
        yield Finding("row-security", "low", f"{owner} owns {table} in {db.name} and bypasses "
                      "its row-level security (no FORCE)", f"pg_class.relforcerowsecurity = "
                      f"false; {_bypassing_owner(db, table)}", None, owner, db.where)
