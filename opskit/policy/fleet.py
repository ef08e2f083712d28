"""Run a policy on one host, or on many hosts at once.

Every selected host gets a row: a host that cannot be reached is reported
with its status ('unreachable', 'auth failed', 'timeout', ...), never dropped.
Planning (roles, parameters) happens before any host is contacted, so a bad
policy or inventory fails fast with exit code 2.
"""
from __future__ import annotations

import datetime as _dt
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from opskit.core.errors import EXIT_FINDINGS, EXIT_OK, EXIT_OPERATIONAL
from opskit.hosts.base import Host, HostError
from opskit.hosts.fanout import fan_out

from .model import ERROR, FAIL, MANUAL, NA, CheckResult, HostReport, Undecided, host_from_dict
from .policyfile import PlannedCheck, Policy
from .container import DETECT_VIRT
from .probe import FATAL, PS, Probe


PREFETCH = {
    "ip-route-4.json": ["ip", "-j", "-4", "route", "show", "table", "all"],
    "ip-route-6.json": ["ip", "-j", "-6", "route", "show", "table", "all"],
    "nft-ruleset.json": ["nft", "-j", "list", "ruleset"],
    "nft-ruleset.txt": ["nft", "list", "ruleset"],        # table flags (nft 1.0.6 JSON garbles them)
    "iptables-save": ["iptables-save"],
    "ip6tables-save": ["ip6tables-save"],
    "ps": PS,
    "detect-virt": DETECT_VIRT,
}


def run_planned(host: Host, role: str, planned: list[PlannedCheck]) -> HostReport:
    """Run the planned checks on ``host``. Connection-level failures propagate
    (the host is unreachable); any other failure is that check's 'error'."""
    started = time.monotonic()
    probe = Probe(host)
    probe.exists("/")                    # connects now: an unreachable host fails here
    commands = dict(PREFETCH)
    for item in planned:
        if not item.skip:
            commands.update(item.spec.commands)
    probe.prefetch(commands)             # live hosts: every command in one round trip
    report = HostReport(host.name, role=role)
    for item in planned:
        t0 = time.monotonic()
        if item.skip:
            result = CheckResult(item.spec.id, NA, reason=item.skip)
        else:
            try:
                result = item.spec.func(probe, item.context)
            except FATAL:
                raise
            except Undecided as exc:
                result = CheckResult(item.spec.id, ERROR, reason=str(exc))
            except HostError as exc:
                result = CheckResult(item.spec.id, ERROR, reason=exc.message)
            except Exception as exc:  # a bug in one check must not hide the others
                result = CheckResult(item.spec.id, ERROR,
                                     reason=f"internal error: {type(exc).__name__}: {exc}")
        result.check = item.spec.id
        result.rule = item.spec.rule
        result.severity = item.severity
        for finding in result.findings:
            finding.check = item.spec.id
            finding.rule = finding.rule or item.spec.rule
            finding.severity = item.severity
        result.duration = time.monotonic() - t0
        report.results.append(result)
    report.duration = time.monotonic() - started
    return report


def check_host(host: Host, policy: Policy, groups: list[str] | None = None,
               variables: dict | None = None) -> HostReport:
    """All checks of ``policy`` on one host."""
    role, planned = policy.plan(host.name, groups, variables)
    return run_planned(host, role, planned)


def new_run_id() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


@dataclass
class RunReport:
    """One ``opskit policy check`` over a set of hosts."""

    id: str
    started: str
    duration: float
    policy_files: list[str]
    hosts: list[HostReport] = field(default_factory=list)
    profile: str | None = None

    @property
    def exit_code(self) -> int:
        """3 when a host was unreachable or a check could not decide, else 1 with
        findings, else 0 (ARCHITECTURE.md)."""
        if any(not h.reachable for h in self.hosts) or \
                any(r.status == ERROR for h in self.hosts for r in h.results):
            return EXIT_OPERATIONAL
        if any(r.status == FAIL for h in self.hosts for r in h.results):
            return EXIT_FINDINGS
        return EXIT_OK

    def findings(self):
        for h in self.hosts:
            for r in h.results:
                for f in r.findings:
                    yield h.host, f

    def counts(self) -> dict[str, int]:
        out = {"hosts": len(self.hosts), "unreachable": sum(not h.reachable for h in self.hosts),
               "pass": 0, "fail": 0, "n/a": 0, "error": 0,
               "findings": sum(1 for _ in self.findings())}
        if self.profile:
            out[MANUAL] = 0
        for h in self.hosts:
            for status, n in h.counts().items():
                out[status] = out.get(status, 0) + n
        return out

    def summary(self) -> str:
        c = self.counts()
        failing = sorted({h.host for h in self.hosts for r in h.results if r.status == FAIL})
        text = (f"policy check: {c['hosts']} host(s), {c['findings']} finding(s) in {c['fail']} "
                f"failed check(s); {c['pass']} pass, {c['n/a']} n/a, {c['error']} error")
        if c.get(MANUAL):
            text += f", {c[MANUAL]} for the assessor (manual)"
        if self.profile:
            text = f"[profile {self.profile}] " + text
        if failing:
            text += f"; hosts with findings: {', '.join(failing)}"
        if c["unreachable"]:
            down = ", ".join(h.host for h in self.hosts if not h.reachable)
            text += f"; unreachable: {down}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "started": self.started, "duration": round(self.duration, 3),
                "policy_files": self.policy_files, "profile": self.profile, "exit_code": self.exit_code,
                "counts": self.counts(), "hosts": [h.as_dict() for h in self.hosts]}

    @classmethod
    def from_dict(cls, data: dict) -> "RunReport":
        return cls(data["id"], data["started"], float(data.get("duration", 0)),
                   list(data.get("policy_files", [])),
                   [host_from_dict(h) for h in data.get("hosts", [])], data.get("profile"))


def check_fleet(targets: Sequence[Any], policy: Policy, *, concurrency: int = 16,
                timeout_per_host: float | None = 60.0, ssh_settings: Any = None) -> RunReport:
    """Run ``policy`` on every target (HostSpecs from the inventory, or ready
    Host objects) concurrently; one HostReport per target, in order."""
    started = time.monotonic()
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    plans = {}
    for target in targets:
        name = str(getattr(target, "name", target))
        plans[name] = policy.plan(name, getattr(target, "groups", []), getattr(target, "vars", {}))

    def work(host: Host) -> HostReport:
        role, planned = plans[host.name]
        return run_planned(host, role, planned)

    outcomes = fan_out(list(targets), work, concurrency=concurrency,
                       timeout_per_host=timeout_per_host, ssh_settings=ssh_settings)
    hosts = []
    for outcome in outcomes:
        if outcome.ok:
            hosts.append(outcome.value)
        else:
            role = plans[outcome.name][0]
            hosts.append(HostReport(outcome.name, status=outcome.status, error=outcome.error,
                                    role=role, duration=outcome.duration))
    return RunReport(new_run_id(), when, time.monotonic() - started, list(policy.files), hosts,
                     policy.profile)


__all__ = ["check_fleet", "check_host", "run_planned", "RunReport", "NA"]
