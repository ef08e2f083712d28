"""Point-in-time restore drills (R-BAK-5): ``backup db drill`` on a ``pg-base`` snapshot.

The WAL chain from the base backup is checked first (a gap fails the drill
and names the first missing segment, as ``backup db check`` does); the
archived WAL is then staged into the scratch cluster's private directory
(every file authenticated on the way) and the base backup unpacked next to
it with a ``restore_command`` that copies from there, so the scratch server
needs neither opskit nor the repository. PostgreSQL replays to the end of
the archive (or ``to_time``) and promotes; the drill then reads every table
of every database in full (row counts, bytes; a damaged page fails the
read) and runs the entry's SQL assertions. Row counts and checksums are
recorded at logical-backup time only: after WAL replay a base backup's
tables have moved on, so a pg-base drill proves readability, the replay
point and the assertions.

RTO is the time from the start of the drill to a queryable, promoted
server; RPO the age of the newest recoverable transaction (the last
replayed commit, else the base backup's time). The scratch cluster is
stopped and removed whatever happens. On a drill host (``--drill-host``) the
same steps run there over SSH (remotescratch.py): WAL written over SFTP,
the tar streamed into GNU tar there, the server reached through a tunnel.
"""
from __future__ import annotations

import datetime as dt
import os
import pwd
import shlex
import socket
import time

from opskit.core.errors import OpskitError

from ..backends import BackendError
from ..drill import Targets
from ..repository import CorruptObject, Repository
from .drillcheck import DbDrillReport, run_assertions, verdict, verify_tables
from .logical import TABLES_SQL
from .pgtools import DatabaseError, apply_session_settings, connect, find_tools, major_of
from .pitr import PhysicalRestore, RecoveryTarget, datadir_file, quote_setting
from .remotescratch import RemoteScratchCluster
from .scratch import ScratchCluster
from .streams import find_files, read_content
from .wal import HISTORY, SEGMENT, WalArchive
from .walchain import Chain, Segments, parse_lsn

# hot_standby off: no connection before recovery ends (and no check of the
# primary's max_* settings); the archive stays the source's, never written
RECOVERY_SETTINGS = {"hot_standby": "off", "wal_level": "replica", "max_wal_senders": "0"}

DATABASES_SQL = """SELECT datname FROM pg_catalog.pg_database
WHERE datallowconn AND NOT datistemplate ORDER BY datname COLLATE "C\""""

RECOVERED_SQL = """SELECT pg_catalog.pg_is_in_recovery(),
       pg_catalog.pg_last_xact_replay_timestamp(), pg_catalog.pg_last_wal_replay_lsn()::text"""


def _new_report(repo: Repository, snap: dict, targets: Targets, operator: str, site: str,
                now: dt.datetime) -> DbDrillReport:
    man = snap["pg_base"]
    return DbDrillReport(
        time=now.strftime("%Y-%m-%dT%H:%M:%SZ"), site=site, repository=repo.backend.location,
        snapshot=snap["id"], snapshot_time=snap["time"], operator=operator,
        host=socket.gethostname(), sample_pct=100.0, files_total=0,
        bytes_total=int(snap["stats"]["bytes"]), rto_target_minutes=targets.rto_minutes,
        rpo_target_hours=targets.rpo_hours, kind="pg-base",
        database=man.get("database") or man["cluster"])


def check_chain(repo: Repository, snap: dict, report: DbDrillReport) -> Chain | None:
    """The WAL chain from this base backup; None (failures named) when it has a gap."""
    chain = Chain(WalArchive(repo, snap["pg_base"]["cluster"]), [snap])
    rep = chain.check()
    for i, problem in enumerate(rep.problems):
        missing = rep.missing[i] if i < len(rep.missing) else ""
        report.failures.append({"path": f"wal/{rep.cluster}/{missing}", "problem": problem})
    report.recovery.update({"start_wal": rep.start_wal, "newest_wal": rep.newest_wal,
                            "timeline": rep.timeline, "wal_segments": rep.segments})
    return chain if rep.ok else None


def wal_names(chain: Chain, snap: dict) -> list[str]:
    """Every history file and every segment from the base backup's start."""
    man = snap["pg_base"]
    seg = Segments(int(man["wal_segment_size"]))
    first = seg.segno(parse_lsn(man["start_lsn"]))
    return [n for n in sorted(chain.names) if HISTORY.match(n)
            or (SEGMENT.match(n) and seg.parse(n)[1] >= first)]


def stage_wal(chain: Chain, snap: dict, folder: str, owner: tuple[int, int] | None) -> int:
    """Write the WAL replay needs (``wal_names``) into ``folder`` (authenticated
    reads); how many files."""
    os.makedirs(folder, mode=0o700)
    names = wal_names(chain, snap)
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "wb") as fh:
            fh.write(chain.archive.read(name))
        if owner:
            os.chown(path, *owner)
    if owner:
        os.chown(folder, *owner)
    return len(names)


def scratch_config(datadir: str, owner: tuple[int, int] | None) -> None:
    """Local trust on the drill's private socket only; an empty postgresql.conf
    where the source kept its configuration elsewhere (Debian: /etc). Files are
    made anew, never written through a symlink the snapshot had there."""
    conf = os.path.join(datadir, "postgresql.conf")
    keep_conf = os.path.isfile(conf) and not os.path.islink(conf)
    for name, text in (("pg_hba.conf", b"local all all trust\n"), ("postgresql.conf", b"")):
        if name == "postgresql.conf" and keep_conf:
            continue
        with datadir_file(datadir, name) as fh:
            fh.write(text)
        if owner:
            os.chown(os.path.join(datadir, name), *owner)
    for name in ("standby.signal", "postmaster.pid"):
        if os.path.lexists(os.path.join(datadir, name)):
            os.unlink(os.path.join(datadir, name))


def _wait_promoted(conn, timeout: float = 600) -> tuple:
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute(RECOVERED_SQL).fetchone()
        if not row[0] or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def _recovered(conn, snap: dict, chain: Chain, to_time: str | None,
               report: DbDrillReport) -> dict:
    """Where replay ended; a failure when, without a target, it stopped before
    the newest archived segment. The ``time`` RPO is measured from."""
    in_recovery, last_commit, replay_lsn = _wait_promoted(conn)
    if in_recovery:
        report.failures.append({"path": "(recovery)", "problem": "still in recovery after "
                                                                 "600 s"})
    newest = report.recovery.get("newest_wal")
    report.recovery.update({"to_time": to_time, "replay_lsn": replay_lsn,
                            "last_commit": last_commit.isoformat() if last_commit else None})
    seg = Segments(int(snap["pg_base"]["wal_segment_size"]))
    if not to_time and newest and replay_lsn and \
            seg.segno(parse_lsn(replay_lsn)) < seg.parse(newest)[1]:
        report.failures.append({"path": f"wal/{chain.archive.cluster}/{newest}",
                                "problem": f"replay stopped at {replay_lsn}, before the newest "
                                           f"archived segment {newest}"})
    if last_commit is None:
        return {"time": snap["time"]}
    return {"time": last_commit.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")}


def _verify_cluster(cluster: ScratchCluster, dbname: str, assertions: list[str],
                    report: DbDrillReport) -> None:
    """Read every table of every database; the assertions in ``dbname``."""
    conn = connect(cluster.target("postgres"))
    try:
        databases = [r[0] for r in conn.execute(DATABASES_SQL).fetchall()]
    finally:
        conn.close()
    for db in databases:
        conn = connect(cluster.target(db))
        try:
            apply_session_settings(conn)
            tables = [{"schema": r[0], "table": r[1]}
                      for r in conn.execute(TABLES_SQL).fetchall()]
            report.files_total += len(tables)
            verify_tables(conn, tables, report, prefix=f"{db}:")
            if db == dbname:
                run_assertions(conn, assertions, report)
        finally:
            conn.close()
    if assertions and dbname not in databases:
        report.failures.append({"path": f"database {dbname}", "problem": "not in the restored "
                                "cluster: assertions not run"})


def _owner(cluster: ScratchCluster) -> tuple[int, int] | None:
    if not cluster.os_user:
        return None
    info = pwd.getpwnam(cluster.os_user)
    return info.pw_uid, info.pw_gid


def _restore_here(repo: Repository, snap: dict, chain: Chain, cluster: ScratchCluster,
                  target: RecoveryTarget) -> None:
    """WAL staged and the base backup unpacked into a local scratch cluster."""
    cluster.create(initdb=False)
    owner = _owner(cluster)
    folder = os.path.join(cluster.base, "wal")
    stage_wal(chain, snap, folder, owner)
    fetch = f"{shlex.quote(folder)}/%f"
    PhysicalRestore(repo, snap, cluster.data, target, f"test -f {fetch} && cp {fetch} %p",
                    owner=cluster.os_user).run()
    scratch_config(cluster.data, owner)


def _restore_there(repo: Repository, snap: dict, chain: Chain, cluster: RemoteScratchCluster,
                   target: RecoveryTarget) -> None:
    """The same on a drill host: WAL written there over SFTP, the tar streamed
    into GNU tar there, the recovery settings and access rules written there."""
    cluster.create(initdb=False)
    folder = f"{cluster.base}/wal"
    cluster.put_files(folder, ((n, chain.archive.read(n)) for n in wal_names(chain, snap)))
    node = find_files(repo, snap)[f"/pg-base/{snap['pg_base']['cluster']}/base.tar"]
    cluster.unpack(read_content(repo, node))
    fetch = f"{shlex.quote(folder)}/%f"
    cluster.configure(target.settings(f"test -f {fetch} && cp {fetch} %p"), quote_setting)


def run_pitr_drill(repo: Repository, snap: dict, *, to_time: str | None,
                   assertions: list[str], targets: Targets, operator: str,
                   bindir: str | None, os_user: str | None, site: str,
                   now: dt.datetime, drill_host=None) -> DbDrillReport:
    """Restore a base backup + WAL into a scratch cluster (here, or on
    ``drill_host`` over SSH), replay, verify, measure."""
    started = time.monotonic()
    target = RecoveryTarget(time=to_time, action="promote")
    target.validate()
    man = snap["pg_base"]
    report = _new_report(repo, snap, targets, operator, site, now)
    if drill_host is not None:
        report.target_host = drill_host.name
        cluster = RemoteScratchCluster(drill_host, major_of(man["server_version_num"]), os_user,
                                       settings=RECOVERY_SETTINGS,
                                       superuser=man.get("superuser") or "postgres")
        return _drill(repo, snap, cluster, _restore_there, target, report, to_time, assertions,
                      targets, now, started)
    tools = find_tools(major_of(man["server_version_num"]), bindir, program="postgres")
    if tools.major != major_of(man["server_version_num"]):
        raise DatabaseError(f"a base backup of PostgreSQL {man['server_version']} needs the "
                            f"server programs of major {major_of(man['server_version_num'])}; "
                            f"found {tools.major} in {tools.bindir}",
                            hint="install that major version or set backup.pg.bindir")
    cluster = ScratchCluster(tools, os_user, settings=RECOVERY_SETTINGS,
                             superuser=man.get("superuser") or "postgres")
    return _drill(repo, snap, cluster, _restore_here, target, report, to_time, assertions,
                  targets, now, started)


def _drill(repo, snap, cluster, restore, target, report, to_time, assertions, targets, now,
           started) -> DbDrillReport:
    """Check the chain, restore with ``restore``, start, wait for promotion,
    verify; the cluster removed whatever happens."""
    man = snap["pg_base"]
    recovered = {"time": snap["time"]}
    with cluster:
        try:
            chain = check_chain(repo, snap, report)
            if chain is not None:
                restore(repo, snap, chain, cluster, target)
                report.scratch_dir = cluster.base
                cluster.start()
                conn = connect(cluster.target("postgres"))
                try:
                    recovered = _recovered(conn, snap, chain, to_time, report)
                finally:
                    conn.close()
                report.restore_seconds = round(time.monotonic() - started, 3)
                _verify_cluster(cluster, man.get("dbname") or "postgres", assertions, report)
        except (CorruptObject, BackendError) as exc:
            report.failures.append({"path": "(snapshot)", "problem": f"restore stopped: {exc}"})
        except OpskitError as exc:
            report.failures.append({"path": "(restore)", "problem": exc.message})
        report.scratch_dir = report.scratch_dir or cluster.base
        report.restore_seconds = report.restore_seconds or round(time.monotonic() - started, 3)
    if getattr(cluster, "cleanup_problem", ""):
        report.failures.append({"path": "(scratch cluster)", "problem": cluster.cleanup_problem})
    return verdict(report, recovered, targets, now)
