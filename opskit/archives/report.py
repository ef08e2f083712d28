"""Results (tables, JSON, summaries) of ``opskit archive`` (R-AUD-6)."""
from __future__ import annotations

from opskit.core.errors import EXIT_FINDINGS, EXIT_OK
from opskit.core.output import Result, Table

LIST_COLUMNS = ["snapshot", "time", "host", "paths", "tags", "archive"]
ACCESS_COLUMNS = ["seq", "time", "step", "snapshot", "archive", "purpose", "actor",
                  "approved_by", "command"]
DESTROY_COLUMNS = ["seq", "time", "repository", "snapshots", "actor", "approved_by", "command"]


def _short(values) -> str:
    return ", ".join(values or [])


def list_result(archived: list[tuple[dict, str]], repository: str) -> Result:
    """The archive snapshots of one repository and why each is one."""
    rows = [{"snapshot": s["id"], "time": s.get("time"), "host": s.get("host"),
             "paths": s.get("paths", []), "tags": s.get("tags", []), "kind": s.get("kind"),
             "archive": why} for s, why in archived]
    shown = [{**r, "snapshot": r["snapshot"][:12], "paths": _short(r["paths"]),
              "tags": _short(r["tags"])} for r in rows]
    summary = f"{len(rows)} archive snapshot(s) in repository {repository[:12]}"
    return Result(data=rows, tables=[Table(LIST_COLUMNS, shown, title="Archives")],
                  messages=[summary], summary=summary)


def access_log_result(records: list[dict]) -> Result:
    """Every registered read and drill of an archive."""
    rows = [{k: r.get(k) for k in ACCESS_COLUMNS} | {"repository": r.get("repository"),
                                                     "target": r.get("target")}
            for r in records]
    shown = [{**r, "snapshot": (r["snapshot"] or "")[:12], "approved_by": _short(r["approved_by"])}
             for r in rows]
    summary = f"{len(rows)} archive access(es) registered"
    return Result(data=rows, tables=[Table(ACCESS_COLUMNS, shown, title="Archive accesses")],
                  messages=[summary], summary=summary)


def destructions_result(records: list[dict]) -> Result:
    """Every destruction record."""
    rows = [{k: r.get(k) for k in DESTROY_COLUMNS} for r in records]
    shown = [{**r, "repository": (r["repository"] or "")[:12],
              "snapshots": _short(s["snapshot"][:12] for s in r["snapshots"]),
              "approved_by": _short(r["approved_by"])} for r in rows]
    summary = f"{len(rows)} destruction record(s)"
    return Result(data=rows, tables=[Table(DESTROY_COLUMNS, shown, title="Archive destructions")],
                  messages=[summary], summary=summary)


def approve_result(entry: dict) -> Result:
    """After ``archive approve``."""
    d = entry["details"]
    text = (f"{entry['actor']} approved reading archive {d['snapshot'][:12]} for "
            f"{entry['for']} (purpose: {d['purpose']})")
    return Result(data={k: entry[k] for k in ("seq", "time", "operation", "subject", "for",
                                              "actor", "comment", "details")},
                  messages=[text], summary=text)


def verify_result(problem: str | None, path: str) -> Result:
    """The register's chain: intact (exit 0) or the first problem (exit 1)."""
    text = f"archive register intact ({path})" if problem is None else \
        f"archive register damaged: {problem}"
    return Result(data={"register": path, "intact": problem is None, "problem": problem},
                  messages=[text], summary=text,
                  exit_code=EXIT_OK if problem is None else EXIT_FINDINGS)
