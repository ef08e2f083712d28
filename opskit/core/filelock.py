"""Advisory inter-process locks on a lock file (``fcntl.flock``).

    with FileLock("/var/lib/opskit/audit/audit.log.lock", timeout=30):
        ...   # no other process holds this lock here

* ``shared=False`` (default) takes an exclusive lock: nobody else holds the
  lock, shared or exclusive. ``shared=True`` takes a shared lock: any number
  of shared holders, no exclusive one.
* ``timeout=None`` waits as long as it takes; ``timeout=0`` tries once;
  ``timeout=N`` waits up to N seconds. When the wait ends without the lock,
  ``LockHeldError`` (exit code 3) names the lock file and, when known, the
  pid of the exclusive holder.
* The lock file is created (mode 0600) when missing and never deleted:
  unlinking a lock file that another process has open silently breaks mutual
  exclusion. Its content is informational only (the exclusive holder's pid).
* The kernel drops the lock when the holder exits or crashes, so there are
  no stale locks to clean up. flock is per open file description: two
  ``FileLock`` objects on the same path exclude each other even inside one
  process (so nesting them deadlocks), and the lock is not inherited in a
  meaningful way across ``fork`` -- take it in the process that needs it.
* flock is advisory and local: it only excludes processes that also use it,
  and it is not reliable on network file systems (NFS, CIFS).
"""
from __future__ import annotations

import fcntl
import os
import time

from .errors import LockHeldError, OperationalError

_POLL_FIRST = 0.002
_POLL_MAX = 0.05


class FileLock:
    """Context manager holding an flock on ``path`` (see module docstring)."""

    def __init__(self, path: str | os.PathLike, shared: bool = False,
                 timeout: float | None = None):
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be None or >= 0")
        self.path = os.fspath(path)
        self.shared = shared
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "FileLock":
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this FileLock")
        flags = (os.O_RDONLY if self.shared else os.O_RDWR) | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise OperationalError(f"cannot open lock file {self.path}: {exc.strerror}") from None
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            self._wait(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if not self.shared:
            self._note_holder(fd)
        return self

    def _wait(self, fd: int, mode: int) -> None:
        if self.timeout is None:
            fcntl.flock(fd, mode)
            return
        deadline = time.monotonic() + self.timeout
        delay = _POLL_FIRST
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockHeldError(self._held_message(fd),
                                    hint="another opskit process is working; try again when it "
                                         "has finished") from None
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL_MAX)

    def _held_message(self, fd: int) -> str:
        notes = []
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            if text.isdigit():
                notes.append(f"pid {text}")
        except OSError:
            pass
        if self.timeout:
            notes.append(f"waited {self.timeout:g}s")
        extra = f" ({', '.join(notes)})" if notes else ""
        return f"lock {self.path} is held by another process{extra}"

    @staticmethod
    def _note_holder(fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # informational only

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if not self.shared:
                try:
                    os.ftruncate(fd, 0)
                except OSError:
                    pass
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __repr__(self) -> str:
        kind = "shared" if self.shared else "exclusive"
        state = "held" if self.locked else "free"
        return f"<FileLock {self.path} {kind} {state}>"


__all__ = ["FileLock"]
