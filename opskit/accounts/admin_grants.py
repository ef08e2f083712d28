"""Which steps of a ``users apply`` plan grant admin-tier rights (R-SEC-2 gate input).

A step grants admin-tier rights when it creates an account, adds groups or
installs/rewrites a sudoers drop-in for a person who holds a role of tier
``admin``: what a second person must review before ``users apply`` runs it.
Removing rights, keys and shells are not grants.
"""
from __future__ import annotations

GRANTING = ("create", "groups", "sudoers")


def _grants(step) -> bool:
    if step.action == "create":
        return True
    if step.action == "groups":
        return "+" in step.detail
    return step.action == "sudoers" and not step.detail.startswith("remove")


def admin_grants(fleet, roster) -> list[str]:
    """'host:person:action:detail' of each step granting admin-tier rights, sorted."""
    admins = {pid for pid, person in roster.people.items()
              if any(roster.model.tier_of(r) == "admin" for r in roster.roles_of(person))}
    return sorted(f"{s.host}:{s.subject}:{s.action}:{s.detail}" for s in fleet.steps()
                  if s.subject in admins and s.action in GRANTING and _grants(s))
