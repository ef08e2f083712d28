"""Result types of a policy check run.

A check on a host ends in exactly one status:

    pass   the rule holds; ``evidence`` says what decided it
    fail   the rule is broken; one ``Finding`` per violation, each with evidence
    n/a    the check cannot apply here (container, no such subsystem, not required
           by policy); ``reason`` says why. Never counted as a failure.
    error  the check could not decide (a file could not be read); exit code 3
    manual a host check cannot honestly judge the requirement; ``reason`` is the
           question for the assessor (never a silent pass, never a failure)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, NA, ERROR, MANUAL = "pass", "fail", "n/a", "error", "manual"
STATUSES = (PASS, FAIL, NA, ERROR, MANUAL)
SEVERITIES = ("low", "medium", "high", "critical")


@dataclass
class Finding:
    """One violation. ``evidence`` is where it was seen: ``file:line: text`` or
    ``/proc/... = value``; ``rule`` the requirement ids it breaks (R-MED-2, ...)."""

    message: str
    evidence: str
    check: str = ""
    rule: str = ""
    severity: str = "high"

    def key(self) -> str:
        """Stable identity for drift comparison (message and evidence, no line drift)."""
        return f"{self.check}|{self.message}"


@dataclass
class CheckResult:
    """The outcome of one check on one host."""

    check: str
    status: str
    findings: list[Finding] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)   # what decided a pass (or a fail)
    reason: str = ""                                     # n/a or error: why
    rule: str = ""
    severity: str = "high"
    duration: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration"] = round(self.duration, 4)
        return data


def passed(evidence: list[str] | str | None = None) -> CheckResult:
    return CheckResult("", PASS, evidence=_list(evidence))


def failed(findings: list[Finding], evidence: list[str] | str | None = None) -> CheckResult:
    return CheckResult("", FAIL, findings=list(findings), evidence=_list(evidence))


def not_applicable(reason: str) -> CheckResult:
    return CheckResult("", NA, reason=reason)


def manual(question: str, evidence: list[str] | str | None = None) -> CheckResult:
    """The assessor must decide: ``question`` is what to ask, ``evidence`` what
    the host could tell."""
    return CheckResult("", MANUAL, evidence=_list(evidence), reason=question)


def verdict(findings: list[Finding], evidence: list[str] | str | None = None) -> CheckResult:
    """fail with ``findings`` when there are any, else pass with ``evidence``."""
    return failed(findings, evidence) if findings else passed(evidence)


def _list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass
class HostReport:
    """Every check on one host. ``status`` is 'ok' when the host answered,
    otherwise the host error's status ('unreachable', 'timeout', ...)."""

    host: str
    status: str = "ok"
    error: str | None = None
    role: str = "default"
    results: list[CheckResult] = field(default_factory=list)
    duration: float = 0.0

    @property
    def reachable(self) -> bool:
        return self.status == "ok"

    def result(self, check: str) -> CheckResult | None:
        for r in self.results:
            if r.check == check:
                return r
        return None

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES if s != MANUAL}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "error": self.error, "role": self.role,
                "duration": round(self.duration, 3), "counts": self.counts(),
                "results": [r.as_dict() for r in self.results]}


def result_from_dict(data: dict) -> CheckResult:
    findings = [Finding(**f) for f in data.get("findings", [])]
    return CheckResult(data["check"], data["status"], findings, list(data.get("evidence", [])),
                       data.get("reason", ""), data.get("rule", ""), data.get("severity", "high"),
                       float(data.get("duration", 0.0)))


def host_from_dict(data: dict) -> HostReport:
    return HostReport(data["host"], data.get("status", "ok"), data.get("error"),
                      data.get("role", "default"),
                      [result_from_dict(r) for r in data.get("results", [])],
                      float(data.get("duration", 0.0)))


class Undecided(Exception):
    """Raised by a check that cannot decide (e.g. 'nft: Operation not permitted');
    the check's status becomes 'error' with this reason."""
