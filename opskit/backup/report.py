"""What people, cron and auditors read about backups: the Result of every
``opskit backup`` command, and the restore-drill report (JSON for machines,
Markdown for people, written by the output registry's 'md' format)."""
from __future__ import annotations

import datetime as dt
import json
import os

from opskit.core.errors import EXIT_FINDINGS
from opskit.core.output import Result, Table, human_bytes, render_string

from .drill import DrillReport, Targets, drills_dir
from .fullness import is_full


def _failed_lines(errors: list[dict], limit: int = 50) -> list[str]:
    return [f"  error: {e['path']}: {e['error']}" for e in errors[:limit]]


def init_result(location: str, repo_id: str) -> Result:
    """A new repository."""
    return Result(data={"repository": location, "id": repo_id},
                  messages=[f"created repository {repo_id[:12]} at {location}",
                            "Keep the passphrase safe: without it the backups cannot be "
                            "restored."],
                  summary=f"created repository {repo_id[:12]} at {location}")


def run_result(sid: str, snap: dict, st, location: str, roots: list[str], full: bool) -> Result:
    """A backup run: what was saved; exit 1 when files could not be read."""
    summary = (f"snapshot {sid[:8]} saved: {st.files} files, {human_bytes(st.bytes)} "
               f"({st.files_new} new, {st.files_changed} changed, {st.files_unmodified} "
               f"unchanged), added {human_bytes(st.bytes_added)} -> "
               f"{human_bytes(st.bytes_stored)} stored, {st.duration_s:.1f}s"
               + (f", {len(st.errors)} errors" if st.errors else ""))
    messages = [summary, *_failed_lines(st.errors)]
    if len(st.errors) > 50:
        messages.append(f"  ... and {len(st.errors) - 50} more")
    return Result(data={"snapshot": sid, "repository": location, "paths": roots,
                        "parent": snap.get("parent"), "full": full, "tags": snap["tags"],
                        "stats": st.to_json(), "errors": st.errors},
                  messages=messages, summary=summary,
                  exit_code=EXIT_FINDINGS if st.errors else 0)


def backup_plan_result(plan, location: str, roots: list[str], full: bool, parent: str | None,
                       verbose: bool) -> Result:
    """``backup run --dry-run``: what would be read; nothing was written."""
    summary = (f"dry run: would back up {len(plan.new) + len(plan.changed) + plan.unchanged} "
               f"files ({human_bytes(plan.bytes_total)}) to {location}: read "
               f"{len(plan.new)} new and {len(plan.changed)} changed "
               f"({human_bytes(plan.bytes_to_read)}), trust {plan.unchanged} unchanged"
               + (" (--full: every file read)" if full else "")
               + (f"; {plan.excluded} excluded" if plan.excluded else "")
               + (f"; {len(plan.unreadable)} unreadable" if plan.unreadable else ""))
    rows = ([{"action": "new", "path": p} for p in plan.new]
            + [{"action": "changed", "path": p} for p in plan.changed]) if verbose else []
    return Result(data={"dry_run": True, "repository": location, "paths": roots, "full": full,
                        "parent": parent, "new": plan.new, "changed": plan.changed,
                        "unchanged": plan.unchanged, "bytes_to_read": plan.bytes_to_read,
                        "bytes_total": plan.bytes_total, "excluded": plan.excluded,
                        "unreadable": plan.unreadable},
                  tables=[Table(["action", "path"], rows)] if rows else [],
                  messages=[summary, *(f"  cannot read {p}" for p in plan.unreadable[:50])],
                  summary=summary, exit_code=EXIT_FINDINGS if plan.unreadable else 0)


def snapshots_result(snaps: list[dict], damaged: list[str]) -> Result:
    """Snapshots, oldest first; exit 1 when a snapshot file is damaged."""
    rows = [{"id": s["id"][:8], "time": s["time"], "host": s.get("host"),
             "paths": s.get("paths"), "tags": s.get("tags"), "full": is_full(s),
             "files": s.get("stats", {}).get("files"),
             "size": s.get("stats", {}).get("bytes", 0)} for s in snaps]
    messages = [f"warning: snapshot file snapshots/{sid} is damaged and was left out "
                "(run 'opskit backup check')" for sid in damaged]
    return Result(data=snaps, tables=[Table(["id", "time", "host", "paths", "tags", "full",
                                             "files", "size"], rows,
                                            kinds={"time": "time", "size": "bytes"})],
                  messages=messages, summary=f"{len(snaps)} snapshots",
                  exit_code=EXIT_FINDINGS if damaged else 0)


def ls_row(e: dict) -> dict:
    """One entry as ``ls -l`` shows it: owner and group by name, else by id;
    a symlink's ``-> target``. A device's major, minor stay in JSON: the size
    column holds bytes only, so CSV stays numeric (issue #22 item 6)."""
    path = e["path"] + (f" -> {e['target']}" if e.get("target") is not None else "")
    return {"mode": e["mode_text"], "owner": e["user"] or e["uid"],
            "group": e["group"] or e["gid"], "size": e["size"], "mtime": e["mtime"], "path": path}


def ls_result(rows: list[dict]) -> Result:
    """Entries of a snapshot (opskit.backup.listing): JSON keeps the typed
    fields, the table reads like ``ls -l`` (issue #22 item 8)."""
    table = Table(["mode", "owner", "group", "size", "mtime", "path"], [ls_row(e) for e in rows],
                  kinds={"size": "bytes", "mtime": "minute"})
    return Result(data=rows, tables=[table], summary=f"{len(rows)} entries")


def restore_result(snap: dict, target: str, stats, held: list[str] | None = None) -> Result:
    """A restore: what was written where; exit 1 when entries failed or protected
    files were held back."""
    held = held or []
    summary = (f"restored snapshot {snap['id'][:8]} to {target}: {stats.files} files, "
               f"{stats.dirs} dirs, {stats.symlinks} symlinks, {human_bytes(stats.bytes)}"
               + (f", {len(stats.errors)} errors" if stats.errors else "")
               + (f", {len(held)} protected files not replaced" if held else ""))
    notes = [f"not replaced (name it with --include to restore it): {p}" for p in held]
    return Result(data={"snapshot": snap["id"], "target": target, **stats.to_json(),
                        "held": held},
                  messages=[summary, *_failed_lines(stats.errors), *notes], summary=summary,
                  exit_code=EXIT_FINDINGS if stats.errors or held else 0)


def restore_plan_result(snap: dict, target: str, plan) -> Result:
    """``restore --dry-run``: what the restore would create, replace or hold back."""
    rows = ([{"action": "replace", "path": p} for p in plan.replace]
            + [{"action": "hold (protected)", "path": p} for p in plan.held]
            + [{"action": "create", "path": p} for p in plan.create])
    summary = (f"restore of {snap['id'][:8]} to {target} would create {len(plan.create)}, "
               f"replace {len(plan.replace)}, leave {len(plan.unchanged)} unchanged"
               + (f" and hold back {len(plan.held)} protected file(s)" if plan.held else ""))
    return Result(data={"snapshot": snap["id"], "target": target, "create": plan.create,
                        "replace": plan.replace, "unchanged": plan.unchanged, "held": plan.held},
                  tables=[Table(["action", "path"], rows)], messages=[summary], summary=summary)


def check_result(report, fraction: float) -> Result:
    """Repository check: every problem with the snapshots it hits; exit 1 on errors."""
    rows = [{"severity": "error", **e} for e in report.errors] + \
           [{"severity": "warning", "snapshots": [], **w} for w in report.warnings]
    verdict = "no errors found" if report.ok else f"{len(report.errors)} errors found"
    summary = (f"check: {report.snapshots} snapshots, {report.trees} trees, {report.packs} packs"
               + (f", {report.packs_read} packs read ({human_bytes(report.bytes_read)})"
                  if fraction else "") + f": {verdict}")
    return Result(data=report.to_json(),
                  tables=[Table(["severity", "object", "problem", "snapshots"], rows)]
                  if rows else [],
                  messages=[summary], summary=summary,
                  exit_code=0 if report.ok else EXIT_FINDINGS)


def diff_result(a: dict, b: dict, diff) -> Result:
    """What changed between two snapshots."""
    summary = (f"{a['id'][:8]} -> {b['id'][:8]}: {diff.added} added, {diff.removed} removed, "
               f"{diff.modified} modified, {diff.metadata} metadata only")
    return Result(data={"from": a["id"], "to": b["id"], "changes": diff.changes,
                        "added": diff.added, "removed": diff.removed,
                        "modified": diff.modified, "metadata": diff.metadata},
                  tables=[Table(["change", "path", "type"], diff.changes)],
                  messages=[summary], summary=summary)


def unlock_result(removed: list, remaining: list) -> Result:
    """Locks removed and how many remain."""
    rows = [{"lock": lk.id[:12], "holder": lk.describe(), "why": lk.why_stale or "--all"}
            for lk in removed]
    summary = f"removed {len(removed)} lock(s), {len(remaining)} remain"
    return Result(data={"removed": [lk.__dict__ for lk in removed],
                        "remaining": [lk.__dict__ for lk in remaining]},
                  tables=[Table(["lock", "holder", "why"], rows)], messages=[summary],
                  summary=summary)


def decision_row(d) -> dict:
    """One retention decision as a row of ``forget``."""
    s = d.snapshot
    return {"id": s["id"][:8], "time": s["time"], "host": s.get("host"), "paths": s.get("paths"),
            "action": "keep" if d.keep else "forget", "reasons": ", ".join(d.reasons)}


def forget_result(rows: list[dict], forgotten: list[str], locked: list[dict], dry_run: bool,
                  source: str) -> Result:
    """Retention decisions and what was (or would be) forgotten."""
    verb = "would forget" if dry_run else "forgot"
    summary = f"{verb} {len(forgotten)} of {len(rows)} snapshots (policy from {source})"
    if locked:
        summary += (f"; {len(locked)} kept: still under Object Lock retention "
                    "(forget again after it expires)")
    return Result(data={"dry_run": dry_run, "forgotten": forgotten, "decisions": rows,
                        "kept_under_retention": locked},
                  tables=[Table(["id", "time", "host", "paths", "action", "reasons"], rows,
                                kinds={"time": "time"})],
                  messages=[summary], summary=summary)


def prune_result(p, done: dict | None, dry_run: bool) -> Result:
    """The prune plan and, unless a dry run, what was done."""
    verb = "would free" if dry_run else "freed"
    summary = (f"prune: {len(p.packs_delete) + len(p.unindexed_delete)} packs to delete, "
               f"{len(p.packs_repack)} to repack, {p.packs_keep} kept; {verb} about "
               f"{human_bytes(p.bytes_freed)} of {human_bytes(p.bytes_total)}")
    locked = (done or {}).get("kept_under_retention") or []
    if locked:
        summary += (f"; {len(locked)} object(s) kept: still under Object Lock retention "
                    "(they go on a later prune once it expires)")
    return Result(data={"dry_run": dry_run, "plan": p.to_json(), "done": done},
                  messages=[summary], summary=summary)


# --- keys -------------------------------------------------------------------------------

def key_list_result(slots: list) -> Result:
    """Key slots; the one unlocked with is marked current."""
    rows = [{"id": s.id[:12], "kind": s.kind, "created": s.created, "host": s.host,
             "user": s.user, "current": s.current} for s in slots]
    return Result(data=[s.__dict__ for s in slots],
                  tables=[Table(["id", "kind", "created", "host", "user", "current"], rows)],
                  summary=f"{len(slots)} key slots")


def key_step_result(data: dict, message: str) -> Result:
    """A key slot added, removed, rewrapped or imported: one line."""
    return Result(data=data, messages=[message], summary=message)


# --- repair (#28 item 3) ----------------------------------------------------------------

def repair_index_result(rep, dry_run: bool) -> Result:
    """The index rebuilt from pack headers; exit 1 when a pack header was unreadable."""
    rows = [{"object": d["object"], "finding": "damaged index file", "problem": d["problem"]}
            for d in rep.damaged_index]
    rows += [{"object": d["object"], "finding": "pack header unreadable: data lost",
              "problem": d["problem"]} for d in rep.unreadable_packs]
    verb = "would rebuild" if dry_run else "rebuilt"
    summary = (f"repair index: {verb} the index from {rep.packs} packs ({rep.blobs} blobs), "
               f"replacing {rep.index_files} index file(s), {len(rep.damaged_index)} of them "
               f"damaged; {len(rep.unreadable_packs)} pack(s) unreadable")
    messages = [summary]
    if rep.unreadable_packs:
        messages.append("next: 'opskit backup repair snapshots' (snapshots needing the lost "
                        "packs are rewritten without those files)")
    return Result(data=rep.to_json(),
                  tables=[Table(["object", "finding", "problem"], rows)] if rows else [],
                  messages=messages, summary=summary,
                  exit_code=EXIT_FINDINGS if rep.unreadable_packs else 0)


def repair_snapshots_result(rep, dry_run: bool) -> Result:
    """Snapshots rewritten without lost data or dropped; exit 1 when anything was lost."""
    rows = [{"snapshot": e["snapshot"][:12], "action": "rewrite",
             "new": (e["new"] or "-")[:12], "detail": f"{len(e['lost'])} path(s) left out: "
             + ", ".join(e["lost"][:5])} for e in rep.rewritten]
    rows += [{"snapshot": d["snapshot"][:12], "action": "drop", "new": "-",
              "detail": d["problem"]} for d in rep.dropped]
    verb = "would rewrite" if dry_run else "rewrote"
    summary = (f"repair snapshots: {rep.snapshots} snapshots, {rep.intact} intact, {verb} "
               f"{len(rep.rewritten)}, {'would drop' if dry_run else 'dropped'} "
               f"{len(rep.dropped)}")
    return Result(data=rep.to_json(),
                  tables=[Table(["snapshot", "action", "new", "detail"], rows)] if rows else [],
                  messages=[summary], summary=summary,
                  exit_code=EXIT_FINDINGS if rows else 0)


# --- off-site copies ----------------------------------------------------------------------

def replicated_row(site: str, res) -> dict:
    """One site's replication outcome."""
    problems = []
    if res.source_damaged:
        problems.append(f"{len(res.source_damaged)} damaged local object(s) not sent")
    if res.held_back:
        problems.append(f"{len(res.held_back)} index/snapshot object(s) held back")
    if res.conflicts:
        problems.append(f"{len(res.conflicts)} WAL file(s) differ on the site, not replaced")
    status = "; ".join(problems) or "ok"
    return {"site": site, "sent": res.sent_objects, "bytes": res.sent_bytes,
            "already there": res.already_there, "objects": res.total_objects, "status": status}


def failed_row(site: str, error: str) -> dict:
    """A site replication could not reach or finish."""
    return {"site": site, "sent": None, "bytes": None, "already there": None, "objects": None,
            "status": "FAILED: " + error}


def replicate_result(rows: list[dict], results: list[dict], failures: list[str],
                     show_table: bool) -> Result:
    """Replication to every site: exit 3 when a site failed, 1 on damaged objects."""
    summary = "; ".join(
        f"{r['site']}: " + (r["status"] if str(r["status"]).startswith("FAILED") else
                            f"sent {r['sent']} objects ({human_bytes(r['bytes'])}), {r['objects']} on site")
        for r in rows)
    damaged = [n for r in results for n in r["source_damaged"]]
    messages = [f"replicate: {summary}"]
    if damaged:
        messages.append("damaged local objects (run 'opskit backup check --read-data'): "
                        + ", ".join(damaged))
    held = sum(len(r["held_back"]) for r in results)
    if held:    # an index/snapshot needing a pack the site lacks is not sent (#28 item 5)
        messages.append(f"{held} index/snapshot object(s) held back: they may need a damaged "
                        "pack the site lacks; repair the local repository ('opskit backup "
                        "repair index', 'repair snapshots'; docs/backup.md) and replicate again")
    # R-BAK-3: a WAL file is never overwritten on a site; the admin decides which is right
    conflicts = [f"{r['site']}: {c['object']}" for r in results for c in r.get("conflicts", [])]
    if conflicts:
        messages.append("WAL files that differ on the site (not replaced): "
                        + ", ".join(conflicts))
    return Result(data={"sites": results, "failures": failures},
                  tables=[Table(["site", "sent", "bytes", "already there", "objects", "status"],
                                rows, kinds={"bytes": "bytes"})] if show_table else [],
                  messages=messages, summary=f"replicate: {summary}",
                  exit_code=3 if failures else (EXIT_FINDINGS if damaged or conflicts else 0))


def hours_between(a: str | None, b: str | None, digits: int | None = 1):
    """Hours from ISO time ``a`` to ``b`` (None when either is missing)."""
    if not a or not b:
        return None
    when = lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    hours = max(0.0, (when(b) - when(a)).total_seconds() / 3600)
    return hours if digits is None else round(hours, digits)


def site_row(name: str, site, st: dict, local_ids: list[str], times: dict[str, str],
             now: str) -> tuple[dict, bool]:
    """One off-site copy's state (from what replicate/check-site recorded) and
    whether its RPO is breached."""
    on_site = set(st.get("snapshot_ids", []))
    site_times = [times[s] for s in on_site if s in times]
    newest = max(site_times, default=None)
    newest_id = max(((times[s], s) for s in on_site if s in times), default=(None, None))[1]
    lag_h = hours_between(newest, max(times.values(), default=None)) if times else None
    if newest is None and on_site and not times:
        newest_txt = f"{len(on_site)} snapshots"
    else:
        newest_txt = f"{newest_id[:8]} {newest[:16].replace('T', ' ')}" if newest else "-"
    status = ("last run failed: " + st["last_error"]) if st.get("last_error") else \
        "never replicated" if not st.get("last_replicated") else "ok"
    if st.get("damaged"):
        status = f"{len(st['damaged'])} damaged/missing object(s): replicate again"
    age = hours_between(newest, now, None) if newest else None
    breached = site.rpo_hours is not None and (age is None or age > site.rpo_hours)
    if breached:
        status = f"RPO {site.rpo_hours:g}h breached; " + status
    return {"site": name, "url": site.url, "newest snapshot": newest_txt,
            "lag snapshots": sum(1 for sid in local_ids if sid not in on_site),
            "lag hours": lag_h, "objects": st.get("objects", 0),
            "bytes": st.get("bytes", 0),
            "last replicated": (st.get("last_replicated") or "never"),
            "last verified": (st.get("last_verified") or "never")
            + ("" if st.get("last_check_ok", True) else " (FAILED)"),
            "rto minutes": site.rto_minutes,
            "status": status}, breached


def sites_result(rows: list[dict], breached: list[str]) -> Result:
    """Every off-site copy; exit 1 when an RPO is breached."""
    summary = f"{len(rows)} site(s)" + (f", RPO breached: {', '.join(breached)}"
                                        if breached else "")
    return Result(data=rows, tables=[Table(list(rows[0]) if rows else ["site"], rows,
                                           kinds={"bytes": "bytes"})],
                  summary=summary, messages=[] if rows else ["no sites configured"],
                  exit_code=EXIT_FINDINGS if breached else 0)


def check_site_result(site: str, report) -> Result:
    """An off-site copy verified: objects read, problems; exit 1 on errors."""
    verdict = "no errors found" if report.ok else f"{len(report.errors)} errors found"
    if not report.index_checked:
        verdict += " (index -> pack presence not checked: no passphrase given)"
    summary = (f"check-site {site}: {report.objects} objects, {report.objects_read} read "
               f"({human_bytes(report.bytes_read)}), {report.packs_read}/{report.packs} packs "
               f"re-hashed, {report.not_yet_replicated} not yet replicated: {verdict}")
    return Result(data=report.to_json(),
                  tables=[Table(["object", "problem"], report.errors)] if report.errors else [],
                  messages=[summary], summary=summary,
                  exit_code=0 if report.ok else EXIT_FINDINGS)


# --- restore drills (R-BAK-5) ---------------------------------------------------------------

def drill_result(report: DrillReport, targets: Targets, json_path: str, md_path: str) -> Result:
    """A drill as the CLI shows it; exit 1 unless it passed."""
    summary = (f"drill {report.verdict}: site {report.site}, snapshot {report.snapshot[:8]}, "
               f"{report.files_verified}/{report.files_total} files "
               f"({human_bytes(report.bytes_verified)}) verified in "
               f"{report.restore_seconds:.1f}s; RTO {report.full_restore_estimate_s:.0f}s "
               f"(target {targets.rto_minutes:g} min), RPO {report.rpo_hours:.1f}h "
               f"(target {targets.rpo_hours:g} h)")
    return drill_report_result(report, summary, json_path, md_path)


def drill_report_result(report, summary: str, json_path: str, md_path: str) -> Result:
    """What every drill (files or database) shows: the summary, where the report is,
    the failures; exit 1 unless it passed."""
    messages = [summary, f"report: {md_path}"]
    messages += [f"  failed: {f['path']}: {f['problem']}" for f in report.failures[:50]]
    return Result(data={**report.to_json(), "report_json": json_path, "report_md": md_path},
                  messages=messages, summary=summary,
                  exit_code=0 if report.passed else EXIT_FINDINGS)


def drill_history_result(drills: list[dict]) -> Result:
    """Past drills, oldest first."""
    rows = [{"time": d.get("time"), "site": d.get("site"),
             "snapshot": str(d.get("snapshot"))[:8], "sample": f"{d.get('sample_pct', 0):g}%",
             "files": d.get("files_verified"), "rto_s": d.get("full_restore_estimate_s"),
             "rpo_h": d.get("rpo_hours"), "verdict": d.get("verdict"), "by": d.get("operator")}
            for d in drills]
    return Result(data=drills,
                  tables=[Table(["time", "site", "snapshot", "sample", "files", "rto_s", "rpo_h",
                                 "verdict", "by"], rows,
                                headers={"rto_s": "RTO (S)", "rpo_h": "RPO (H)"})],
                  summary=f"{len(rows)} drills on record")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def drill_document(r: DrillReport) -> Result:
    """The drill report people read (rendered as Markdown beside the JSON)."""
    how = "measured" if r.sample_pct >= 100 else "extrapolated"
    items = [
        ("site", f"{r.site} ({r.repository})"),
        ("snapshot", f"{r.snapshot[:12]} taken {r.snapshot_time}"),
        ("run by", f"{r.operator} on {r.host}"),
        ("sample", f"{r.sample_pct:g}% : {r.files_verified} of {r.files_total} files verified, "
                   f"{r.bytes_verified} of {r.bytes_total} bytes"),
        ("restore time", f"{r.restore_seconds:.2f} s at {r.throughput_mib_s} MiB/s"),
        (f"RTO (full restore, {how})", f"{r.full_restore_estimate_s:.1f} s, target "
                                       f"{r.rto_target_minutes:g} min: {_met(r.rto_ok)}"),
        ("RPO (age of the verified snapshot)", f"{r.rpo_hours:.2f} h, target "
                                               f"{r.rpo_target_hours:g} h: {_met(r.rpo_ok)}"),
        ("compared with live source", f"{r.compared_with_source} files, "
                                      f"{len(r.changed_since_snapshot)} changed since the snapshot"),
    ]
    tables = [Table(["item", "value"], [{"item": k, "value": v} for k, v in items])]
    if r.failures:
        tables.append(Table(["path", "problem"], r.failures, title="Failures"))
    if r.changed_since_snapshot:
        tables.append(Table(["path", "change"], r.changed_since_snapshot[:200],
                            title="Changed since the snapshot (not failures)"))
    return Result(title=f"Restore drill {r.time} — {r.verdict}", tables=tables,
                  summary="R-BAK-5 (disaster-recovery drill), R-BAK-2 (recoverable after an "
                          "incident).")


def write_drill_report(state_dir: str, report: DrillReport) -> tuple[str, str]:
    """Write ``<time>-<site>-<snapshot>.json`` and ``.md`` (mode 0600); both paths."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")  # unique, sortable
    base = os.path.join(drills_dir(state_dir), f"{stamp}-{report.site}-{report.snapshot[:8]}")
    data = json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    for path, text in ((base + ".json", data),
                       (base + ".md", render_string(drill_document(report), "md"))):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return base + ".json", base + ".md"
