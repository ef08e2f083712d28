"""The Results of ``opskit backup db ...`` (rendered by the CLI, fed to the audit log)."""
from __future__ import annotations

from opskit.core.errors import EXIT_FINDINGS
from opskit.core.output import Result, Table, human_bytes

from ..report import drill_report_result


def run_result(done: list[tuple[str, dict]], failures: list[str]) -> Result:
    """Database backups made; exit 3 when one failed (the others are kept), 1 on warnings."""
    rows, data = [], []
    warnings = []
    for sid, snap in done:
        db = snap.get("database") or {}
        st = snap["stats"]
        rows.append({"snapshot": sid[:8], "database": db.get("name") or snap["paths"][0],
                     "tables": len(db.get("tables", [])), "rows": st.get("rows", "-"),
                     "size": human_bytes(st["bytes"]),
                     "stored": human_bytes(st["bytes_stored"]), "seconds": st["duration_s"]})
        data.append({"snapshot": sid, "kind": snap["kind"], "paths": snap["paths"],
                     "stats": st, "database": db})
        warnings += [f"warning: {db.get('name')}: {w}" for w in db.get("warnings", [])]
    summary = "; ".join(f"{r['database']}: snapshot {r['snapshot']} ({r['tables']} tables, "
                        f"{r['size']}, {r['stored']} new)" for r in rows) or "nothing saved"
    messages = [f"saved {summary}", *warnings, *(f"error: {f}" for f in failures)]
    return Result(data={"snapshots": data, "failures": failures},
                  tables=[Table(list(rows[0]), rows)] if len(rows) > 1 else [],
                  messages=messages, summary=f"backup db: {summary}"
                  + (f"; {len(failures)} failed" if failures else ""),
                  exit_code=3 if failures else (EXIT_FINDINGS if warnings else 0))


def restore_result(rep) -> Result:
    """A logical restore."""
    summary = (f"restored snapshot {rep.snapshot[:8]} (database {rep.database}) into "
               f"{rep.target}: {rep.tables} tables, {rep.rows} rows, {human_bytes(rep.bytes)} "
               f"in {rep.seconds:.1f}s" + (" (target dropped and recreated)" if rep.recreated
                                          else ""))
    return Result(data=rep, messages=[summary], summary=summary)


def drill_result(report, json_path: str, md_path: str) -> Result:
    """A database drill as the CLI shows it; exit 1 unless it passed."""
    summary = (f"database drill {report.verdict}: {report.database}, site {report.site}, "
               f"snapshot {report.snapshot[:8]}, {report.files_verified}/{report.files_total} "
               f"tables verified, {sum(1 for a in report.assertions if a['ok'])}/"
               f"{len(report.assertions)} assertions true; RTO {report.restore_seconds:.1f}s "
               f"(target {report.rto_target_minutes:g} min), RPO {report.rpo_hours:.1f}h "
               f"(target {report.rpo_target_hours:g} h)")
    return drill_report_result(report, summary, json_path, md_path)


def basebackup_result(sid: str, snap: dict) -> Result:
    """A base backup made."""
    man, st = snap["pg_base"], snap["stats"]
    summary = (f"base backup of cluster {man['cluster']}: snapshot {sid[:8]}, "
               f"{human_bytes(st['bytes'])} ({human_bytes(st['bytes_stored'])} new), WAL "
               f"{man['start_wal']} from {man['start_lsn']} to {man['stop_lsn']} on timeline "
               f"{man['timeline']}, {st['duration_s']:.1f}s")
    return Result(data={"snapshot": sid, "kind": snap["kind"], "stats": st, "pg_base": man},
                  messages=[summary], summary=summary)


def wal_push_result(cluster: str, pushed) -> Result:
    """One WAL file archived (quiet on success: the server log gets no line)."""
    what = "stored" if pushed.stored else "already archived (same content)"
    summary = f"wal-push {cluster}/{pushed.name}: {what}, {human_bytes(pushed.size)}"
    return Result(data={"cluster": cluster, "name": pushed.name, "size": pushed.size,
                        "stored": pushed.stored}, summary=summary)


def wal_fetch_result(cluster: str, name: str, dest: str, size: int | None) -> Result:
    """A WAL file fetched for restore_command; exit 1 when the archive has none."""
    if size is None:
        summary = f"wal-fetch {cluster}/{name}: not in the archive"
        return Result(data={"cluster": cluster, "name": name, "found": False},
                      messages=[summary], summary=summary, exit_code=EXIT_FINDINGS)
    summary = f"wal-fetch {cluster}/{name} -> {dest}: {human_bytes(size)}"
    return Result(data={"cluster": cluster, "name": name, "found": True, "size": size},
                  summary=summary)


def chain_result(reports: list) -> Result:
    """WAL chains checked; exit 1 when one has a gap."""
    rows = [{"cluster": r.cluster, "base": r.base_snapshot[:8] or "-",
             "from": r.start_wal or "-", "to": r.newest_wal or "-", "timeline": r.timeline,
             "segments": r.segments, "first_missing": (r.missing or ["-"])[0]}
            for r in reports]
    problems = [p for r in reports for p in r.problems]
    summary = (f"WAL chain of {len(reports)} cluster(s): "
               + ("complete" if not problems else f"{len(problems)} problem(s): {problems[0]}"))
    return Result(data={"clusters": [{**vars(r), "ok": r.ok} for r in reports]},
                  tables=[Table(list(rows[0]), rows)] if rows else [],
                  messages=[f"error: {p}" for p in problems] + [summary], summary=summary,
                  exit_code=EXIT_FINDINGS if problems else 0)


def physical_restore_result(rep) -> Result:
    """A base backup unpacked with recovery settings."""
    target = {k: v for k, v in (rep.settings or {}).items() if k != "restore_command"}
    summary = (f"restored base backup {rep.snapshot[:8]} (cluster {rep.cluster}) into "
               f"{rep.target}: {rep.files} files, {human_bytes(rep.bytes)} in "
               f"{rep.seconds:.1f}s" + (" (directory emptied first)" if rep.emptied else ""))
    messages = [summary, "recovery: " + (", ".join(f"{k}={v}" for k, v in target.items())),
                f"start PostgreSQL on {rep.target} to replay the archived WAL"]
    return Result(data=rep, messages=messages, summary=summary)
