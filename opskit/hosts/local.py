"""LocalHost: the machine opskit runs on, optionally seen through a sysroot.

Commands run with ``subprocess`` and no shell, in their own process group, so
a timeout kills the command and everything it started.

With ``sysroot`` (e.g. a mounted disk image or a container root), every
*file* path is mapped under that prefix: ``read_file('/etc/passwd')`` reads
``<sysroot>/etc/passwd``. Paths that would leave the sysroot -- through
``..`` or through a symlink whose target resolves outside it (absolute
symlinks included) -- raise HostPathError. ``realpath`` is the exception:
it resolves as chroot would, so an absolute symlink starts again at the
sysroot and the answer never leaves it. ``run`` (and ``run_batch``) still
run on the real machine: callers pass ``--root``/``--prefix`` style flags
themselves, using ``host.sysroot``.
"""
from __future__ import annotations

import errno
import os
import posixpath
import secrets
import signal
import stat as _stat
import subprocess
import time

from .base import (FileStat, Host, HostPathError, HostTimeout, RunResult, file_error,
                   format_argv)
from .batch import run_in_one_shell

_KILL_GRACE = 2.0  # seconds to collect output after killing a timed-out command
_MAX_LINKS = 40    # symlinks followed by one realpath, as Linux allows (ELOOP past it)


class LocalHost(Host):
    """The local machine. ``sysroot`` maps file paths under a directory."""

    def __init__(self, name: str = "localhost", sysroot: str | None = None):
        self.name = name
        self.sysroot = os.path.realpath(os.path.expanduser(sysroot)) if sysroot else None
        if self.sysroot and not os.path.isdir(self.sysroot):
            raise HostPathError(f"{self.describe()}: sysroot {self.sysroot} is not a directory",
                                host=name)

    def describe(self) -> str:
        if self.sysroot:
            return f"{self.name} (local, sysroot {self.sysroot})"
        return f"{self.name} (local)"

    # --- commands -----------------------------------------------------------------
    def run(self, argv, *, timeout=None, input=None, check=False, env=None) -> RunResult:
        argv = [os.fspath(a) for a in argv]
        if not argv:
            raise ValueError("run() needs a non-empty argv list")
        full_env = None
        if env:
            full_env = dict(os.environ)
            full_env.update({str(k): str(v) for k, v in env.items()})
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                start_new_session=True, close_fds=True)
        except FileNotFoundError:
            return self._finish(argv, 127, b"", f"{argv[0]}: command not found\n".encode(),
                                started, check)
        except PermissionError:
            return self._finish(argv, 126, b"", f"{argv[0]}: permission denied\n".encode(),
                                started, check)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err = self._kill(proc)
            raise HostTimeout(
                f"{self.describe()}: command '{format_argv(argv)}' timed out after "
                f"{timeout:g}s and was killed", host=self.name, stdout=out, stderr=err) from None
        except BaseException:
            self._kill(proc)
            raise
        return self._finish(argv, proc.returncode, out, err, started, check)

    def run_batch(self, commands, *, timeout=None) -> list[RunResult]:
        return run_in_one_shell(self, commands, timeout)

    def _finish(self, argv, rc, out, err, started, check) -> RunResult:
        result = RunResult(self.name, list(argv), rc, out or b"", err or b"",
                           time.monotonic() - started)
        return result.check() if check else result

    @staticmethod
    def _kill(proc: subprocess.Popen) -> tuple[bytes, bytes]:
        """Kill the command's whole process group and collect what it wrote."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.kill()                        # in case the group kill was refused
        try:
            out, err = proc.communicate(timeout=_KILL_GRACE)
        except subprocess.TimeoutExpired:  # a child left the group and holds the pipes
            for pipe in (proc.stdout, proc.stderr):
                if pipe:
                    pipe.close()
            proc.wait()
            out, err = b"", b""
        return out or b"", err or b""

    # --- paths --------------------------------------------------------------------
    def _map(self, path: str, *, follow_symlinks: bool = True) -> str:
        """The real path for ``path``; refuse anything outside the sysroot."""
        path = os.fspath(path)
        if not self.sysroot:
            return path
        depth = 0
        for part in path.split("/"):
            if part in ("", "."):
                continue
            depth = depth - 1 if part == ".." else depth + 1
            if depth < 0:
                raise HostPathError(f"{self.describe()}: path {path!r} leaves the sysroot "
                                    "through '..'", host=self.name)
        mapped = os.path.join(self.sysroot, os.path.normpath("/" + path).lstrip("/"))
        if follow_symlinks:
            real = os.path.realpath(mapped)
        else:  # the last component itself is not followed
            parent, base = os.path.split(mapped.rstrip("/") or "/")
            real = os.path.join(os.path.realpath(parent), base) if base else os.path.realpath(parent)
        if real != self.sysroot and not real.startswith(self.sysroot.rstrip("/") + "/"):
            raise HostPathError(f"{self.describe()}: path {path!r} resolves to {real}, outside "
                                "the sysroot (a symlink escapes it)", host=self.name)
        return real

    def realpath(self, path: str) -> str:
        try:
            return self._resolve(os.fspath(path))
        except OSError as exc:
            if exc.errno == errno.ELOOP:   # reported as missing, as SFTP servers do
                exc = FileNotFoundError(errno.ELOOP, exc.strerror)
            raise self._oserror(path, exc) from None

    def _resolve(self, path: str) -> str:
        """Walk ``path`` one component at a time, as the kernel would with the
        sysroot as its root directory; returns the path as seen from inside."""
        root = self.sysroot or ""
        start = "/" if path.startswith("/") or root else os.getcwd()
        resolved, todo, links = start, path.split("/"), 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                resolved = posixpath.dirname(resolved)   # '/..' stays '/'
                continue
            here = posixpath.join(resolved, part)
            st = os.lstat(root + here)
            if _stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                target = os.readlink(root + here)
                resolved = "/" if target.startswith("/") else resolved
                todo[:0] = target.split("/")
            elif todo and not _stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            else:
                resolved = here
        return resolved

    def _oserror(self, path: str, exc: OSError):
        return file_error(self.name, path, exc, where=self.describe())

    # --- files --------------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        real = self._map(path)
        try:
            with open(real, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise self._oserror(path, exc) from None

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        # like os.replace (and SFTP rename): a symlink at ``path`` is replaced, not followed
        real = self._map(path, follow_symlinks=False)
        directory, base = os.path.split(real)
        tmp = os.path.join(directory, f".{base}.opskit-tmp-{secrets.token_hex(6)}")
        if mode is None:
            try:
                mode = self.stat(path).permissions
            except (FileNotFoundError, HostPathError):
                mode = 0o600
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fchmod(fh.fileno(), mode)
                    os.fsync(fh.fileno())
                os.replace(tmp, real)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            raise self._oserror(path, exc) from None

    def listdir(self, path: str) -> list[str]:
        real = self._map(path)
        try:
            return sorted(os.listdir(real))
        except OSError as exc:
            raise self._oserror(path, exc) from None

    def stat(self, path: str, *, follow_symlinks: bool = True) -> FileStat:
        link_real = self._map(path, follow_symlinks=False)
        try:
            lst = os.lstat(link_real)
            is_link = _stat.S_ISLNK(lst.st_mode)
            st = lst
            if follow_symlinks and is_link:
                st = os.stat(self._map(path))
        except OSError as exc:
            raise self._oserror(path, exc) from None
        return FileStat(path=path, mode=st.st_mode, size=st.st_size, mtime=st.st_mtime,
                        uid=st.st_uid, gid=st.st_gid, is_dir=_stat.S_ISDIR(st.st_mode),
                        is_link=is_link)


__all__ = ["LocalHost"]
