"""Turn a RunReport into what people and CI read: a host x check summary
table, findings with evidence, n/a and error reasons, and the per-check
cases that the registry's 'junit' format turns into JUnit XML."""
from __future__ import annotations

from opskit.core.output import Case, Result, Suite, Table

from .model import ERROR, FAIL, MANUAL, NA, PASS
from .catalogue import catalogue
from .fleet import RunReport
from .store import Change

SHORT = {
    "media.usb-storage-disabled": "usb cfg", "media.usb-storage-not-loaded": "usb loaded",
    "media.firewire-thunderbolt-disabled": "fw/tb", "media.removable-block-devices": "removable",
    "media.usb-authorized-default": "usb auth", "media.usbguard": "usbguard",
    "media.automount": "automount", "net.default-route": "default rt",
    "net.public-routes": "public rt", "net.forwarding": "forwarding", "net.wireless": "wireless",
    "net.listening-ports": "ports", "net.firewall-default-deny": "firewall",
    "net.dns-resolvers": "dns", "av.realtime": "antivirus",
}
CELL = {PASS: "pass", FAIL: "FAIL", NA: "n/a", ERROR: "error", MANUAL: "manual"}
_JUNIT = {PASS: "pass", FAIL: "fail", NA: "skip", ERROR: "error", MANUAL: "skip"}


def summary_table(report: RunReport) -> Table:
    """Host x check, for the checks this run ran (a profile's or the baseline's),
    in catalogue order."""
    ran = {r.check for host in report.hosts if host.reachable for r in host.results}
    checks = [c for c in catalogue() if c in ran] or list(catalogue())
    rows = []
    for host in report.hosts:
        row = {"host": host.host, "role": host.role,
               "status": host.status if host.reachable else host.status.upper()}
        for check_id in checks:
            result = host.result(check_id)
            row[check_id] = CELL.get(result.status, result.status) if result else "-"
        rows.append(row)
    headers = {c: SHORT.get(c, c) for c in checks}
    headers.update({"host": "HOST", "role": "ROLE", "status": "HOST STATUS"})
    return Table(["host", "role", "status", *checks], rows, title="Summary (host x check)",
                 headers=headers)


def findings_table(report: RunReport) -> Table:
    rows = [{"host": host, "check": f.check, "rule": f.rule, "severity": f.severity,
             "finding": f.message, "evidence": f.evidence} for host, f in report.findings()]
    return Table(["host", "check", "rule", "severity", "finding", "evidence"], rows,
                 title="Findings")


def reasons_table(report: RunReport) -> Table:
    rows = []
    for host in report.hosts:
        if not host.reachable:
            rows.append({"host": host.host, "check": "-", "status": host.status,
                         "reason": host.error})
        for r in host.results:
            if r.status in (NA, ERROR):
                rows.append({"host": host.host, "check": r.check, "status": r.status,
                             "reason": r.reason})
    return Table(["host", "check", "status", "reason"], rows, title="Not applicable / errors")


def check_result(report: RunReport, stored: str | None = None,
                 verbose: bool = False) -> Result:
    """The Result of ``opskit policy check``."""
    if report.profile:
        return profile_result(report, stored, verbose)
    tables = [summary_table(report), findings_table(report)]
    reasons = reasons_table(report)
    if reasons.rows:
        tables.append(reasons)
    if verbose:
        rows = [{"host": h.host, "check": r.check, "evidence": e}
                for h in report.hosts for r in h.results if r.status == PASS for e in r.evidence]
        tables.append(Table(["host", "check", "evidence"], rows, title="Evidence for passes"))
    messages = [report.summary()]
    legend = ", ".join(f"{SHORT.get(c, c)} = {c} ({s.rule})" for c, s in catalogue().items())
    messages.append(f"columns: {legend}")
    if stored:
        messages.append(f"stored as run {report.id} ({stored})")
    data = report.as_dict()
    return Result(data=data, tables=tables, messages=messages, summary=report.summary(),
                  exit_code=report.exit_code, title="opskit policy check",
                  suites=suites(report))


def _clause(spec) -> tuple[str, str]:
    """('8.1.4.1 a)', the requirement's words) from a spec's GB/T 22239 text."""
    words = spec.gbt.split()
    if words[:1] == ["GB/T"]:
        words = words[2:]
    number = words[0] if words else ""
    rest = words[1:]
    if rest and rest[0].endswith(")") and len(rest[0]) <= 3:
        number, rest = f"{number} {rest[0]}", rest[1:]
    return number, " ".join(rest)


def _detail(r) -> str:
    """What decided a result, for one cell: findings with evidence, the
    assessor's question, the n/a or error reason, or the pass evidence."""
    if r.status == FAIL:
        return "\n".join(f"{f.message} [{f.evidence}]" for f in r.findings)
    if r.status == MANUAL:
        return "QUESTION: " + r.reason + ("\n" + "; ".join(r.evidence) if r.evidence else "")
    if r.status in (NA, ERROR):
        return r.reason
    return "; ".join(r.evidence)


def profile_rows(report: RunReport) -> list[dict]:
    """One row per host and check, in catalogue (clause) order, for the
    assessor: clause, requirement, result, evidence, remediation."""
    specs = catalogue()
    rows = []
    for host in report.hosts:
        for r in host.results:
            spec = specs.get(r.check)
            clause, requirement = _clause(spec) if spec else ("", "")
            rows.append({"host": host.host, "clause": clause, "requirement": requirement,
                         "check": r.check, "title": spec.title if spec else "",
                         "rule": r.rule, "severity": r.severity,
                         "result": CELL.get(r.status, r.status), "evidence": _detail(r),
                         "remediation": spec.remediation if spec and r.status == FAIL else ""})
    return sorted(rows, key=lambda row: (row["host"], _clause_key(row["clause"])))


def _clause_key(clause: str) -> tuple:
    number, _, letter = clause.partition(" ")
    return tuple(int(p) if p.isdigit() else 0 for p in number.split(".")), letter


def profile_result(report: RunReport, stored: str | None, verbose: bool) -> Result:
    """``policy check --profile``: a check x host matrix, then per host the
    failures, manual questions, n/a and errors (with -v also the passes); the
    html format gives the assessor's per-host report (policy/profile.html)."""
    rows = profile_rows(report)
    hosts = [h.host for h in report.hosts]
    matrix = {}
    for row in rows:
        entry = matrix.setdefault(row["check"], {"clause": row["clause"], "check": row["check"]})
        entry[row["host"]] = row["result"]
    for host in report.hosts:
        if not host.reachable:
            for entry in matrix.values():
                entry[host.host] = host.status.upper()
    shown = [r for r in rows if verbose or r["result"] not in ("pass",)]
    tables = [Table(["clause", "check", *hosts], list(matrix.values()),
                    title=f"Summary (check x host), profile {report.profile}"),
              Table(["host", "clause", "check", "result", "severity", "evidence"], shown,
                    title="Results needing attention" if not verbose else "All results")]
    down = [{"host": h.host, "status": h.status, "reason": h.error} for h in report.hosts
            if not h.reachable]
    if down:
        tables.append(Table(["host", "status", "reason"], down, title="Unreachable hosts"))
    messages = [report.summary()]
    if stored:
        messages.append(f"stored as run {report.id} ({stored})")
    by_host = [{"host": h.host, "status": h.status, "error": h.error, "role": h.role,
                "counts": h.counts(), "rows": [r for r in rows if r["host"] == h.host]}
               for h in report.hosts]
    return Result(data=report.as_dict(), tables=tables, messages=messages,
                  summary=report.summary(), exit_code=report.exit_code,
                  title=f"opskit policy check --profile {report.profile}",
                  suites=suites(report), template="policy/profile.html",
                  context={"profile": report.profile, "by_host": by_host,
                           "started": report.started, "run_id": report.id})


def drift_result(old: RunReport | None, new: RunReport, changes: list[Change]) -> Result:
    if old is None:
        message = (f"no earlier stored run to compare with; run {new.id} stored as the "
                   "baseline")
        return Result(data={"previous": None, "current": new.id, "changes": []},
                      messages=[message], summary=message,
                      exit_code=3 if new.exit_code == 3 else 0)
    rows = [c.as_dict() for c in changes]
    summary = (f"policy drift since run {old.id}: {len(changes)} change(s) on "
               f"{len({c.host for c in changes})} host(s)")
    code = 1 if changes else 0
    if new.exit_code == 3:
        code = 3
    return Result(data={"previous": old.id, "current": new.id, "changes": rows},
                  tables=[Table(["host", "check", "change", "before", "after", "detail"], rows,
                                title=f"Changes since run {old.id} ({old.started})")],
                  messages=[summary], summary=summary, exit_code=code)


def catalogue_result(rows: list[dict], files: list[str] | None = None) -> Result:
    """The Result of ``opskit policy list``: one row per check, with where each
    setting came from when the policy ``files`` are given (in reading order)."""
    if files is None:
        return Result(data=rows, tables=[Table(["check", "rule", "severity", "title"], rows)],
                      summary=f"{len(rows)} checks")
    where = ", ".join(files) or "built-in defaults"
    return Result(data=rows, tables=[Table(["check", "rule", "severity", "title", "from"], rows)],
                  summary=f"{len(rows)} checks; policy files in reading order: {where}")


def suites(report: RunReport) -> list[Suite]:
    """One JUnit suite per host, one case per check (what ``--format junit`` prints):
    fail -> failure typed with the rule, n/a -> skipped, error or unreachable -> error,
    a pass carries its evidence."""
    out = []
    for host in report.hosts:
        suite = Suite(host.host, seconds=host.duration)
        if not host.reachable:
            suite.cases.append(Case("connect", "error", host.error or host.status,
                                    kind=host.status))
        for r in host.results if host.reachable else ():
            suite.cases.append(_case(r))
        out.append(suite)
    return out


def _case(r) -> Case:
    status = _JUNIT.get(r.status, "pass")
    if status == "fail":
        return Case(r.check, status, "; ".join(f.message for f in r.findings),
                    "\n".join(f"[{f.rule} {f.severity}] {f.message}\n  evidence: {f.evidence}"
                              for f in r.findings), r.rule, r.duration)
    if r.status == MANUAL:
        return Case(r.check, status, f"manual review: {r.reason}",
                    detail="\n".join(r.evidence), seconds=r.duration)
    if status in ("skip", "error"):
        return Case(r.check, status, r.reason, seconds=r.duration)
    return Case(r.check, status, detail="\n".join(r.evidence), seconds=r.duration)
