"""Physical base backups (``backup db basebackup``): snapshot kind ``pg-base``.

The cluster goes into the repository as one tar stream, chunked straight in
(no copy on disk, deduplicated week to week) as ``/pg-base/<cluster>/base.tar``.
When the data directory is on this host and readable (``backup.pg.base_source``
auto or datadir) opskit reads its files itself between ``pg_backup_start`` and
``pg_backup_stop`` (datadir.py); otherwise ``pg_basebackup -Ft -X none -D -``
writes the stream to its stdout (it needs only a replication connection). The WAL
needed to make it consistent comes from the WAL archive (``wal-push``), so
the server must be archiving. On the way the ``backup_label`` member is
copied out of the stream; the snapshot's ``pg_base`` field records it with
the start and stop LSN, the timeline, the segment size and the system id,
which ``db check``, retention and point-in-time restore need.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import time

from opskit.core.optional import require

from ..backends import ObjectNotFound
from ..repository import CorruptObject, Repository
from .datadir import DataDirError, DataDirTar, serves, system_identifier
from .pgtools import DatabaseError, connect, find_tools, last_line, major_of, pg_message
from .settings import DatabaseTarget
from .streams import TreeBuilder, save_snapshot, store_command, store_stream
from .tarstream import TarError
from .tarwatch import TarWatch
from .wal import WalArchive, check_cluster
from .walchain import parse_lsn

KIND = "pg-base"

SERVER_SQL = """
SELECT current_setting('server_version_num')::int, current_setting('server_version'),
       (SELECT system_identifier::text FROM pg_catalog.pg_control_system()),
       (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size'),
       current_setting('archive_mode'), current_setting('wal_level'),
       (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10)"""

_START = re.compile(r"START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)")
_STOP = re.compile(r"STOP WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)")
_TLI = re.compile(r"START TIMELINE: (\d+)")


def psycopg_error() -> type:
    return require("psycopg", extra="postgres").Error


def _backup_sql(version: int) -> tuple[str, str]:
    """Non-exclusive backup start and stop for this server version (renamed in 15)."""
    if version >= 150000:
        return ("SELECT pg_catalog.pg_backup_start(%s, %s)",
                "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_backup_stop(true)")
    return ("SELECT pg_catalog.pg_start_backup(%s, %s, false)",
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_catalog.pg_stop_backup(false, true)")


def parse_label(text: str) -> dict:
    """start_lsn, start_wal and timeline from a backup_label; DatabaseError when absent."""
    start, tli = _START.search(text), _TLI.search(text)
    if not start or not tli:
        raise DatabaseError("base backup: no usable backup_label in pg_basebackup's output")
    return {"start_lsn": start.group(1), "start_wal": start.group(2), "timeline": int(tli.group(1))}


class BaseBackup:
    """One cluster's base backup into an open repository (the caller holds a shared lock)."""

    def __init__(self, repo: Repository, target: DatabaseTarget, cluster: str, *,
                 bindir: str | None = None, checkpoint: str = "spread", source: str = "auto"):
        self.repo = repo
        self.target = target
        self.cluster = check_cluster(cluster)
        self.bindir = bindir
        self.checkpoint = checkpoint
        self.source = source
        self.method = ""                  # "datadir" or "pg_basebackup", once run

    def _server(self) -> dict:
        conn = connect(self.target)
        try:
            num, version, sysid, segsize, archive_mode, wal_level, superuser = \
                conn.execute(SERVER_SQL).fetchone()
        finally:
            conn.close()
        where = f"database {self.target.name} ({self.target.describe()})"
        if archive_mode == "off" or wal_level == "minimal":
            raise DatabaseError(f"{where}: archive_mode is {archive_mode}, wal_level "
                                f"{wal_level}: a base backup needs the WAL archive "
                                "(archive_mode = on, archive_command = 'opskit backup "
                                "wal-push %p', docs/database-backup.md)")
        return {"server_version_num": num, "server_version": version, "system_identifier": sysid,
                "wal_segment_size": int(segsize),
                "superuser": superuser}    # the role a drill connects as (trust, own socket)

    def run(self, *, tags: list[str] | None = None) -> tuple[str, dict]:
        """Take the base backup; returns (snapshot id, snapshot)."""
        start = time.monotonic()
        if not self.repo.index_loaded:
            self.repo.load_index()
        server = self._server()
        label = f"opskit {self.cluster} {dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
        datadir = self._local_datadir(server)
        writer = self.repo.blob_writer()
        if datadir is not None:
            self.method = "datadir"
            ids, size, label_text, stop, exact = self._from_datadir(writer, datadir, label)
        else:
            self.method = "pg_basebackup"
            ids, size, label_text, stop, exact = self._from_pg_basebackup(writer, server, label)
        info = parse_label(label_text)
        return self._save(writer, ids, size, server, {**info, "stop_exact": exact}, stop, label,
                          label_text, round(time.monotonic() - start, 3), tags)

    def _local_datadir(self, server: dict) -> str | None:
        """The cluster's data directory when this host can read it (its pg_control
        holds the server's system identifier and its postmaster.pid names this
        very server: a standby shares the identifier), per ``source``; else None."""
        if self.source == "pg_basebackup":
            return None
        where = f"database {self.target.name} ({self.target.describe()})"
        conn = connect(self.target)
        try:
            path, started, port = conn.execute(
                "SELECT current_setting('data_directory'), "
                "extract(epoch FROM pg_catalog.pg_postmaster_start_time())::bigint, "
                "current_setting('port')::int").fetchone()
        except psycopg_error() as exc:    # no pg_read_all_settings
            if self.source == "datadir":
                raise DatabaseError(f"{where}: cannot read the data_directory setting "
                                    f"({pg_message(exc)}); backup.pg.base_source: datadir "
                                    "needs pg_read_all_settings") from None
            return None
        finally:
            conn.close()
        if system_identifier(path) == int(server["system_identifier"]) and \
                serves(path, int(started), int(port)):
            return path
        if self.source == "datadir":
            raise DatabaseError(f"{where}: its data directory {path} is not readable on this "
                                "host, or is not the one this server runs on (a standby or a "
                                "copy); backup.pg.base_source: datadir needs opskit on the "
                                "database host as root or the server's user")
        return None

    def _from_datadir(self, writer, datadir: str, label: str):
        """Read the files between pg_backup_start and pg_backup_stop on one session
        (closing it aborts the backup on the server)."""
        conn = connect(self.target)
        stopped: dict = {}
        try:
            start_sql, stop_sql = _backup_sql(conn.info.server_version)
            conn.execute(start_sql, (label, self.checkpoint == "fast"))

            def tail() -> list[tuple[str, bytes]]:
                lsn, labelfile, spcmap = conn.execute(stop_sql).fetchone()
                if spcmap:
                    raise DataDirError(f"{datadir}: the cluster has tablespaces; not "
                                       "supported by base backups yet")
                stopped.update(lsn=lsn, label=labelfile)
                return [("backup_label", labelfile.encode())]

            source = DataDirTar(datadir, tail)
            try:
                ids, size = store_stream(self.repo, writer, source)
            finally:
                source.close()
        except (DataDirError, TarError) as exc:
            writer.abort()
            raise DatabaseError(f"database {self.target.name}: base backup: {exc} "
                                "(nothing stored)") from None
        except psycopg_error() as exc:
            writer.abort()
            raise DatabaseError(f"database {self.target.name} ({self.target.describe()}): "
                                f"base backup: {pg_message(exc)} (nothing stored)") from None
        except BaseException:
            writer.abort()
            raise
        finally:
            conn.close()
        return ids, size, stopped["label"], stopped["lsn"], True

    def _from_pg_basebackup(self, writer, server: dict, label: str):
        """pg_basebackup's tar stream from its stdout."""
        tools = find_tools(major_of(server["server_version_num"]), self.bindir,
                           program="pg_basebackup")
        cmd = [tools.path("pg_basebackup"), "-d", self.target.conninfo(), "-Ft", "-X", "none",
               "-D", "-", "-c", self.checkpoint, "-l", label, "--no-manifest"]
        watch = TarWatch({"backup_label", "tablespace_map"})
        try:
            ids, size, code, err_raw = store_command(self.repo, writer, cmd, tap=watch,
                                                     env={**os.environ, **self.target.env()})
        except TarError as exc:          # the writer is aborted, pg_basebackup killed
            raise DatabaseError(f"database {self.target.name}: pg_basebackup's output is not "
                                f"a tar stream ({exc}); nothing stored") from None
        err = err_raw.decode("utf-8", "replace")
        if code != 0:
            writer.abort()
            raise DatabaseError(f"database {self.target.name} ({self.target.describe()}): "
                                f"pg_basebackup failed: {last_line(err)} (nothing stored)")
        if watch.members.get("tablespace_map"):
            writer.abort()
            raise DatabaseError(f"database {self.target.name}: the cluster has tablespaces "
                                "outside its data directory; not supported by base backups yet")
        label_text = watch.members.get("backup_label", b"").decode("utf-8", "replace")
        info = parse_label(label_text)
        stop, exact = self._stop_lsn(info, server["wal_segment_size"])
        return ids, size, label_text, stop, exact

    def _stop_lsn(self, info: dict, segsize: int) -> tuple[str, bool]:
        """The backup's stop LSN from its backup history file in the WAL archive
        (pg_basebackup does not print it when writing to stdout); without a full
        key or that file, the server's current WAL position: a safe upper bound."""
        offset = parse_lsn(info["start_lsn"]) % segsize
        name = f"{info['start_wal']}.{offset:08X}.backup"
        if not self.repo.keys.write_only:
            try:
                text = WalArchive(self.repo, self.cluster).read(name).decode("utf-8", "replace")
                found = _STOP.search(text)
                if found:
                    return found.group(1), True
            except (ObjectNotFound, CorruptObject):
                pass
        conn = connect(self.target)
        try:
            return conn.execute("SELECT pg_catalog.pg_current_wal_lsn()::text").fetchone()[0], False
        finally:
            conn.close()

    def _save(self, writer, ids, size, server, info, stop_lsn, label, label_text, secs, tags):
        """Tree and snapshot; the ``pg_base`` field records what PITR needs."""
        path = f"/pg-base/{self.cluster}/base.tar"
        builder = TreeBuilder(self.repo, writer)
        builder.add_file(path, ids, size)
        root = builder.finish()
        manifest = {"cluster": self.cluster, "database": self.target.name, "source": self.method,
                    "dbname": self.target.database, **server, **info,
                    "stop_lsn": stop_lsn, "label": label, "backup_label": label_text}
        stats = {"files": 1, "dirs": 0, "bytes": size, "blobs_new": writer.blobs_new,
                 "bytes_added": writer.bytes_new_raw, "bytes_stored": writer.bytes_stored,
                 "errors": 0, "duration_s": secs}
        return save_snapshot(self.repo, writer, root, kind=KIND, paths=[path],
                             tags=list(tags or []), stats=stats, extra={"pg_base": manifest})
