"""A repository in a local directory."""
from __future__ import annotations

import errno
import os
import threading
from typing import Iterator

from opskit.core.failpoints import failpoint

from .base import Backend, BackendError, ObjectNotFound

_DIRS = ("data", "index", "snapshots", "keys", "locks")


class LocalBackend(Backend):
    """Objects as files under ``root``; writes go to ``tmp-*`` then rename."""

    def __init__(self, root: str, *, fsync: bool = True):
        self.root = os.path.abspath(os.path.expanduser(root))
        self.location = self.root
        self.fsync = fsync
        self._made_dirs: set[str] = set()
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}

    def _path(self, name: str) -> str:
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise BackendError(f"{self.root}: refusing object name {name!r}")
        return os.path.join(self.root, *parts)

    def create_layout(self) -> None:
        """Make the repository directories (mode 0700)."""
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            for d in _DIRS:
                os.makedirs(os.path.join(self.root, d), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"cannot create repository at {self.root}: {exc.strerror}") from None

    def put(self, name: str, data: bytes | memoryview) -> None:
        path = self._path(name)
        folder = os.path.dirname(path)
        if folder not in self._made_dirs:
            try:
                self._make_dirs(folder)
            except OSError as exc:
                raise BackendError(f"{folder}: {exc.strerror}") from None
            self._made_dirs.add(folder)
        tmp = os.path.join(folder, f"tmp-{os.getpid()}-{threading.get_ident()}-{os.path.basename(path)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                half = len(view) // 2
                self._write_all(fd, view[:half])
                failpoint("local.put.mid-write")
                self._write_all(fd, view[half:])
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if self.fsync:
                _fsync_dir(folder)     # the rename itself survives a power cut
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if exc.errno == errno.ENOSPC:
                raise BackendError(f"{self.root}: no space left on device writing {name}") from None
            raise BackendError(f"{path}: {exc.strerror}") from None

    @staticmethod
    def _write_all(fd: int, view: memoryview) -> None:
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def _make_dirs(self, folder: str) -> None:
        """Create ``folder`` (0700); new directory entries are fsynced up to the root."""
        if os.path.isdir(folder):
            return
        missing = []
        probe = folder
        while not os.path.isdir(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if self.fsync:
            for made in missing:
                _fsync_dir(os.path.dirname(made))

    _FD_CACHE = 128

    def _fd(self, name: str) -> int:
        """An open read-only fd for object ``name``, cached by name: restores read
        many small ranges of the same packs, and objects never change once
        written. A cached name was checked by ``_path`` when it was opened."""
        with self._lock:
            fd = self._fds.pop(name, None)
            if fd is None:
                fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)
            self._fds[name] = fd          # most recently used last
            while len(self._fds) > self._FD_CACHE:
                old = next(iter(self._fds))
                os.close(self._fds.pop(old))
            return fd

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        try:
            if length is None:
                with open(self._path(name), "rb") as fh:
                    if offset:
                        fh.seek(offset)
                    return fh.read()
            return os.pread(self._fd(name), length, offset)  # short at end of object, like read()
        except FileNotFoundError:
            raise ObjectNotFound(f"{self._path(name)}: object not found") from None
        except OSError as exc:
            raise BackendError(f"{self._path(name)}: {exc.strerror}") from None

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self._path(prefix.rstrip("/"))
        if not os.path.isdir(base):
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for fname in sorted(filenames):
                if fname.startswith("tmp-"):
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, fname)).st_size
                except FileNotFoundError:
                    continue
                yield f"{rel}/{fname}", size

    def delete(self, name: str) -> None:
        path = self._path(name)
        with self._lock:
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise BackendError(f"{self._path(name)}: {exc.strerror}") from None

    def exists(self, name: str) -> bool:
        return os.path.exists(self._path(name))

    def size(self, name: str) -> int:
        try:
            return os.stat(self._path(name)).st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"{self._path(name)}: object not found") from None

    def remove_temp_files(self, max_age_s: float = 3600) -> int:
        """Remove ``tmp-*`` leftovers of crashed writers older than ``max_age_s``."""
        import time
        removed = 0
        now = time.time()
        for dirpath, _dirs, files in os.walk(self.root):
            for fname in files:
                if fname.startswith("tmp-"):
                    path = os.path.join(dirpath, fname)
                    try:
                        if now - os.stat(path).st_mtime > max_age_s:
                            os.unlink(path)
                            removed += 1
                    except OSError:
                        pass
        return removed


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
