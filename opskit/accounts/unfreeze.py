"""Lifting a freeze, only with an approved access request (R-ACC-3, R-ACC-1, R-ACC-6).

``opskit users unfreeze PERSON --request ID``:

1. ``open_store(config).claim_unfreeze(ID, PERSON, actor)`` (opskit.accounts.requests)
   checks the request is an approved unfreeze for PERSON and that the actor
   is a designated admin who neither raised nor approved it; any refusal
   exits 2 and nothing is touched;
2. the roster must list PERSON as active (the request authorises lifting the
   freeze; the roster still decides what access they get);
3. on every host where PERSON is entitled and their account is frozen: clear
   the expiry, unlock a password that had one, restore the roster's shell and
   force a password change at next login (``chage -d 0``); then provision the
   account like ``users apply`` (groups, keys, sudoers). The frozen
   files in /var/lib/opskit/frozen/LOGIN/ stay as evidence. Frozen accounts on
   hosts PERSON is no longer entitled to stay frozen;
4. ``mark_applied(ID, actor, details)`` once every host succeeded. A failed
   host exits 3 without marking: rerun the same command to finish.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from opskit.core.errors import EXIT_OK, EXIT_OPERATIONAL, UsageError
from opskit.hosts.base import Host
from opskit.hosts.fanout import fan_out

from .provision import (HostPlan, Note, Settings, must_change_password_lines, on_host,
                        plan_host, read_userdb_batched)
from .target import Step, Target, cmd, run_steps


@dataclass
class HostUnfreeze:
    host: str
    status: str = "ok"
    error: str | None = None
    lifted: list[Step] = field(default_factory=list)
    plan: HostPlan | None = None
    note: str | None = None

    @property
    def steps(self) -> list[Step]:
        return self.lifted + (self.plan.steps if self.plan else [])

    @property
    def ok(self) -> bool:
        return self.status == "ok" and not any(s.ok is False for s in self.steps)

    def as_dict(self) -> dict:
        return {"host": self.host, "status": self.status, "error": self.error,
                "note": self.note, "steps": [s.as_dict() for s in self.steps],
                "notes": [n.as_dict() for n in self.plan.notes] if self.plan else []}


def lift_steps(target: Target, acct, person, settings: Settings) -> list[Step]:
    pre = target.prefix()
    argv = ["usermod", *pre, "-e", ""]
    parts = ["clear the expiry"]
    if acct.password == "locked":          # '!' + a hash: give the old hash back
        argv.append("-U")
        parts.append("unlock the password")
    argv += ["-s", person.shell, person.login]
    parts += [f"shell {person.shell}", "password change at next login"]
    return [Step(target.name, person.id, "unfreeze", "; ".join(parts),
                 [cmd(*argv), *must_change_password_lines(target, person.login)])]


def unfreeze_fleet(specs: Sequence[Any], roster, person, settings: Settings) -> list[HostUnfreeze]:
    if not person.active:
        raise UsageError(f"{person.id} has status '{person.status}' in "
                         f"{roster.source or 'the roster'}"
                         "; set 'status: active' there first (the approved request authorises "
                         "lifting the freeze, the roster decides the access)")
    info = {str(getattr(s, "name", s)): (getattr(s, "groups", []) or [],
                                         getattr(s, "vars", {}) or {}) for s in specs}

    def work(host: Host) -> HostUnfreeze:
        groups, variables = info[host.name]
        target = Target.of(host, variables)
        db = read_userdb_batched(target, settings.host_timeout)
        acct = db.account(person.login)
        result = HostUnfreeze(host.name)
        if acct is None:
            result.note = "no account"
            return result
        if acct.uid < settings.min_uid:
            result.note = "system account: never managed"
            return result
        entitled = on_host(roster, person, groups)
        if acct.expired():
            if not entitled:
                result.note = "not entitled on this host: stays frozen"
                return result
            result.lifted = lift_steps(target, acct, person, settings)
            run_steps(target, result.lifted, timeout=settings.host_timeout)
            if not all(s.ok for s in result.lifted):
                return result
        elif not entitled:
            result.note = "not frozen, not entitled: run 'opskit users freeze'"
            return result
        result.plan = plan_host(target, roster, [person], groups, settings)
        if result.plan.steps:
            run_steps(target, result.plan.steps, timeout=settings.host_timeout)
        return result

    outcomes = fan_out(list(specs), work, concurrency=settings.concurrency,
                       timeout_per_host=settings.host_timeout, ssh_settings=settings.ssh_settings)
    return [o.value if o.ok else HostUnfreeze(o.name, status=o.status, error=o.error)
            for o in outcomes]


def exit_code(hosts: list[HostUnfreeze]) -> int:
    return EXIT_OPERATIONAL if any(not h.ok for h in hosts) else EXIT_OK


__all__ = ["unfreeze_fleet", "HostUnfreeze", "exit_code", "Note"]
