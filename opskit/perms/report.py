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
import html
import json
import os

from opskit.core.errors import EXIT_FINDINGS, EXIT_OK
from opskit.core.output import Result, Table, render_csv, render_table
from opskit.core.atomicfile import write_atomic
from opskit.core.state import ensure_private_dir

from .analysis import Analysis
from .findings import CHECKS, SEVERITIES
from .snapshot import Snapshot, canonical_bytes

FORMATS = ("table", "csv", "json", "html", "md")
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


def _grouped(findings: list[dict]) -> list[tuple[str, list[dict]]]:
    groups: dict[str, list[dict]] = {}
    for f in findings:
        groups.setdefault(f["rule"], []).append(f)
    return sorted(groups.items())


def _summary_rows(content: dict) -> list[dict]:
    rows = []
    for rule, items in _grouped(content["findings"]):
        row = {"rule": rule, "title": _RULE_TITLES.get(rule, ""), "findings": len(items)}
        for s in SEVERITIES:
            row[s] = sum(1 for f in items if f["severity"] == s)
        rows.append(row)
    return rows


def report_tables(content: dict) -> list[Table]:
    meta = [{"key": "snapshot", "value": content["snapshot"]},
            {"key": "snapshot_sha256", "value": content["snapshot_sha256"]},
            {"key": "generated", "value": content["generated"]},
            {"key": "sha256", "value": content["sha256"]},
            {"key": "findings", "value": content["summary"]["findings"]}]
    tables = [Table(["key", "value"], meta, title="Report"),
              Table(["rule", "title", "findings", *SEVERITIES], _summary_rows(content),
                    title="Summary by rule"),
              Table(FINDING_COLUMNS, content["findings"], title="Findings")]
    if content["warnings"]:
        tables.append(Table(["where", "warning"], content["warnings"], title="Warnings"))
    return tables


def render_report(content: dict, fmt: str) -> str:
    """``content`` (with its ``sha256``) in ``fmt``: table, csv, json, html or md."""
    if fmt == "json":
        # 'format' too, so this file alone carries every key a stored record has
        return json.dumps({**content, "format": "json"}, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return render_csv(report_tables(content))
    if fmt == "table":
        parts = [render_table(t) for t in report_tables(content)]
        return "\n\n".join(parts) + "\n"
    if fmt == "md":
        return _markdown(content)
    if fmt == "html":
        return _html(content)
    raise ValueError(fmt)


def _md(value) -> str:
    text = "-" if value is None else str(value)
    text = html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")
    for ch in ("`", "*", "_", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text


def _markdown(content: dict) -> str:
    s = content["summary"]
    out = ["# Permission report (opskit perms)", "",
           f"- Snapshot: `{content['snapshot']}` (taken {content['snapshot_created']})",
           f"- Snapshot SHA-256: `{content['snapshot_sha256']}`",
           f"- Generated: {content['generated']}",
           f"- Report SHA-256: `{content['sha256']}`",
           f"- Findings: **{s['findings']}** ("
           + ", ".join(f"{k} {v}" for k, v in s["by_severity"].items()) + ")",
           f"- Hosts: {s['hosts']}, databases: {s['databases']}"
           + (f"; not collected: {_md(', '.join(s['not_collected']))}"
              if s["not_collected"] else ""), "",
           "## Summary", "", "| Rule | Title | Findings | high | medium | low |",
           "|---|---|---|---|---|---|"]
    for r in _summary_rows(content):
        out.append(f"| {r['rule']} | {_md(r['title'])} | {r['findings']} | {r['high']} | "
                   f"{r['medium']} | {r['low']} |")
    for rule, items in _grouped(content["findings"]):
        out += ["", f"## {rule} {_md(_RULE_TITLES.get(rule, ''))}", "",
                "| Severity | Check | Person | Account | Where | Finding | Evidence |",
                "|---|---|---|---|---|---|---|"]
        for f in items:
            out.append("| " + " | ".join(_md(f[c]) for c in ("severity", "check", "person",
                                                             "account", "where", "message",
                                                             "evidence")) + " |")
    if content["warnings"]:
        out += ["", "## Warnings", ""]
        out += [f"- {_md(w['where'])}: {_md(w['warning'])}" for w in content["warnings"]]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",
sans-serif;margin:2em;color:#1d1d1f;background:#fff}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.ev{font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}
.high{color:#b00020;font-weight:bold}.medium{color:#a05a00}.low{color:#555}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dl.meta dt{font-weight:bold}dl.meta dd{margin:0;font-family:ui-monospace,monospace}
""".strip()


def _html(content: dict) -> str:
    e = lambda v: html.escape("-" if v is None else str(v), quote=True)  # noqa: E731
    s = content["summary"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
             "style-src 'unsafe-inline'\">",
             f"<title>Permission report {e(content['snapshot'])}</title>",
             f"<style>{_CSS}</style></head><body>",
             "<h1>Permission report (opskit perms)</h1>",
             '<dl class="meta">',
             f"<dt>Snapshot</dt><dd>{e(content['snapshot'])}</dd>",
             f"<dt>Snapshot taken</dt><dd>{e(content['snapshot_created'])}</dd>",
             f"<dt>Snapshot SHA-256</dt><dd>{e(content['snapshot_sha256'])}</dd>",
             f"<dt>Generated</dt><dd>{e(content['generated'])}</dd>",
             f"<dt>Report SHA-256</dt><dd>{e(content['sha256'])}</dd>",
             f"<dt>Hosts / databases</dt><dd>{e(s['hosts'])} / {e(s['databases'])}</dd>"]
    if s["not_collected"]:
        parts.append(f"<dt>Not collected</dt><dd>{e(', '.join(s['not_collected']))}</dd>")
    parts.append("</dl>")
    parts.append(f"<h2>Summary: {e(s['findings'])} finding(s)</h2>")
    parts.append("<table><tr><th>Rule</th><th>Title</th><th>Findings</th><th>high</th>"
                 "<th>medium</th><th>low</th></tr>")
    for r in _summary_rows(content):
        parts.append(f'<tr><td><a href="#{e(r["rule"])}">{e(r["rule"])}</a></td>'
                     f"<td>{e(r['title'])}</td><td>{e(r['findings'])}</td>"
                     f"<td>{e(r['high'])}</td><td>{e(r['medium'])}</td><td>{e(r['low'])}</td></tr>")
    parts.append("</table>")
    if not content["findings"]:
        parts.append("<p>No findings.</p>")
    for rule, items in _grouped(content["findings"]):
        parts.append(f'<h2 id="{e(rule)}">{e(rule)} {e(_RULE_TITLES.get(rule, ""))} '
                     f"({len(items)})</h2>")
        parts.append("<table><tr><th>Severity</th><th>Check</th><th>Person</th><th>Account</th>"
                     "<th>Where</th><th>Finding</th><th>Evidence</th></tr>")
        for f in items:
            sev = f["severity"] if f["severity"] in SEVERITIES else "low"
            parts.append(f'<tr><td class="{sev}">{e(f["severity"])}</td><td>{e(f["check"])}</td>'
                         f"<td>{e(f['person'])}</td><td>{e(f['account'])}</td>"
                         f"<td>{e(f['where'])}</td><td>{e(f['message'])}</td>"
                         f'<td class="ev">{e(f["evidence"])}</td></tr>')
        parts.append("</table>")
    if content["warnings"]:
        parts.append("<h2>Warnings</h2><ul>")
        parts += [f"<li>{e(w['where'])}: {e(w['warning'])}</li>" for w in content["warnings"]]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_report(analysis: Analysis, snap: Snapshot, fmt: str,
                 generated: str | None = None) -> tuple[dict, str]:
    """(content with its sha256, rendered text)."""
    generated = generated or _dt.datetime.now(_dt.timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z")
    content = report_content(analysis, snap, generated)
    content["sha256"] = content_sha256(content)
    return content, render_report(content, fmt)


def verify_content(record: dict) -> bool:
    """True when ``record`` (a stored report or a JSON report) matches its sha256."""
    body = {k: record[k] for k in ("snapshot", "snapshot_sha256", "snapshot_created",
                                   "generated", "summary", "findings", "warnings")}
    return content_sha256(body) == record.get("sha256")


def report_result(content: dict, stored: str) -> Result:
    s = content["summary"]
    summary = (f"perms report on snapshot {content['snapshot']}: {s['findings']} finding(s) "
               f"({', '.join(f'{k} {v}' for k, v in s['by_severity'].items())})")
    return Result(data=content, tables=report_tables(content),
                  messages=[summary, f"report sha256 {content['sha256']}",
                            f"stored as {stored}"], summary=summary,
                  exit_code=EXIT_FINDINGS if s["findings"] else EXIT_OK)


class ReportStore:
    """``<state_dir>/perms/reports``: ``<id>.json`` (the record the evidence pack
    reads: snapshot, generated, sha256, findings, format, ...) and ``<id>.<ext>``
    (the rendered report). Ids sort by time; the newest is the last."""

    def __init__(self, state_dir: str):
        self.dir = os.path.join(state_dir, "perms", "reports")

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


__all__ = ["FORMATS", "build_report", "render_report", "ReportStore", "verify_content",
           "report_result", "snapshot_result", "snapshots_result", "diff_result",
           "changes_result", "CHECKS"]
