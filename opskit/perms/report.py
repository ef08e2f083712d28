"""What people, auditors and tickets read: Results for the CLI, and the
auditor report in table, CSV, JSON, HTML and Markdown (R-AUD-2).

Every report carries the snapshot id (and the snapshot's SHA-256) and the
SHA-256 of its own content, where *content* is the canonical JSON
(sorted keys, no spaces, UTF-8) of::

    {"snapshot": ID, "snapshot_sha256": HEX, "generated": ISO-TIME,
     "summary": {...}, "findings": [...], "warnings": [...]}

so any format can be checked against the stored JSON record. CSV cells are
neutralised against formula injection (opskit.core.output.csv_safe); the
HTML page is self-contained (inline CSS, no scripts, no external resources)
and escapes every value; Markdown escapes table syntax and HTML.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os

from opskit.core.errors import EXIT_FINDINGS, EXIT_OK
from opskit.core.output import Result, Table, render_string
from opskit.core.atomicfile import write_atomic
from opskit.core.gcpause import paused_gc
from opskit.core.state import StateLayout, ensure_private_dir

from .analysis import Analysis
from .findings import CHECKS, SEVERITIES
from .snapshot import Snapshot, canonical_bytes

FORMATS = ("table", "csv", "json", "html", "md")     # what 'perms report' offers
EXTENSIONS = {"table": "txt", "csv": "csv", "json": "json", "html": "html", "md": "md"}
FINDING_COLUMNS = ["rule", "severity", "check", "person", "account", "where", "message",
                   "evidence"]
_RULE_TITLES = {
    "R-ACC-1": "Users and permissions set by a designated person only",
    "R-ACC-2": "Separation of duties",
    "R-ACC-3": "Permissions applied as requested and approved",
    "R-ACC-4": "Least privilege",
    "R-ACC-5": "Four tiers; special operations with mutual review",
    "R-ACC-6": "Freeze accounts before departure or transfer",
    "R-ACC-8": "Every post has a backup person (AB岗)",
    "R-AUD-2": "Periodic security audits",
    "R-AUD-3": "Operations traceable to a person",
}


# --- snapshot / snapshots / diff --------------------------------------------------------

def snapshot_result(snap: Snapshot, path: str) -> Result:
    rows = [{"name": h["name"], "kind": "host", "status": h["status"],
             "accounts": len((h.get("data") or {}).get("accounts", {})),
             "warnings": len((h.get("data") or {}).get("warnings", [])),
             "error": h.get("error")} for h in snap.hosts]
    rows += [{"name": d["name"], "kind": "database", "status": d["status"],
              "accounts": len((d.get("data") or {}).get("roles", {})),
              "warnings": len((d.get("data") or {}).get("warnings", [])),
              "error": d.get("error")} for d in snap.databases]
    failed = snap.failed()
    summary = (f"perms snapshot {snap.id}: {len(snap.hosts)} host(s), {len(snap.databases)} "
               f"database(s)" + (f"; not collected: {', '.join(failed)}" if failed else ""))
    warn = Table(["where", "warning"], [{"where": w, "warning": t} for w, t in snap.warnings()],
                 title="Warnings")
    tables = [Table(["name", "kind", "status", "accounts", "warnings", "error"], rows,
                    title="Collected")]
    if warn.rows:
        tables.append(warn)
    return Result(data={"id": snap.id, "sha256": snap.sha256, "created": snap.created,
                        "path": path, "failed": failed, "items": rows,
                        "warnings": [{"where": w, "warning": t} for w, t in snap.warnings()]},
                  tables=tables, messages=[f"snapshot {snap.id}", f"sha256 {snap.sha256}",
                                           f"stored as {path}"],
                  summary=summary, exit_code=3 if failed else EXIT_OK)


def snapshots_result(metas: list[dict]) -> Result:
    rows = [{"id": m["id"], "created": m.get("created"), "hosts": len(m.get("hosts", [])),
             "databases": len(m.get("databases", [])),
             "failed": ", ".join(m.get("failed", [])) or "-",
             "sha256": (m.get("sha256") or "")[:16]} for m in metas]
    return Result(data=metas, tables=[Table(["id", "created", "hosts", "databases", "failed",
                                             "sha256"], rows, title="Stored snapshots")],
                  summary=f"{len(metas)} stored snapshot(s)")


def diff_result(analysis: Analysis, snap: Snapshot, person: str | None) -> Result:
    rows = [r.as_dict() for r in analysis.diff]
    who = f" for {person}" if person else ""
    summary = (f"declared vs actual{who} (snapshot {snap.id}): {len(rows)} difference(s)"
               f" ({sum(r['change'] == 'extra' for r in rows)} extra, "
               f"{sum(r['change'] == 'missing' for r in rows)} missing)")
    failed = snap.failed()
    messages = [summary]
    if failed:
        messages.append(f"not collected (not compared): {', '.join(failed)}")
    return Result(data={"snapshot": snap.id, "snapshot_sha256": snap.sha256, "person": person,
                        "differences": rows, "not_collected": failed},
                  tables=[Table(["person", "account", "where", "kind", "item", "change",
                                 "evidence"], rows, title="Declared vs actual")],
                  messages=messages, summary=summary,
                  exit_code=EXIT_FINDINGS if rows or failed else EXIT_OK)


def changes_result(old: Snapshot, new: Snapshot, rows, notes, person: str | None) -> Result:
    data = [r.as_dict() for r in rows]
    who = f" for {person}" if person else ""
    people = {r["person"] or r["account"] for r in data}
    summary = (f"changes{who} from snapshot {old.id} to {new.id}: {len(data)} change(s) "
               f"for {len(people)} account(s)")
    return Result(data={"from": old.id, "to": new.id, "person": person, "changes": data,
                        "notes": notes},
                  tables=[Table(["person", "account", "where", "kind", "item", "change",
                                 "before", "after"], data,
                                title=f"Changes {old.created} -> {new.created}")],
                  messages=[summary, *notes], summary=summary,
                  exit_code=EXIT_FINDINGS if data else EXIT_OK)


# --- the auditor report -------------------------------------------------------------------

def report_content(analysis: Analysis, snap: Snapshot, generated: str) -> dict:
    findings = [f.as_dict() for f in analysis.findings]
    by_rule: dict[str, int] = {}
    for f in findings:
        by_rule[f["rule"]] = by_rule.get(f["rule"], 0) + 1
    summary = {"findings": len(findings), "by_severity": analysis.counts(),
               "by_rule": dict(sorted(by_rule.items())),
               "hosts": len(snap.hosts), "databases": len(snap.databases),
               "not_collected": snap.failed()}
    return {"snapshot": snap.id, "snapshot_sha256": snap.sha256,
            "snapshot_created": snap.created, "generated": generated, "summary": summary,
            "findings": findings,
            "warnings": [{"where": w, "warning": t} for w, t in analysis.warnings]}


def content_sha256(content: dict) -> str:
    return hashlib.sha256(canonical_bytes(content)).hexdigest()


def _summary_rows(content: dict) -> list[dict]:
    rows = []
    for rule, items in Table(FINDING_COLUMNS, content["findings"], group_by="rule").groups():
        row = {"rule": rule, "title": _RULE_TITLES.get(rule, ""), "findings": len(items)}
        for s in SEVERITIES:
            row[s] = sum(1 for f in items if f["severity"] == s)
        rows.append(row)
    return rows


def report_tables(content: dict) -> list[Table]:
    """Report facts, the summary by rule, the findings (a section per rule in
    documents) and the warnings."""
    s = content["summary"]
    meta = [{"key": "snapshot", "value": content["snapshot"]},
            {"key": "snapshot_created", "value": content["snapshot_created"]},
            {"key": "snapshot_sha256", "value": content["snapshot_sha256"]},
            {"key": "generated", "value": content["generated"]},
            {"key": "sha256", "value": content["sha256"]},
            {"key": "findings", "value": s["findings"]},
            {"key": "hosts", "value": s["hosts"]},
            {"key": "databases", "value": s["databases"]}]
    if s["not_collected"]:
        meta.append({"key": "not_collected", "value": ", ".join(s["not_collected"])})
    tables = [Table(["key", "value"], meta, title="Report"),
              Table(["rule", "title", "findings", *SEVERITIES], _summary_rows(content),
                    title="Summary by rule"),
              Table(FINDING_COLUMNS, content["findings"], title="Findings", group_by="rule",
                    group_titles=_RULE_TITLES)]
    if content["warnings"]:
        tables.append(Table(["where", "warning"], content["warnings"], title="Warnings"))
    return tables


def report_result(content: dict) -> Result:
    """The auditor report (``content`` with its sha256) as a Result: the same
    content in every format; HTML is perms/templates/report.html."""
    s = content["summary"]
    summary = (f"perms report on snapshot {content['snapshot']}: {s['findings']} finding(s) "
               f"({', '.join(f'{k} {v}' for k, v in s['by_severity'].items())})")
    # 'format' in the JSON too, so that file alone carries every key a stored record has
    return Result(data={**content, "format": "json"}, tables=report_tables(content),
                  summary=summary, title="Permission report (opskit perms)",
                  template="perms/report.html", main="findings",
                  context={"rule_titles": _RULE_TITLES, "severities": SEVERITIES,
                           "summary_rows": _summary_rows(content)},
                  exit_code=EXIT_FINDINGS if s["findings"] else EXIT_OK)


def build_report(analysis: Analysis, snap: Snapshot, fmt: str,
                 generated: str | None = None) -> tuple[dict, str]:
    """(content with its sha256, rendered text)."""
    generated = generated or _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z")
    with paused_gc():       # ~10^5 cells and strings, no cycles (core.gcpause)
        content = report_content(analysis, snap, generated)
        content["sha256"] = content_sha256(content)
        return content, render_string(report_result(content), fmt)


def verify_content(record: dict) -> bool:
    """True when ``record`` (a stored report or a JSON report) matches its sha256."""
    body = {k: record[k] for k in ("snapshot", "snapshot_sha256", "snapshot_created",
                                   "generated", "summary", "findings", "warnings")}
    return content_sha256(body) == record.get("sha256")


class ReportStore:
    """``<state_dir>/perms/reports``: ``<id>.json`` (the record the evidence pack
    reads: snapshot, generated, sha256, findings, format, ...) and ``<id>.<ext>``
    (the rendered report). Ids sort by time; the newest is the last."""

    def __init__(self, state_dir: str):
        self.dir = StateLayout(state_dir).perms_reports

    def _write(self, name: str, data: bytes) -> str:
        return write_atomic(os.path.join(self.dir, name), data)

    def save(self, content: dict, fmt: str, rendered: str) -> str:
        ensure_private_dir(os.path.dirname(self.dir))
        ensure_private_dir(self.dir)
        when = _dt.datetime.now(_dt.timezone.utc)
        rid = (when.strftime("%Y%m%dT%H%M%S") + f"{when.microsecond // 1000:03d}Z-"
               + content["sha256"][:12])
        data = rendered.encode("utf-8")
        rendered_name = f"{rid}.{EXTENSIONS[fmt]}"
        if fmt == "json":
            rendered_name = f"{rid}.report.json"
        self._write(rendered_name, data)
        record = {"report_id": rid, "format": fmt, "rendered": rendered_name,
                  "rendered_sha256": hashlib.sha256(data).hexdigest(), **content}
        return self._write(f"{rid}.json", json.dumps(record, indent=1,
                                                     ensure_ascii=False).encode("utf-8"))

    def records(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(".json") and not n.endswith(".report.json")
                      and not n.startswith("."))


__all__ = ["FORMATS", "build_report", "report_result", "ReportStore", "verify_content",
           "snapshot_result", "snapshots_result", "diff_result",
           "changes_result", "CHECKS"]
