"""Point-in-time restore of a ``pg-base`` snapshot into a data directory.

The base backup's tar is streamed from the repository (every blob checked
against its keyed id, decoded on a thread per core) and unpacked into the
target directory in this process by a writer thread (unpack.py), every
file on disk before the restore ends; then the
recovery settings are appended to ``postgresql.auto.conf`` — a
``restore_command`` calling ``opskit backup wal-fetch``, the recovery
target and what to do on reaching it — and ``recovery.signal`` is created.
Starting PostgreSQL on the directory replays the archived WAL up to the
target. A directory that holds files is refused unless ``force`` (which
empties it first); a directory a running server uses is always refused.
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import pwd
import shutil
import time
from dataclasses import dataclass

from opskit.core.errors import OperationalError, UsageError

from ..cores import available_cores
from ..repository import Repository
from .streams import find_files, read_content
from .tarstream import TarError
from .unpack import UnpackError, unpack
from .walchain import parse_lsn

ACTIONS = ("pause", "promote", "shutdown")


@dataclass
class RecoveryTarget:
    """At most one of time / lsn / xid; none means 'replay every archived segment'."""

    time: str | None = None
    lsn: str | None = None
    xid: str | None = None
    action: str = "promote"
    inclusive: bool = True

    def validate(self) -> None:
        given = [k for k in ("time", "lsn", "xid") if getattr(self, k)]
        if len(given) > 1:
            raise UsageError("give one of --to-time, --to-lsn, --to-xid")
        if self.time:
            try:
                t = dt.datetime.fromisoformat(self.time.replace("Z", "+00:00"))
            except ValueError:
                raise UsageError(f"--to-time {self.time!r}: expected an ISO time like "
                                 "2026-03-01T14:05:00+01:00") from None
            if t.tzinfo is None:
                raise UsageError(f"--to-time {self.time!r}: give a time zone (Z or +01:00): "
                                 "the server's would be guessed otherwise")
        if self.lsn:
            try:
                parse_lsn(self.lsn)
            except ValueError as exc:
                raise UsageError(f"--to-lsn: {exc}") from None
        if self.xid and not self.xid.isdigit():
            raise UsageError(f"--to-xid {self.xid!r}: a transaction id is a number")
        if self.action not in ACTIONS:
            raise UsageError(f"--target-action {self.action!r}: one of {', '.join(ACTIONS)}")

    def settings(self, restore_command: str) -> dict[str, str]:
        out = {"restore_command": restore_command}
        if self.time:
            out["recovery_target_time"] = pg_time(self.time)
        elif self.lsn:
            out["recovery_target_lsn"] = self.lsn
        elif self.xid:
            out["recovery_target_xid"] = self.xid
        if self.time or self.lsn or self.xid:
            out["recovery_target_action"] = self.action
            out["recovery_target_inclusive"] = "on" if self.inclusive else "off"
        else:
            out["recovery_target_timeline"] = "latest"
        return out


def pg_time(text: str) -> str:
    """An ISO time as PostgreSQL's recovery_target_time reads it (UTC, no 'T', no 'Z')."""
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.%f+00")


@dataclass
class PhysicalRestoreReport:
    snapshot: str
    cluster: str
    target: str
    bytes: int = 0
    files: int = 0
    seconds: float = 0.0
    emptied: bool = False
    settings: dict | None = None


def quote_setting(value: str) -> str:
    """A value as a quoted string literal of postgresql.conf."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def datadir_file(datadir: str, name: str, *, append: bool = False):
    """``name`` in a restored data directory opened for writing, never through a
    symlink: appended to when ``append`` (a symlink there is refused: the
    snapshot's own file must not lead elsewhere), else made anew (whatever the
    snapshot had under the name is removed first). A binary file object."""
    path = os.path.join(datadir, name)
    if append:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise OperationalError(f"{path}: the snapshot has a symlink here (to "
                                   f"{os.readlink(path)!r}); refused, nothing written "
                                   "through it") from None
    else:
        try:
            if os.path.lexists(path) and not os.path.isdir(path):
                os.unlink(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                         os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise OperationalError(f"{path}: {exc.strerror}") from None
    return os.fdopen(fd, "wb")


def running_pid(datadir: str) -> int | None:
    """The pid of a live postmaster using ``datadir`` (from postmaster.pid), else None."""
    try:
        with open(os.path.join(datadir, "postmaster.pid")) as fh:
            pid = int(fh.readline().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def prepare_target(datadir: str, force: bool) -> bool:
    """Make sure ``datadir`` may be written; True when it was emptied (``force``)."""
    pid = running_pid(datadir)
    if pid:
        raise UsageError(f"{datadir}: a PostgreSQL server (pid {pid}) runs on this data "
                         "directory; stop it first (pg_ctl stop), --force does not override "
                         "this")
    if not os.path.isdir(datadir):
        if os.path.exists(datadir):
            raise UsageError(f"--target-datadir {datadir}: not a directory")
        os.makedirs(datadir, mode=0o700)
        return False
    entries = os.listdir(datadir)
    if not entries:
        return False
    if not force:
        raise UsageError(f"--target-datadir {datadir} is not empty ({len(entries)} entries); "
                         "give --force to replace its contents")
    for name in entries:
        path = os.path.join(datadir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return True


class PhysicalRestore:
    """Unpack a pg-base snapshot into ``datadir`` and set up recovery to ``target``."""

    def __init__(self, repo: Repository, snap: dict, datadir: str, target: RecoveryTarget,
                 restore_command: str, *, force: bool = False, owner: str | None = None):
        self.repo = repo
        self.snap = snap
        self.datadir = os.path.abspath(datadir)
        self.target = target
        self.restore_command = restore_command
        self.force = force
        self.owner = owner

    def run(self) -> PhysicalRestoreReport:
        start = time.monotonic()
        self.target.validate()
        man = self.snap["pg_base"]
        rep = PhysicalRestoreReport(self.snap["id"], man["cluster"], self.datadir)
        owner = self._owner()
        rep.emptied = prepare_target(self.datadir, self.force)
        node = find_files(self.repo, self.snap)[f"/pg-base/{man['cluster']}/base.tar"]
        what = f"snapshot {self.snap['id'][:12]} base.tar"
        # a damaged pack raises CorruptObject before recovery.signal exists:
        # never a complete-looking restore
        try:
            # blobs decoded on a thread per core ahead of the writer thread; every
            # file flushed to disk before the restore reports done (as pgBackRest)
            done = unpack(read_content(self.repo, node, threads=available_cores()),
                          self.datadir, owner=owner, sync=True,
                          same_owner=owner is None and os.geteuid() == 0)
        except (TarError, UnpackError) as exc:
            raise OperationalError(f"{what}: {exc} (restore into {self.datadir} incomplete)"
                                   ) from None
        rep.files, rep.bytes = done.files, done.bytes
        rep.settings = self.target.settings(self.restore_command)
        self._write_recovery(rep.settings)
        os.chmod(self.datadir, 0o700)
        if owner is not None:        # unpack gave every member this owner already
            for name in ("", "recovery.signal", "postgresql.auto.conf"):
                os.lchown(os.path.join(self.datadir, name), *owner)
        rep.seconds = round(time.monotonic() - start, 3)
        return rep

    def _owner(self) -> tuple[int, int] | None:
        if self.owner:
            try:
                info = pwd.getpwnam(self.owner)
            except KeyError:
                raise UsageError(f"--owner {self.owner}: no such user") from None
            return info.pw_uid, info.pw_gid
        if os.geteuid() == 0 and os.path.isdir(self.datadir):
            st = os.stat(self.datadir)    # keep the owner the admin gave the directory
            return st.st_uid, st.st_gid
        return None                       # as the tar says (the backed-up server's user)

    def _write_recovery(self, settings: dict[str, str]) -> None:
        """Append the settings to postgresql.auto.conf and create recovery.signal,
        never through a symlink the snapshot put there (one written with a
        write-only key could point them at /etc/shadow: see datadir_file)."""
        text = f"\n# added by opskit backup db restore (snapshot {self.snap['id'][:12]})\n" + \
            "".join(f"{key} = {quote_setting(value)}\n" for key, value in settings.items())
        with datadir_file(self.datadir, "postgresql.auto.conf", append=True) as fh:
            fh.write(text.encode())
        with datadir_file(self.datadir, "recovery.signal"):
            pass
