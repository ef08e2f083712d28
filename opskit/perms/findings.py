"""What ``opskit perms`` reports, and how a check registers.

A *finding* is one thing an auditor reads: a check id (``CHECKS``, the table
in docs/perms.md), the rule it breaks, a severity and the evidence. A *diff
row* is one difference between declared and actual access. Checks are
functions ``(ctx, item) -> iterable of Finding | DiffRow`` registered with
``@finding_check(scope, check)``; the analysis (opskit.perms.analysis) walks
the snapshot and calls the checks of each scope on every item of it, in
registration order (which is also the order of the diff rows):

  host      each collected host            (opskit.perms.facts.HostFacts)
  account   each account on such a host    (AccountFacts)
  database  each collected database        (DatabaseFacts)
  db-role   each non-builtin database role (RoleFacts)
  person    each active person             (opskit.accounts.roster.Person)
  fleet     once, after everything else    (the Snapshot)

``on=(kind, ...)`` limits a check to the items of those kinds (accounts and
database roles have a ``kind``: whose they are, see opskit.perms.facts), so
the function needs no guard; ``fleet_wide=True`` marks a check that is left
out when the comparison is limited to one person. Adding a finding kind: a
row in ``CHECKS`` and one decorated function in a module of
opskit/perms/checks/.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

SEVERITIES = ("high", "medium", "low")
CHECKS = {
    "beyond-role": ("R-ACC-4", "Access beyond the declared roles (least privilege)"),
    "declared-missing": ("R-ACC-3", "Declared access that is not in place"),
    "sod-conflict": ("R-ACC-2", "Separation of duties: roles that may not be combined"),
    "query-write": ("R-ACC-5", "Query tier with write access"),
    "special-no-reviewer": ("R-ACC-5", "Special tier without a second reviewer"),
    "default-privileges": ("R-ACC-5", "Future grants (default privileges) beyond a tier "
                                      "or to PUBLIC"),
    "row-security": ("R-ACC-4", "Personal-data tables whose rows are not kept apart "
                                "(row-level security)"),
    "not-in-roster": ("R-ACC-1", "Accounts not in the roster"),
    "not-frozen": ("R-ACC-6", "Departing, transferred or departed people not frozen"),
    "dormant": ("R-ACC-4", "Dormant accounts"),
    "generic-account": ("R-AUD-3", "Generic or shared accounts"),
    "shared-key": ("R-AUD-3", "One SSH key on several accounts"),
    "no-backup": ("R-ACC-8", "Posts without a backup person (AB岗)"),
    "collection-failed": ("R-AUD-2", "Hosts or databases that could not be collected"),
}
SCOPES = ("host", "account", "database", "db-role", "person", "fleet")


@dataclass
class Finding:
    check: str
    severity: str
    message: str
    evidence: str
    person: str | None = None
    account: str | None = None
    where: str = "-"
    rule: str = ""

    def __post_init__(self):
        if not self.rule:
            self.rule = CHECKS[self.check][0]

    def as_dict(self) -> dict:
        return {"rule": self.rule, "check": self.check, "severity": self.severity,
                "person": self.person, "account": self.account, "where": self.where,
                "message": self.message, "evidence": self.evidence}


@dataclass
class DiffRow:
    person: str | None
    account: str
    where: str
    kind: str          # account group sudo key state pg-role pg-member pg-attr pg-grant
    item: str
    change: str        # extra | missing
    evidence: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


CheckFunc = Callable[..., Iterable["Finding | DiffRow"]]


@dataclass
class CheckSpec:
    scope: str
    check: str                        # the finding kind it reports (a key of CHECKS)
    func: CheckFunc
    on: tuple[str, ...] | None = None  # item kinds it looks at (None: every item)
    fleet_wide: bool = False

    def applies(self, kind: str | None) -> bool:
        return self.on is None or kind in self.on


REGISTRY: dict[str, list[CheckSpec]] = {scope: [] for scope in SCOPES}


def finding_check(scope: str, check: str, *, on: tuple[str, ...] | None = None,
                  fleet_wide: bool = False):
    """Register a check function for ``scope`` reporting ``check`` findings (see module doc)."""
    if scope not in REGISTRY or check not in CHECKS:
        raise ValueError(f"unknown scope {scope!r} or check {check!r}")

    def decorator(func: CheckFunc) -> CheckFunc:
        REGISTRY[scope].append(CheckSpec(scope, check, func, on, fleet_wide))
        return func

    return decorator


def checks_for(scope: str, *, person_only: bool = False) -> list[CheckSpec]:
    """The checks of ``scope`` in registration order (without the fleet-wide ones when the
    comparison is limited to one person), importing the modules that define them."""
    from . import checks  # noqa: F401  (registration side effect)
    return [c for c in REGISTRY[scope] if not (person_only and c.fleet_wide)]
