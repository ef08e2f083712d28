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
