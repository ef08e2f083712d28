"""Declared vs actual: the differences and the findings an auditor reads.

``analyse(snapshot, roster, options)`` compares one snapshot with the roster
and role model (opskit.accounts.roster, opskit.accounts.roles) and returns

* ``diff``     rows where declared and actual access differ: an account,
               group, sudo right, key or database grant the person has but
               their roles do not give (``extra``), or one their roles give
               that is not there (``missing``);
* ``findings`` each with a rule id, a severity and evidence (docs/perms.md
               lists every check):

  check                rule      what
  beyond-role          R-ACC-4   access beyond the person's declared roles
  declared-missing     R-ACC-3   declared (approved) access that was never applied
  sod-conflict         R-ACC-2   roles that may not be combined (separation of duties)
  query-write          R-ACC-5   query-tier roles or people able to write
  special-no-reviewer  R-ACC-5   special-tier role without a second, active reviewer
  default-privileges   R-ACC-5   future grants with writes for the query tier, or to PUBLIC
  row-security         R-ACC-4   personal-data tables without row-level security kept up
  not-in-roster        R-ACC-1   accounts and login roles nobody declared
  not-frozen           R-ACC-6   departing/transferred/departed people with access left
  dormant              R-ACC-4   no login for perms.dormant_days
  generic-account      R-AUD-3   generic or shared names (admin, test, ...), extra uid 0
  shared-key           R-AUD-3   one SSH key on several people's accounts
  no-backup            R-ACC-8   a post holder without an active backup person (AB岗)
  collection-failed    R-AUD-2   a host or database the snapshot could not read

The checks are functions in opskit/perms/checks/, registered per scope
(opskit.perms.findings); ``analyse`` walks the snapshot once -- hosts and their
accounts, databases and their roles, the people, then the fleet -- calling the
checks of each scope, and gathers on the way the actual sudo rights and
PostgreSQL roles per login the per-person checks need (opskit.perms.facts).
"""
from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field

from opskit.accounts.roster import Roster
from opskit.core.gcpause import paused_gc

from .facts import AccountFacts, Context, DatabaseFacts, Declared, HostFacts, RoleFacts
from .findings import SCOPES, SEVERITIES, DiffRow, Finding, checks_for


@dataclass
class Options:
    dormant_days: int = 90
    min_uid: int = 1000
    generic_names: list[str] = field(default_factory=list)
    ignore_accounts: list[str] = field(default_factory=list)
    ignore_groups: list[str] = field(default_factory=list)
    now: float | None = None          # epoch seconds; default: the snapshot's time

    @classmethod
    def from_config(cls, config) -> "Options":
        return cls(dormant_days=int(config.get("perms.dormant_days")),
                   min_uid=int(config.get("perms.min_uid")),
                   generic_names=list(config.get("perms.generic_names")),
                   ignore_accounts=list(config.get("perms.ignore_accounts")),
                   ignore_groups=list(config.get("perms.ignore_groups")))


@dataclass
class Analysis:
    snapshot_id: str
    findings: list[Finding]
    diff: list[DiffRow]
    warnings: list[tuple[str, str]]
    duration: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in SEVERITIES}
        for f in self.findings:
            out[f.severity] = out.get(f.severity, 0) + 1
        return out


def _snapshot_time(snapshot) -> float:
    created = snapshot.created
    try:
        return _dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


class _Run:
    """One walk: runs the checks of a scope on an item and files what they yield."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.findings: list[Finding] = []
        self.diff: list[DiffRow] = []
        self._specs = {scope: checks_for(scope, person_only=ctx.only is not None)
                       for scope in SCOPES}
        self._funcs: dict[str, dict[str | None, list]] = {scope: {} for scope in SCOPES}

    def run(self, scope: str, item, kind: str | None = None) -> None:
        """Every check of ``scope`` that applies to items of ``kind``, on ``item``."""
        funcs = self._funcs[scope].get(kind)
        if funcs is None:
            funcs = self._funcs[scope][kind] = [c.func for c in self._specs[scope]
                                                if c.applies(kind)]
        ctx = self.ctx
        for check in funcs:
            for out in check(ctx, item):
                (self.diff if type(out) is DiffRow else self.findings).append(out)


def _collected(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok" and r.get("data")]


def _walk_hosts(run: _Run) -> None:
    ctx = run.ctx
    for row in _collected(ctx.snapshot.hosts):
        host = HostFacts.from_row(row)
        run.run("host", host)
        for login, acct in host.accounts.items():
            if ctx.only is not None and login != ctx.only.login:
                continue
            account = AccountFacts.on(ctx, host, login, acct)
            if account.sudo_items:
                ctx.actual_sudo.setdefault(login, []).extend(account.sudo_items)
            run.run("account", account, account.kind)


def _walk_databases(run: _Run) -> None:
    ctx = run.ctx
    for row in _collected(ctx.snapshot.databases):
        db = DatabaseFacts.from_row(ctx, row)
        run.run("database", db)
        for name, attrs in db.roles.items():
            if (ctx.only is not None and name != ctx.only.login) or attrs.get("builtin"):
                continue
            role = RoleFacts.on(ctx, db, name, attrs)
            if role.person is not None:
                ctx.actual_pg.setdefault(name, set()).update(role.effective)
                ctx.set_role_pg.setdefault(name, set()).update(role.set_role_only)
            run.run("db-role", role, role.kind)


def analyse(snapshot, roster: Roster, options: Options | None = None,
            person: str | None = None) -> Analysis:
    """Compare ``snapshot`` with the roster (see module doc). ``person``
    limits the comparison to one person id (fleet-wide checks left out)."""
    with paused_gc():       # the walk makes ~10^6 short-lived objects, no cycles
        return _analyse(snapshot, roster, options, person)


def _analyse(snapshot, roster: Roster, options: Options | None, person: str | None) -> Analysis:
    t0 = time.monotonic()
    opts = options or Options()
    only = roster.person(person) if person is not None else None
    ctx = Context(snapshot, Declared(roster), opts,
                  opts.now if opts.now is not None else _snapshot_time(snapshot), only)
    run = _Run(ctx)
    _walk_hosts(run)
    _walk_databases(run)
    for p in ctx.people():
        if p.active:
            run.run("person", p)
    run.run("fleet", snapshot)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    run.findings.sort(key=lambda f: (f.rule, f.check, order.get(f.severity, 9), f.person or "",
                                     f.account or "", f.where))
    return Analysis(snapshot.id, run.findings, run.diff, snapshot.warnings(),
                    time.monotonic() - t0)
