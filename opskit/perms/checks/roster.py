"""Per active person: what their declared roles (and actual access) combine to.

``person`` checks get an active roster Person; the actual sudo rights and
PostgreSQL roles per login were gathered by the walk over hosts and databases
(``ctx.actual_sudo``, ``ctx.actual_pg``).
"""
from __future__ import annotations

from ..findings import Finding, finding_check
from ..sudoers import covers


@finding_check("person", "query-write")
def query_tier_sudo(ctx, p):
    """R-ACC-5: someone holding only query-tier roles may run commands through sudo."""
    if ctx.declared.tiers(p) != {"query"} or not ctx.actual_sudo.get(p.login):
        return
    items = [i for i in ctx.actual_sudo[p.login] if not i.command.startswith("!")]
    if items:
        yield Finding("query-write", "high", f"{p.id} holds only query-tier roles but "
                      "may run commands through sudo",
                      "; ".join(f"{i.text()} ({i.source})" for i in items[:5]),
                      p.id, p.login, "hosts")


@finding_check("person", "sod-conflict")
def declared_sod_conflict(ctx, p):
    """R-ACC-2 (or the rule roles.yaml names): declared roles that may not be combined."""
    for c in ctx.model.conflicts(ctx.declared.roles(p)):
        yield Finding("sod-conflict", "high", f"{p.id} is declared with roles that may "
                      f"not be combined: {', '.join(c.roles)}", c.describe(), p.id, p.login,
                      "roster", rule=c.sod.rule)


@finding_check("person", "sod-conflict")
def actual_sod_conflict(ctx, p):
    """Actual access that amounts to undeclared roles which break a separation-of-duties
    rule the declared roles alone do not."""
    roles = ctx.declared.roles(p)
    inferred = _inferred_roles(ctx, roles, ctx.actual_sudo.get(p.login, ()),
                               ctx.actual_pg.get(p.login, set()))
    if not inferred:
        return
    model = ctx.model
    declared_ids = {c.sod.id for c in model.conflicts(roles)}
    for c in model.conflicts(roles + inferred):
        if c.sod.id in declared_ids:
            continue
        yield Finding("sod-conflict", "high", f"{p.id}'s actual access combines roles "
                      f"that may not be combined: {', '.join(c.roles)}",
                      c.describe() + f"; not declared but held: {', '.join(inferred)}",
                      p.id, p.login, "actual", rule=c.sod.rule)


def _inferred_roles(ctx, roles: list[str], sudo_items, pg_roles: set[str]) -> list[str]:
    """Roles of the model the person actually holds without being declared with
    them: every PostgreSQL role of the role is held, or every sudo rule is."""
    out = []
    declared = set(roles)
    for role in ctx.model.roles.values():
        if role.name in declared:
            continue
        if role.pg_roles and set(role.pg_roles) <= pg_roles:
            out.append(role.name)
            continue
        if role.sudo and sudo_items:
            wanted = ctx.declared.sudo([role.name])
            if wanted and all(any(covers(a, w) for a in sudo_items) for w in wanted):
                out.append(role.name)
    return out


@finding_check("person", "special-no-reviewer")
def special_without_reviewer(ctx, p):
    """R-ACC-5: a special-tier role without a second, active holder of its reviewer role."""
    for r in ctx.declared.roles(p):
        role = ctx.model.roles.get(r)
        if role is None or role.tier != "special":
            continue
        if not role.review_by:
            yield Finding("special-no-reviewer", "high", f"special role {r} held by {p.id} "
                          "names no reviewer role (review_by)", f"roles.yaml: {r}",
                          p.id, p.login, "roster")
            continue
        holders = ctx.holders.get(role.review_by, set())
        if not holders - {p.id}:
            yield Finding("special-no-reviewer", "high", f"{p.id} holds special role {r} "
                          f"but no other active person holds its reviewer role "
                          f"{role.review_by}", f"holders of {role.review_by}: "
                          f"{', '.join(sorted(holders)) or 'none'}",
                          p.id, p.login, "roster")


@finding_check("person", "no-backup")
def post_without_backup(ctx, p):
    """R-ACC-8: a post holder without an active backup person (AB岗)."""
    if not p.post:
        return
    backup = ctx.roster.people.get(p.backup) if p.backup else None
    if p.backup is None:
        yield Finding("no-backup", "medium", f"{p.id} (post {p.post}) has no backup "
                      "person", "roster: backup not set", p.id, p.login, "roster")
    elif backup is None or not backup.active:
        yield Finding("no-backup", "medium", f"{p.id}'s backup {p.backup} (post "
                      f"{p.post}) is not active", f"roster: {p.backup} status "
                      f"{backup.status if backup else 'unknown'}", p.id, p.login, "roster")
    elif p.backup == p.id:
        yield Finding("no-backup", "medium", f"{p.id} is their own backup",
                      "roster", p.id, p.login, "roster")
