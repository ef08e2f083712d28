"""The Results of ``opskit backup db ...`` (rendered by the CLI, fed to the audit log)."""
from __future__ import annotations

from opskit.core.errors import EXIT_FINDINGS
from opskit.core.output import Result, Table, human_bytes


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
    messages = [summary, f"report: {md_path}"]
    messages += [f"  failed: {f['path']}: {f['problem']}" for f in report.failures[:50]]
    return Result(data={**report.to_json(), "report_json": json_path, "report_md": md_path},
                  messages=messages, summary=summary,
                  exit_code=0 if report.passed else EXIT_FINDINGS)
