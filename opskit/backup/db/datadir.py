"""A local PostgreSQL data directory read as a base backup's tar stream.

When the cluster's data directory is on this host (its ``global/pg_control``
holds the server's system identifier) a base backup reads the files itself
between ``pg_backup_start`` and ``pg_backup_stop``, as pgBackRest does,
instead of receiving them through the walsender, ``pg_basebackup`` and a
pipe: about a third less CPU (benchmarks/RESULTS.md, #24). The stream it
makes is the tar ``pg_basebackup -Ft -X none`` would write (same exclusions:
WAL, temporary and runtime files, unlogged relations' data forks), with the
``backup_label`` from ``pg_backup_stop`` as its last member, so the snapshot
and its restore are the same either way.

File data goes from ``read`` straight into the chunker's buffer. A file that
shrinks while read is padded with zeros and one that grows is cut at its
size when its header was written, as pg_basebackup does: the WAL replayed
from the backup's start makes every page consistent again.
"""
from __future__ import annotations

import io
import os
import stat
import sys
import tarfile
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from opskit.core.failpoints import failpoint

from ..tree import IdNames

BLOCK = 512
# basebackup.c: directories whose contents are not backed up (the directory itself is)
SKIP_CONTENTS = {"pg_wal", "pg_stat_tmp", "pg_replslot", "pg_dynshmem", "pg_notify",
                 "pg_serial", "pg_snapshots", "pg_subtrans"}
SKIP_FILES = {"postgresql.auto.conf.tmp", "current_logfiles.tmp", "backup_label",
              "tablespace_map", "backup_manifest", "postmaster.pid", "postmaster.opts"}
SKIP_PREFIXES = ("pgsql_tmp", "pg_internal.init")
READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW


class DataDirError(Exception):
    """A data directory that cannot be read as a base backup; the message names the path."""


def system_identifier(datadir: str) -> int | None:
    """The system identifier in ``datadir``'s pg_control (its first 8 bytes,
    this machine's byte order), None when it cannot be read."""
    try:
        with open(os.path.join(datadir, "global", "pg_control"), "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return int.from_bytes(head, sys.byteorder) if len(head) == 8 else None


def serves(datadir: str, started: int, port: int) -> bool:
    """Whether the server running on ``datadir`` (its postmaster.pid) is the one
    we are connected to: started at ``started`` (epoch seconds, as the server
    reports it: a second or two of slack) and listening on ``port``. A
    standby on this host, or a copy, has the same system identifier but not
    the same postmaster: reading its files under the primary's
    pg_backup_start would store a stale, silently broken backup."""
    try:
        with open(os.path.join(datadir, "postmaster.pid")) as fh:
            lines = fh.read().splitlines()
        pid_started, pid_port = int(lines[2]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return False
    return abs(pid_started - started) <= 2 and pid_port == port


@dataclass
class Entry:
    """One member to come: a path below the data directory and its lstat."""

    rel: str
    st: os.stat_result


def walk(datadir: str) -> Iterator[Entry]:
    """Every member of the base backup, directories before their contents, in
    name order (a stable stream dedups week to week). DataDirError for a
    tablespace (pg_tblspc entries: not supported by base backups yet)."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(datadir, rel)) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            continue                     # a directory dropped while we walk
        except OSError as exc:
            raise DataDirError(f"{os.path.join(datadir, rel)}: {exc.strerror}") from None
        unlogged = _unlogged(entries) if rel.startswith("base/") else set()
        subdirs = []
        for e in entries:
            path = f"{rel}/{e.name}" if rel else e.name
            if _skipped(rel, e.name, unlogged):
                continue
            if rel == "pg_tblspc":
                raise DataDirError(f"{datadir}: the cluster has tablespaces ({path}); not "
                                   "supported by base backups yet")
            try:
                st = os.stat(e.path) if path == "pg_wal" else e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue                 # a relation dropped while we walk
            yield Entry(path, st)
            if stat.S_ISDIR(st.st_mode):
                if path in SKIP_CONTENTS:
                    if path == "pg_wal":   # as pg_basebackup: the directory and archive_status
                        yield Entry("pg_wal/archive_status", st)
                    continue
                subdirs.append(path)
        stack.extend(reversed(subdirs))


def _skipped(rel: str, name: str, unlogged: set[str]) -> bool:
    if name in SKIP_FILES and rel == "" or name.startswith(SKIP_PREFIXES):
        return True
    return bool(unlogged) and _relfilenode(name) in unlogged and not name.endswith("_init")


def _relfilenode(name: str) -> str:
    return name.split(".", 1)[0].split("_", 1)[0]


def _unlogged(entries) -> set[str]:
    """Relfilenodes with an init fork: an unlogged relation, whose other forks
    recovery rebuilds from it (so pg_basebackup leaves them out)."""
    return {e.name[:-5] for e in entries if e.name.endswith("_init") and e.name[:-5].isdigit()}


def header(rel: str, st: os.stat_result, names: IdNames, *, link: str = "") -> bytes:
    """A GNU tar header (long names as 'L' members) for one entry."""
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname, info.gname = names.user(st.st_uid) or "", names.group(st.st_gid) or ""
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:
        info.size = st.st_size
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


class DataDirTar(io.RawIOBase):
    """``readinto`` hands out the tar stream of ``datadir``: the walk's members,
    then what ``tail()`` returns (called once, at the walk's end: the
    backup_label and friends from pg_backup_stop), then the end blocks.
    ``files`` and ``bytes`` count the members as TarWatch does."""

    def __init__(self, datadir: str, tail: Callable[[], list[tuple[str, bytes]]]):
        self.datadir = datadir
        self.files = 0
        self.bytes = 0
        self._entries = walk(datadir)
        self._tail: Callable | None = tail
        self._names = IdNames()
        self._pending = memoryview(b"")   # header, padding, a tail member: handed out first
        self._fd: int | None = None
        self._left = 0                    # bytes of the open file still to hand out
        self._pad = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        filled = 0
        while filled < len(view):
            if self._pending:
                n = min(len(self._pending), len(view) - filled)
                view[filled:filled + n] = self._pending[:n]
                self._pending = self._pending[n:]
                filled += n
            elif self._left:
                filled += self._read_file(view[filled:])
            elif not self._next():
                break
        return filled

    def _read_file(self, view: memoryview) -> int:
        want = min(self._left, len(view))
        try:
            got = os.readv(self._fd, [view[:want]])
        except OSError as exc:
            raise DataDirError(f"{self._path}: {exc.strerror}") from None
        if not got:                       # shrank while read: zeros, as pg_basebackup
            got = want
            view[:want] = bytes(want)
        self._left -= got
        if not self._left:
            os.close(self._fd)
            self._fd = None
            self._pending = memoryview(bytes(self._pad))
        return got

    def _next(self) -> bool:
        """Queue the next member; False at the stream's end."""
        for entry in self._entries:
            if self._start(entry):
                return True
        if self._tail is not None:
            tail, self._tail = self._tail, None
            parts = []
            for name, data in tail():
                st = os.stat_result((0o100600, 0, 0, 1, os.geteuid(), os.getegid(), len(data),
                                     0, int(time.time()), 0))
                parts += [header(name, st, self._names), data, bytes(-len(data) % BLOCK)]
                self.files += 1
                self.bytes += len(data)
            self._pending = memoryview(b"".join(parts) + bytes(2 * BLOCK))
            return True
        return False

    def _start(self, entry: Entry) -> bool:
        st = entry.st
        self._path = os.path.join(self.datadir, entry.rel)
        link = ""
        if stat.S_ISREG(st.st_mode):
            failpoint("basebackup.datadir.file")      # tests kill the backup here
            try:
                self._fd = os.open(self._path, READ_FLAGS | _noatime())
            except FileNotFoundError:
                return False              # dropped since the walk saw it
            except OSError as exc:
                raise DataDirError(f"{self._path}: {exc.strerror}") from None
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            self._left, self._pad = st.st_size, -st.st_size % BLOCK
            if not st.st_size:
                os.close(self._fd)
                self._fd = None
        elif stat.S_ISLNK(st.st_mode):
            try:
                link = os.readlink(self._path)
            except FileNotFoundError:
                return False
        elif not stat.S_ISDIR(st.st_mode):
            return False                  # sockets, FIFOs: pg_basebackup skips them too
        self._pending = memoryview(header(entry.rel, st, self._names, link=link))
        self.files += 1
        self.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().close()


def _noatime() -> int:
    """O_NOATIME when this process may use it (root or the files' owner: tried once)."""
    global _NOATIME
    if _NOATIME is None:
        _NOATIME = getattr(os, "O_NOATIME", 0) if os.geteuid() == 0 else 0
    return _NOATIME


_NOATIME: int | None = None
