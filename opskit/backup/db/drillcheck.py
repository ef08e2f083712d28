"""What every database drill shares (R-BAK-5): its report, the snapshot it
drills, the per-table and SQL-assertion checks, and the verdict.

``drill`` (pg-logical) and ``pitrdrill`` (pg-base + WAL) restore in their own
way, then verify through these functions, so both write the same report
shape that ``backup drill --history``, the retention floor and the evidence
pack read.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from opskit.core.errors import UsageError

from ..drill import DrillReport, Targets, conclude
from ..repository import Repository
from .logical import RowTap, copy_out
from .pgtools import pg_message

KINDS = ("pg-logical", "pg-base")


@dataclass
class DbDrillReport(DrillReport):
    """A file drill's report plus what a database drill checks."""

    kind: str = "pg-logical"
    database: str = ""
    tables: list = field(default_factory=list)       # {"table", "rows", "ok", "problem"}
    assertions: list = field(default_factory=list)   # {"sql", "ok", "problem"}
    recovery: dict = field(default_factory=dict)     # pg-base: what WAL replay reached
    scratch_dir: str = ""      # the scratch cluster's folder (removed when the drill ends)


def database_of(snap: dict) -> str | None:
    """The backup.databases entry a database snapshot was taken through."""
    if snap.get("kind") == "pg-base":
        return (snap.get("pg_base") or {}).get("database")
    return (snap.get("database") or {}).get("name")


def choose(repo: Repository, ref: str, database: str | None, kind: str | None = None) -> dict:
    """The database snapshot to drill (pg-logical or pg-base, or only ``kind``):
    ``ref`` among those of ``database`` (the backup.databases entry)."""
    kinds = (kind,) if kind else KINDS
    snaps = [s for s in repo.snapshots() if s.get("kind") in kinds
             and (database is None or database_of(s) == database)]
    if not snaps:
        raise UsageError(f"repository {repo.backend.location} has no "
                         f"{' or '.join(kinds)} snapshots" + (f" of {database}" if database
                                                               else ""))
    return repo.resolve_snapshot(ref, snaps)


def _fail(report: DbDrillReport, path: str, problem: str) -> None:
    report.failures.append({"path": path, "problem": problem})


def read_table(conn, schema: str, table: str) -> RowTap:
    """Every row of a table read back (COPY text): count, bytes, BLAKE3."""
    tap = RowTap()
    for block in copy_out(conn, schema, table):
        tap(memoryview(block))
    return tap


def verify_tables(conn, tables: list[dict], report: DbDrillReport, prefix: str = "") -> None:
    """Read every table in full; compare with the backup-time row count and
    checksum where ``tables`` records them (``rows``/``checksum`` keys)."""
    for t in tables:
        name = f"{prefix}{t['schema']}.{t['table']}"
        try:
            tap = read_table(conn, t["schema"], t["table"])
        except Exception as exc:      # psycopg errors: the table is missing or unreadable
            report.tables.append({"table": name, "rows": None, "ok": False,
                                  "problem": pg_message(exc)})
            _fail(report, name, pg_message(exc))
            continue
        problems = []
        if "rows" in t and tap.rows != t["rows"]:
            problems.append(f"{tap.rows} rows, {t['rows']} at backup time")
        if "checksum" in t and tap.checksum != t["checksum"]:
            problems.append("checksum differs from the one recorded at backup time")
        report.tables.append({"table": name, "rows": tap.rows, "ok": not problems,
                              "problem": "; ".join(problems)})
        if problems:
            _fail(report, name, "; ".join(problems))
        else:
            report.files_verified += 1
            report.bytes_verified += tap.size


def run_assertions(conn, sqls: list[str], report: DbDrillReport) -> None:
    """Each configured SQL assertion must return true."""
    for sql in sqls:
        try:
            row = conn.execute(sql).fetchone()
            ok = bool(row) and row[0] is True
            problem = "" if ok else f"returned {row[0] if row else 'no row'!r}, not true"
        except Exception as exc:
            conn.rollback() if not conn.autocommit else None
            ok, problem = False, pg_message(exc)
        report.assertions.append({"sql": sql, "ok": ok, "problem": problem})
        if not ok:
            _fail(report, f"assertion: {sql}", problem)


def verdict(report: DbDrillReport, recovered: dict, targets: Targets,
            now: dt.datetime) -> DbDrillReport:
    """Throughput, RTO/RPO against the targets and pass/fail. ``recovered`` has
    the ``time`` RPO is measured from (the snapshot's, or the last replayed commit)."""
    secs = max(report.restore_seconds, 1e-6)
    report.throughput_mib_s = round(report.bytes_verified / secs / 2**20, 1)
    report.full_restore_estimate_s = report.restore_seconds      # the whole database, measured
    verified = not report.failures and report.files_verified == report.files_total
    return conclude(report, recovered, targets, now, verified, "check(s) failed")
