"""Physical base backups (``backup db basebackup``): snapshot kind ``pg-base``.

``pg_basebackup -Ft -X none -D -`` writes the cluster as one tar stream to
its stdout; the stream is chunked straight into the repository (no copy on
disk, deduplicated week to week) as ``/pg-base/<cluster>/base.tar``. The WAL
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

from ..backends import ObjectNotFound
from ..repository import CorruptObject, Repository
from .pgtools import DatabaseError, connect, find_tools, last_line, major_of
from .settings import DatabaseTarget
from .streams import TreeBuilder, save_snapshot, store_command
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


def parse_label(text: str) -> dict:
    """start_lsn, start_wal and timeline from a backup_label; DatabaseError when absent."""
    start, tli = _START.search(text), _TLI.search(text)
    if not start or not tli:
        raise DatabaseError("base backup: no usable backup_label in pg_basebackup's output")
    return {"start_lsn": start.group(1), "start_wal": start.group(2), "timeline": int(tli.group(1))}


class BaseBackup:
    """One cluster's base backup into an open repository (the caller holds a shared lock)."""

    def __init__(self, repo: Repository, target: DatabaseTarget, cluster: str, *,
                 bindir: str | None = None, checkpoint: str = "spread"):
        self.repo = repo
        self.target = target
        self.cluster = check_cluster(cluster)
        self.bindir = bindir
        self.checkpoint = checkpoint

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
        tools = find_tools(major_of(server["server_version_num"]), self.bindir,
                           program="pg_basebackup")
        label = f"opskit {self.cluster} {dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
        cmd = [tools.path("pg_basebackup"), "-d", self.target.conninfo(), "-Ft", "-X", "none",
               "-D", "-", "-c", self.checkpoint, "-l", label, "--no-manifest"]
        writer = self.repo.blob_writer()
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
        info = parse_label(watch.members.get("backup_label", b"").decode("utf-8", "replace"))
        stop, exact = self._stop_lsn(info, server["wal_segment_size"])
        return self._save(writer, ids, size, server, {**info, "stop_exact": exact}, stop, label,
                          watch.members["backup_label"].decode("utf-8", "replace"),
                          round(time.monotonic() - start, 3), tags)

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
        manifest = {"cluster": self.cluster, "database": self.target.name,
                    "dbname": self.target.database, **server, **info,
                    "stop_lsn": stop_lsn, "label": label, "backup_label": label_text}
        stats = {"files": 1, "dirs": 0, "bytes": size, "blobs_new": writer.blobs_new,
                 "bytes_added": writer.bytes_new_raw, "bytes_stored": writer.bytes_stored,
                 "errors": 0, "duration_s": secs}
        return save_snapshot(self.repo, writer, root, kind=KIND, paths=[path],
                             tags=list(tags or []), stats=stats, extra={"pg_base": manifest})
