"""Database restore drills (R-BAK-5): ``backup db drill``.

Restore a ``pg-logical`` snapshot into a scratch cluster started for the
drill, then prove it: every table's row count and checksum (BLAKE3 of its
COPY text, recorded at backup time) recomputed on the restored copy, plus
the entry's SQL assertions, each of which must return true. RTO is the time
from the start of the drill to a queryable, verified database; RPO the age
of the snapshot. The scratch cluster is stopped and removed whatever
happens; with a drill host the cluster runs there over SSH
(remotescratch.py). The report has the shape of file drills (opskit.backup.drill),
with ``kind: pg-logical``, so history, the retention floor and the evidence
pack read it unchanged. A ``pg-base`` snapshot is drilled by
``pitrdrill`` (base backup + WAL replay); both verify through ``drillcheck``.
"""
from __future__ import annotations

import datetime as dt
import socket
import time

from opskit.core.errors import OpskitError, UsageError
from opskit.core.optional import require

from ..backends import BackendError
from ..drill import Targets
from ..repository import CorruptObject, Repository
from .drillcheck import (DbDrillReport, choose, database_of, run_assertions, verdict,
                         verify_tables)
from .pitrdrill import run_pitr_drill
from .pgtools import apply_session_settings, connect, find_tools, major_of
from .restore import LogicalRestore, manifest_of
from .remotescratch import RemoteScratchCluster
from .scratch import ScratchCluster


def run_db_drill(repo: Repository, *, snapshot_ref: str = "latest", database: str | None = None,
                 kind: str | None = None, assertions: dict[str, list[str]] | None = None,
                 targets: Targets, operator: str, bindir: str | None = None,
                 os_user: str | None = "postgres", site: str = "local",
                 to_time: str | None = None, now: dt.datetime | None = None,
                 drill_host=None) -> DbDrillReport:
    """Run one database drill on a pg-logical or (with WAL replay, ``to_time``)
    a pg-base snapshot; a failed verification is the report, not an exception.
    ``assertions``: the SQL assertions of each backup.databases entry by name.
    ``drill_host``: a connected Host whose scratch cluster takes the restore
    (remotescratch.py) instead of one on this machine."""
    now = now or dt.datetime.now(dt.timezone.utc)
    repo.load_index(repair=False)
    snap = choose(repo, snapshot_ref, database, kind)
    sqls = list((assertions or {}).get(database_of(snap)) or [])
    common = dict(assertions=sqls, targets=targets, operator=operator, bindir=bindir,
                  os_user=os_user, site=site, now=now)
    if snap["kind"] == "pg-base":
        return run_pitr_drill(repo, snap, to_time=to_time, drill_host=drill_host, **common)
    if to_time:
        raise UsageError("--to-time needs a base backup (pg-base) snapshot to replay WAL onto")
    return _logical_drill(repo, snap, drill_host=drill_host, **common)


def _scratch(manifest: dict, bindir: str | None, os_user: str | None, drill_host):
    """(scratch cluster, local client tools): here, or on ``drill_host`` over SSH."""
    major = major_of(manifest["server_version_num"])
    if drill_host is None:
        tools = find_tools(major, bindir, program="initdb")
        return ScratchCluster(tools, os_user), tools
    return RemoteScratchCluster(drill_host, major, os_user), \
        find_tools(major, bindir, program="pg_restore")


def _logical_drill(repo: Repository, snap: dict, *, assertions: list[str], targets: Targets,
                   operator: str, bindir: str | None, os_user: str | None, site: str,
                   now: dt.datetime, drill_host=None) -> DbDrillReport:
    """Restore a pg-logical snapshot into a fresh scratch cluster and verify it."""
    started = time.monotonic()
    manifest = manifest_of(snap)
    tables = manifest["tables"]
    report = DbDrillReport(
        time=now.strftime("%Y-%m-%dT%H:%M:%SZ"), site=site, repository=repo.backend.location,
        snapshot=snap["id"], snapshot_time=snap["time"], operator=operator,
        host=socket.gethostname(), sample_pct=100.0, files_total=len(tables),
        bytes_total=sum(int(t["bytes"]) for t in tables),
        rto_target_minutes=targets.rto_minutes, rpo_target_hours=targets.rpo_hours,
        database=manifest["name"])
    if drill_host is not None:
        report.target_host = drill_host.name
    cluster, tools = _scratch(manifest, bindir, os_user, drill_host)
    with cluster:
        try:
            cluster.create()
            report.scratch_dir = cluster.base
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
                verify_tables(conn, tables, report)
                run_assertions(conn, assertions, report)
            finally:
                conn.close()
        except (CorruptObject, BackendError) as exc:
            report.failures.append({"path": "(snapshot)", "problem": f"restore stopped: {exc}"})
        except OpskitError as exc:
            report.failures.append({"path": "(restore)", "problem": exc.message})
        report.restore_seconds = round(time.monotonic() - started, 3)
    if getattr(cluster, "cleanup_problem", ""):
        report.failures.append({"path": "(scratch cluster)", "problem": cluster.cleanup_problem})
    return verdict(report, snap, targets, now)
