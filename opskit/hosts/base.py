"""The one Host interface every collector, check and provisioner is written against.

A ``Host`` runs commands (an argv list, never a shell string), alone or
several in one round trip (``run_batch``), and reads, writes, lists, stats
and resolves files. ``LocalHost`` (opskit.hosts.local) and
``SSHHost`` (opskit.hosts.ssh) implement it, so local and remote behave the
same: same result types, same errors, same messages.

Errors all derive from ``HostError`` (an OperationalError, exit code 3) and
always name the host, with its address and port when it has one. File errors
are also the matching builtin ``OSError`` subclass, so ``except
FileNotFoundError`` works on both implementations.

Secrets: messages include the command line (shortened) and the tail of
stderr, never ``input`` or ``env`` values. Pass secrets on stdin or in env.
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import shlex
import stat as _stat
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from opskit.core.errors import OperationalError

STDERR_TAIL = 400          # characters of stderr quoted in HostCommandError
ARGV_SHOWN = 200           # characters of the command line quoted in messages


def format_argv(argv: list[str]) -> str:
    """The command line as a shell would show it, shortened for messages."""
    text = shlex.join(str(a) for a in argv)
    return text if len(text) <= ARGV_SHOWN else text[: ARGV_SHOWN - 3] + "..."


def tail(data: bytes | str | None, limit: int = STDERR_TAIL) -> str:
    """Last ``limit`` characters of command output, decoded and stripped."""
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


# --- errors ---------------------------------------------------------------------

class HostError(OperationalError):
    """Something went wrong talking to a host. ``status`` is the short word
    shown in host tables (``opskit hosts ping``)."""

    status = "error"

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.host = host

    def __str__(self) -> str:
        return self.message


class HostUnreachable(HostError):
    """No SSH session could be set up: refused, timed out, no route, not SSH."""

    status = "unreachable"


class HostKeyRejected(HostError):
    """The host key is unknown (and the policy is 'reject') or has changed."""

    status = "host key rejected"

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None,
                 fingerprint: str | None = None, changed: bool = False):
        super().__init__(message, host=host, hint=hint)
        self.fingerprint = fingerprint
        self.changed = changed


class HostAuthFailed(HostError):
    """The host refused our key, or the key file is unusable."""

    status = "auth failed"


class HostTimeout(HostError):
    """A command (or a whole per-host task) ran past its time limit."""

    status = "timeout"

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None,
                 stdout: bytes = b"", stderr: bytes = b""):
        super().__init__(message, host=host, hint=hint)
        self.stdout, self.stderr = stdout, stderr


class HostCommandError(HostError):
    """A command run with ``check=True`` exited non-zero."""

    status = "command failed"

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None,
                 result: "RunResult | None" = None):
        super().__init__(message, host=host, hint=hint)
        self.result = result


class HostBatchError(HostCommandError):
    """A ``run_batch`` stopped before every command reported (its shell died).
    ``results`` holds the commands that did finish, in order; ``reason`` is the
    shell's last error output or its exit status; ``result`` is the batch's own run."""

    status = "batch stopped"

    def __init__(self, message: str, *, host: str | None = None, result: "RunResult | None" = None,
                 results: "list[RunResult] | None" = None, reason: str = ""):
        super().__init__(message, host=host, result=result)
        self.results = list(results or [])
        self.reason = reason


class HostPathError(HostError):
    """A path was refused: it escapes the host's sysroot, or is not usable."""

    status = "path refused"


class HostFileNotFound(HostError, FileNotFoundError):
    """A file or directory on the host does not exist (also a FileNotFoundError)."""

    status = "not found"
    _errno = _errno.ENOENT


class HostPermissionError(HostError, PermissionError):
    """The host denied access to a path (also a PermissionError)."""

    status = "permission denied"
    _errno = _errno.EACCES


def file_error(host: str, path: str, exc: OSError, where: str | None = None) -> HostError:
    """Turn an OSError about ``path`` into a HostError naming the host.

    Missing paths become HostFileNotFound, access denied HostPermissionError;
    anything else a plain HostError. ``errno`` and ``filename`` are kept.
    ``where`` is how the message names the host (default: ``host``)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    message = f"{where or host}: {path}: {reason}"
    if isinstance(exc, FileNotFoundError) or exc.errno == _errno.ENOENT:
        err: HostError = HostFileNotFound(message, host=host)
    elif isinstance(exc, PermissionError) or exc.errno in (_errno.EACCES, _errno.EPERM):
        err = HostPermissionError(message, host=host)
    else:
        err = HostError(message, host=host)
    err.errno = exc.errno if exc.errno is not None else getattr(err, "_errno", None)
    err.strerror = reason
    err.filename = path
    return err


# --- results ----------------------------------------------------------------------

@dataclass(frozen=True)
class RunResult:
    """What a command did. ``rc`` is the exit status (-1: killed by a signal
    with no status reported); ``duration`` is seconds."""

    host: str
    argv: list[str]
    rc: int
    stdout: bytes
    stderr: bytes
    duration: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def text(self) -> str:
        """stdout decoded as UTF-8 (undecodable bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    def check(self) -> "RunResult":
        """Raise HostCommandError unless the command succeeded; return self."""
        if self.rc != 0:
            detail = tail(self.stderr) or tail(self.stdout) or "no output"
            raise HostCommandError(
                f"{self.host}: command '{format_argv(self.argv)}' exited with status "
                f"{self.rc}: {detail}", host=self.host, result=self)
        return self


@dataclass(frozen=True)
class FileStat:
    """File metadata. ``mode`` includes the type bits (use ``stat.S_IMODE``
    for permissions); ``is_link`` says whether ``path`` itself is a symlink,
    even when the other fields describe its target."""

    path: str
    mode: int
    size: int
    mtime: float
    uid: int
    gid: int
    is_dir: bool
    is_link: bool

    @property
    def permissions(self) -> int:
        return _stat.S_IMODE(self.mode)

    @property
    def is_file(self) -> bool:
        return _stat.S_ISREG(self.mode)


class Script(str):
    """A POSIX sh script given to ``run_batch`` in place of an argv list.

    The host's ``sh`` interprets it with stdin /dev/null; it is never put on a
    command line (no ARG_MAX limit, nothing in the process list), so it may
    carry file contents. Whoever builds it quotes every value (shlex.quote)."""


SCRIPT_ARGV = ["sh", "-s"]      # how a Script is named in its RunResult and in messages
# reads the script from stdin, then runs it with stdin /dev/null
_SCRIPT_RUNNER = ["sh", "-c", 'script=$(cat); eval "$script" </dev/null']


# --- the interface --------------------------------------------------------------

class Host(ABC):
    """A machine opskit works on. Use as a context manager or call ``close()``.

    Implementations must be safe to use from one thread at a time; fan-out
    gives every host its own thread.
    """

    name: str
    sysroot: str | None = None     # a LocalHost's file paths map under it; None: the real /

    @property
    def address(self) -> str | None:
        """``address:port`` for remote hosts, None for local ones."""
        return None

    def describe(self) -> str:
        """How messages name this host: ``web1 (10.0.0.5:22)``."""
        return f"{self.name} ({self.address})" if self.address else f"{self.name} (local)"

    @abstractmethod
    def run(self, argv: list[str], *, timeout: float | None = None, input: bytes | None = None,
            check: bool = False, env: dict[str, str] | None = None) -> RunResult:
        """Run ``argv`` (no shell) and wait for it.

        timeout  seconds; past it the command is killed and HostTimeout raised
        input    bytes fed to stdin (stdin is empty otherwise)
        check    raise HostCommandError when the exit status is not 0
        env      variables added to (or overriding) the host's environment
        A missing program gives rc 127, like a shell would.
        """

    def run_batch(self, commands: list, *, timeout: float | None = None) -> list[RunResult]:
        """Run several commands, one after the other, and return one RunResult
        each, in order (``[]`` for no commands).

        A command is an argv list (as for ``run``) or a ``Script``. Each gets
        stdin /dev/null and its own exit status, stdout and stderr; a failing
        command does not stop the others. ``timeout`` bounds the whole batch
        (HostTimeout). LocalHost and SSHHost run the lot in one shell (over SSH:
        one round trip) and raise HostBatchError if that shell dies early.

        This default runs them one by one through ``run``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        results = []
        for command in commands:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise HostTimeout(f"{self.describe()}: batch of {len(commands)} commands timed "
                                  f"out after {timeout:g}s ({len(results)} done)", host=self.name)
            if isinstance(command, Script):
                result = self.run(_SCRIPT_RUNNER, input=command.encode(), timeout=left)
                result = dataclasses.replace(result, argv=list(SCRIPT_ARGV))
            else:
                result = self.run(command, timeout=left)
            results.append(result)
        return results

    @abstractmethod
    def realpath(self, path: str) -> str:
        """The absolute path ``path`` resolves to on the host, every symlink
        followed as the host's kernel would (``..`` applies to where a link led).
        Relative paths start at the host's working directory. With a sysroot
        the answer is the path inside it, and links resolve as under chroot:
        an absolute link starts again at the sysroot, ``/..`` is ``/``.
        Raises HostFileNotFound when nothing is there: a missing component, a
        dangling link, a loop of links."""

    @abstractmethod
    def read_file(self, path: str) -> bytes:
        """The whole content of ``path``."""

    @abstractmethod
    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        """Replace ``path`` atomically (temp file in the same directory, then
        rename; a symlink at ``path`` is replaced, not followed). ``mode`` sets
        permissions; None keeps an existing file's mode (0600 for a new file)."""

    @abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Sorted names in directory ``path`` (no '.' or '..')."""

    @abstractmethod
    def stat(self, path: str, *, follow_symlinks: bool = True) -> FileStat:
        """Metadata of ``path``; raises HostFileNotFound (a FileNotFoundError)."""

    def listdir_or_warn(self, path: str, warnings: list[str]) -> list[str]:
        """``listdir`` for readers that carry on: [] when ``path`` is not there, and
        [] plus a line in ``warnings`` when it cannot be listed."""
        try:
            return self.listdir(path)
        except FileNotFoundError:
            return []
        except HostError as exc:
            warnings.append(f"{path}: cannot list: {exc.message}")
            return []

    def exists(self, path: str) -> bool:
        """True when ``path`` exists (a dangling symlink counts as existing)."""
        try:
            self.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def run_fed(self, argv: list[str], blocks, *, timeout: float | None = None) -> RunResult:
        """Run ``argv`` with the byte blocks of ``blocks`` streamed to its stdin."""
        raise HostError(f"{self.describe()}: streaming a command's input is not supported "
                        "on this kind of host", host=self.name)

    def forward(self, remote_port: int):
        """A local TCP port reaching ``127.0.0.1:remote_port`` on this host
        (``.port``; ``close()`` when done): a tunnel over SSH, the port itself
        on the local machine."""
        from .tunnel import Direct
        return Direct(remote_port)

    def close(self) -> None:
        """Release connections; the host may be used again (it reconnects)."""

    def __enter__(self) -> "Host":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
