"""Unpack a base backup's tar stream into a data directory, in this process.

The restore decodes blobs (pack reads, AES, zstd, the keyed id check) on
threads and feeds the plain tar here; a writer thread does every filesystem
call in stream order, so decoding and the kernel's file writes overlap with
no pipe between them (the pipe into GNU tar cost more system time than
pgBackRest's whole restore: benchmarks/RESULTS.md, #24). With ``sync`` each
file's writeback starts every 8 MiB and a third thread flushes and closes
finished files, so the restore ends with its files on disk.

Safe against a hostile stream (one written by another key holder):
- names are relative: a leading '/' or './' is dropped, '..' is refused;
- every path is opened one component at a time from the target directory's
  descriptor with O_NOFOLLOW, so nothing is written through a symlink;
- files are created with O_EXCL, so a member never replaces what an earlier
  one (or the admin) put there;
- symlinks are made after every file and directory, hard links, devices,
  FIFOs and pax headers are refused (``pg_basebackup`` writes none);
- modes lose setuid/setgid/sticky and what ``umask`` masks (as GNU tar under
  umask 027 and tarfile's 'tar' filter).
"""
from __future__ import annotations

import os
import pwd
import grp
import queue
import threading
from typing import Callable, Iterable

from .tarstream import Member, TarError, TarParser

UMASK = 0o027
QUEUE_ITEMS = 32                 # blocks in flight to the writer (blobs: ~1 MiB each)
MAX_DIR_FDS = 256
WRITEBACK_STEP = 8 << 20          # with sync: hand each 8 MiB written to the disk at once                # open directory descriptors kept for the next member
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_STOP = object()


class UnpackError(Exception):
    """A member that cannot or must not be unpacked; the message names it."""


def member_parts(member: Member) -> tuple[bytes, ...]:
    """The member's path as components below the target; UnpackError for '..'."""
    parts = tuple(p for p in member.name.split(b"/") if p and p != b".")
    if b".." in parts:
        raise UnpackError(f"{member.shown()}: a member name holding '..' is refused")
    if any(b"\0" in p for p in parts):
        raise UnpackError(f"{member.shown()}: a NUL in a member name")
    return parts


class Owners:
    """uid/gid to give a member: a fixed pair, or the header's (user name first, as GNU tar)."""

    def __init__(self, fixed: tuple[int, int] | None, from_header: bool):
        self.fixed = fixed
        self.from_header = from_header
        self._cache: dict[tuple, tuple[int, int]] = {}

    def __call__(self, m: Member) -> tuple[int, int] | None:
        if self.fixed is not None:
            return self.fixed
        if not self.from_header:
            return None
        key = (m.uname, m.gname, m.uid, m.gid)
        if key not in self._cache:
            self._cache[key] = (_lookup(pwd.getpwnam, m.uname, m.uid, "pw_uid"),
                                _lookup(grp.getgrnam, m.gname, m.gid, "gr_gid"))
        return self._cache[key]


def _lookup(fn: Callable, name: str, number: int, field: str) -> int:
    try:
        return getattr(fn(name), field) if name else number
    except KeyError:
        return number


class Syncer:
    """``fdatasync`` and close descriptors on a thread of its own, so the disk's
    flush of one file overlaps the writing of the next (as pgBackRest's
    restore has its files on disk when it ends)."""

    def __init__(self, depth: int = 64):
        self._queue: queue.Queue = queue.Queue(depth)
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._work, name="opskit-fsync", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            fd = self._queue.get()
            if fd is None:
                self._queue.task_done()
                return
            try:
                os.fdatasync(fd)
            except OSError as exc:
                self.error = self.error or exc
            finally:
                os.close(fd)
                self._queue.task_done()

    def put(self, fd: int) -> None:
        if self.error is not None:
            os.close(fd)
            raise self.error
        self._queue.put(fd)

    def drain(self) -> None:
        """Every file handed over is on disk; OSError when one could not be flushed."""
        self._queue.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class FileOps:
    """The filesystem side, run by the writer thread in stream order."""

    def __init__(self, root: str, owners: Owners, umask: int, sync: bool):
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.owners = owners
        self.umask = umask
        self.syncer = Syncer() if sync else None
        self._dirs: dict[tuple, int] = {}
        self._fd: int | None = None
        self._pos = self._started = 0      # bytes written to the open file, writeback started
        self._links: list[tuple[tuple, bytes, str]] = []
        self._dir_meta: list[tuple[tuple, int, int, str]] = []

    def _dir(self, parts: tuple) -> int:
        """A descriptor of directory ``parts``, opened component by component
        without following a symlink; missing directories are made (0700)."""
        if not parts:
            return self.root_fd
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        parent = self._dir(parts[:-1])
        try:
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            os.mkdir(parts[-1], 0o700, dir_fd=parent)
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        if len(self._dirs) >= MAX_DIR_FDS:
            self._close_dirs()
        self._dirs[parts] = fd
        return fd

    def _close_dirs(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def mkdir(self, parts: tuple, m: Member) -> None:
        try:
            os.mkdir(parts[-1], 0o700, dir_fd=self._dir(parts[:-1]))
        except FileExistsError:
            pass                      # opening it below refuses anything but a directory
        fd = self._dir(parts)
        ids = self.owners(m)
        if ids is not None:
            os.fchown(fd, *ids)
        self._dir_meta.append((parts, m.mode & 0o777 & ~self.umask, m.mtime, m.shown()))

    def open(self, parts: tuple, m: Member) -> None:
        self._fd = os.open(parts[-1], FILE_FLAGS, m.mode & 0o777 & ~self.umask,
                           dir_fd=self._dir(parts[:-1]))
        self._pos = self._started = 0
        ids = self.owners(m)
        if ids is not None:
            os.fchown(self._fd, *ids)

    def write(self, view: memoryview) -> None:
        self._pos += len(view)
        while view:
            view = view[os.write(self._fd, view):]
        if self.syncer is not None and self._pos - self._started >= WRITEBACK_STEP:
            # start the disk's writeback now (on dirty pages DONTNEED only
            # queues them), so the fdatasync at the file's end finds little left
            os.posix_fadvise(self._fd, self._started, self._pos - self._started,
                             os.POSIX_FADV_DONTNEED)
            self._started = self._pos

    def close(self, mtime: int) -> None:
        fd, self._fd = self._fd, None
        try:
            ns = mtime * 1_000_000_000
            os.utime(fd, ns=(ns, ns))
        except BaseException:
            os.close(fd)
            raise
        if self.syncer is not None:
            self.syncer.put(fd)       # flushed and closed there, while the next file is written
        else:
            os.close(fd)

    def symlink(self, parts: tuple, m: Member) -> None:
        self._links.append((parts, m.linkname, m.shown()))

    def finish(self) -> None:
        """Symlinks last (nothing was written through one), then directory modes
        and times, deepest first, and the directory entries to disk with ``sync``."""
        for parts, target, where in self._links:
            _named_call(where, os.symlink, target, parts[-1], dir_fd=self._dir(parts[:-1]))
        for parts, mode, mtime, where in sorted(self._dir_meta, key=lambda d: -len(d[0])):
            fd = _named_call(where, self._dir, parts)
            os.fchmod(fd, mode)
            ns = mtime * 1_000_000_000
            os.utime(fd, ns=(ns, ns))
        if self.syncer is not None:
            self.syncer.drain()
            for parts, *_ in self._dir_meta:
                os.fsync(self._dir(parts))
            os.fsync(self.root_fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.syncer is not None:
            self.syncer.stop()
        self._close_dirs()
        os.close(self.root_fd)


class TarUnpacker(TarParser):
    """Feed a tar stream with ``feed``; ``close()`` completes the unpack and
    raises the first failure (UnpackError, TarError, OSError) of either side."""

    def __init__(self, root: str, *, owner: tuple[int, int] | None = None,
                 same_owner: bool = False, umask: int = UMASK, sync: bool = False):
        super().__init__()
        self.ops = FileOps(root, Owners(owner, same_owner), umask, sync)
        self.files = 0
        self.bytes = 0
        self._queue: queue.Queue = queue.Queue(QUEUE_ITEMS)
        self._error: BaseException | None = None
        self._where = ""
        self._thread = threading.Thread(target=self._work, name="opskit-unpack", daemon=True)
        self._thread.start()

    def _put(self, *item) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item[0] is _STOP:
                return
            if self._error is not None:
                continue                  # drain: the feeding side stops at its next put
            fn, where, *args = item
            try:
                fn(*args)
            except BaseException as exc:  # handed to the feeding thread
                self._error = _named(exc, where)

    def start(self, m: Member) -> None:
        self.files += 1
        self.bytes += m.size
        parts = member_parts(m)
        where = m.shown()
        if m.kind == b"5":
            if parts:
                self._put(self.ops.mkdir, where, parts, m)
        elif m.regular:
            if not parts:
                raise UnpackError(f"{where}: a file member without a name")
            self._put(self.ops.open, where, parts, m)
        elif m.kind == b"2":
            if not parts:
                raise UnpackError(f"{where}: a symlink member without a name")
            self._put(self.ops.symlink, where, parts, m)
        else:
            raise UnpackError(f"{where}: tar member type {m.kind.decode('latin-1')!r} is "
                              "not unpacked (a base backup holds files, directories and "
                              "symlinks only)")
        self._where = where

    def data(self, view: memoryview) -> None:
        if not self._member.regular:
            raise UnpackError(f"{self._where}: a directory or symlink member carrying data")
        self._put(self.ops.write, self._where, view)

    def end(self) -> None:
        m = self._member
        if m is not None and m.regular:
            self._put(self.ops.close, self._where, m.mtime)

    def close(self) -> None:
        """End of the stream: finish the unpack, or raise what went wrong."""
        try:
            self.finish()
            self._put(self.ops.finish, "symlinks and directories")
        finally:
            self._queue.put((_STOP,))
            self._thread.join()
            self.ops.release()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop the writer after a failure on the feeding side (nothing more is written)."""
        self._error = self._error or UnpackError("aborted")
        self._queue.put((_STOP,))
        self._thread.join()
        self.ops.release()


def _named_call(where: str, fn: Callable, *args, **kwargs):
    """``fn(...)``; an OSError becomes an UnpackError naming the member ``where``."""
    try:
        return fn(*args, **kwargs)
    except OSError as exc:
        raise _named(exc, where) from None


def _named(exc: BaseException, where: str) -> BaseException:
    if isinstance(exc, OSError):
        return UnpackError(f"{where}: {exc.strerror or exc}")
    return exc


def unpack(blocks: Iterable, root: str, *, owner: tuple[int, int] | None = None,
           same_owner: bool = False, sync: bool = False) -> TarUnpacker:
    """Unpack the tar stream ``blocks`` into the existing directory ``root``.

    An exception from ``blocks`` (a damaged pack: CorruptObject) stops the
    writer and is raised as is; a bad stream or member raises TarError or
    UnpackError naming it. Returns the unpacker (``files``, ``bytes``)."""
    unpacker = TarUnpacker(root, owner=owner, same_owner=same_owner, sync=sync)
    try:
        for block in blocks:
            unpacker.feed(block)
    except BaseException:
        unpacker.abort()
        raise
    unpacker.close()
    return unpacker
