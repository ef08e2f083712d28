"""Database restore drills (R-BAK-5): ``backup db drill``.

Restore a ``pg-logical`` snapshot into a scratch cluster started for the
drill, then prove it: every table's row count and checksum (BLAKE3 of its
COPY text, recorded at backup time) recomputed on the restored copy, plus
the entry's SQL assertions, each of which must return true. RTO is the time
from the start of the drill to a queryable, verified database; RPO the age
of the snapshot. The scratch cluster is stopped and removed whatever
happens. The report has the shape of file drills (opskit.backup.drill),
with ``kind: pg-logical``, so history, the retention floor and the evidence
pack read it unchanged.
"""
from __future__ import annotations

import datetime as dt
import socket
import time
from dataclasses import dataclass, field

from opskit.core.errors import OpskitError, UsageError
from opskit.core.optional import require

from ..backends import BackendError
from ..drill import DrillReport, Targets, conclude
from ..repository import CorruptObject, Repository
from .logical import KIND, RowTap, copy_out
from .pgtools import apply_session_settings, connect, find_tools, major_of, pg_message
from .restore import LogicalRestore, manifest_of
from .scratch import ScratchCluster


@dataclass
class DbDrillReport(DrillReport):
    """A file drill's report plus what a database drill checks."""

    kind: str = KIND
    database: str = ""
    tables: list = field(default_factory=list)       # {"table", "rows", "ok", "problem"}
    assertions: list = field(default_factory=list)   # {"sql", "ok", "problem"}


def choose(repo: Repository, ref: str, database: str | None) -> dict:
    """The pg-logical snapshot to drill: ``ref`` among those of ``database``."""
    snaps = [s for s in repo.snapshots() if s.get("kind") == KIND
             and (database is None or (s.get("database") or {}).get("name") == database)]
    if not snaps:
        raise UsageError(f"repository {repo.backend.location} has no database snapshots"
                         + (f" of {database}" if database else ""))
    return repo.resolve_snapshot(ref, snaps)


def _verify_tables(conn, manifest: dict, report: DbDrillReport) -> None:
    for t in manifest["tables"]:
        name = f"{t['schema']}.{t['table']}"
        tap = RowTap()
        try:
            for block in copy_out(conn, t["schema"], t["table"]):
                tap(memoryview(block))
        except Exception as exc:      # psycopg errors: the table is missing or unreadable
            report.tables.append({"table": name, "rows": None, "ok": False,
                                  "problem": pg_message(exc)})
            report.failures.append({"path": name, "problem": pg_message(exc)})
            continue
        problems = []
        if tap.rows != t["rows"]:
            problems.append(f"{tap.rows} rows, {t['rows']} at backup time")
        if tap.checksum != t["checksum"]:
            problems.append("checksum differs from the one recorded at backup time")
        report.tables.append({"table": name, "rows": tap.rows, "ok": not problems,
                              "problem": "; ".join(problems)})
        if problems:
            report.failures.append({"path": name, "problem": "; ".join(problems)})
        else:
            report.files_verified += 1
            report.bytes_verified += tap.size


def _assert(conn, sqls: list[str], report: DbDrillReport) -> None:
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
            report.failures.append({"path": f"assertion: {sql}", "problem": problem})


def run_db_drill(repo: Repository, *, snapshot_ref: str = "latest", database: str | None = None,
                 assertions: list[str] | None = None, targets: Targets, operator: str,
                 bindir: str | None = None, os_user: str | None = "postgres",
                 site: str = "local", now: dt.datetime | None = None) -> DbDrillReport:
    """Run one database drill; a failed verification is the report, not an exception."""
    now = now or dt.datetime.now(dt.timezone.utc)
    started = time.monotonic()
    repo.load_index(repair=False)
    snap = choose(repo, snapshot_ref, database)
    manifest = manifest_of(snap)
    tables = manifest["tables"]
    report = DbDrillReport(
        time=now.strftime("%Y-%m-%dT%H:%M:%SZ"), site=site, repository=repo.backend.location,
        snapshot=snap["id"], snapshot_time=snap["time"], operator=operator,
        host=socket.gethostname(), sample_pct=100.0, files_total=len(tables),
        bytes_total=sum(int(t["bytes"]) for t in tables),
        rto_target_minutes=targets.rto_minutes, rpo_target_hours=targets.rpo_hours,
        database=manifest["name"])
    tools = find_tools(major_of(manifest["server_version_num"]), bindir, program="initdb")
    with ScratchCluster(tools, os_user) as cluster:
        try:
            cluster.create()
            cluster.start()
            admin = connect(cluster.target("postgres"))
            try:
                sql = require("psycopg.sql", extra="postgres")
                admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} "
                                      "LC_COLLATE {} LC_CTYPE {}").format(
                    sql.Identifier(manifest["dbname"]), sql.Literal(manifest["encoding"]),
                    sql.Literal(manifest["collate"]), sql.Literal(manifest["ctype"])))
            finally:
                admin.close()
            target = cluster.target(manifest["dbname"])
            LogicalRestore(repo, snap, target, bindir=tools.bindir, with_globals=True).run()
            conn = connect(target)
            try:
                apply_session_settings(conn)
                _verify_tables(conn, manifest, report)
                _assert(conn, list(assertions or []), report)
            finally:
                conn.close()
        except (CorruptObject, BackendError) as exc:
            report.failures.append({"path": "(snapshot)", "problem": f"restore stopped: {exc}"})
        except OpskitError as exc:
            report.failures.append({"path": "(restore)", "problem": exc.message})
        report.restore_seconds = round(time.monotonic() - started, 3)
    return _verdict(report, snap, targets, now)


def _verdict(report: DbDrillReport, snap: dict, targets: Targets,
             now: dt.datetime) -> DbDrillReport:
    secs = max(report.restore_seconds, 1e-6)
    report.throughput_mib_s = round(report.bytes_verified / secs / 2**20, 1)
    report.full_restore_estimate_s = report.restore_seconds      # the whole database, measured
    verified = not report.failures and report.files_verified == report.files_total
    return conclude(report, snap, targets, now, verified, "check(s) failed")
