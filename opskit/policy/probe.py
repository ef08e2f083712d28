"""Facts about one host, read through the Host interface and cached per run.

The same checks run on the local machine, over SSH and against a *recorded
host tree* (``LocalHost(sysroot=...)``: a copy of /etc, /proc, /sys and
/usr/lib of a machine). Commands cannot run inside a recorded tree, so a
command's output can be recorded next to the files, in
``<tree>/.opskit-recorded/<name>`` (``nft-ruleset.json``, ``iptables-save``,
``ip-route-4.json``, ...); see docs/policy.md.
"""
from __future__ import annotations

from opskit.hosts.base import (Host, HostAuthFailed, HostBatchError, HostError, HostKeyRejected,
                               HostPathError, HostTimeout, HostUnreachable, RunResult)

RECORDED_DIR = "/.opskit-recorded"
COMMAND_TIMEOUT = 20.0
PS = ["ps", "-e", "-o", "pid=,comm="]

# errors that mean "the host is gone", not "this check could not decide"
FATAL = (HostUnreachable, HostAuthFailed, HostKeyRejected)


class Probe:
    """Cached reads of one host. Missing files are ``None``, never an error."""

    def __init__(self, host: Host, *, command_timeout: float = COMMAND_TIMEOUT):
        self.host = host
        self.sysroot = host.sysroot
        self.command_timeout = command_timeout
        self._text: dict[str, str | None] = {}
        self._dirs: dict[str, list[str] | None] = {}
        self._commands: dict[str, tuple[str | None, str]] = {}
        self._container: str | None | bool = False
        self._processes: dict[int, str] | None = None
        self._stats: dict = {}
        self._memo: dict = {}

    @property
    def recorded(self) -> bool:
        """True for a recorded tree: no live commands can be run."""
        return bool(self.sysroot)

    @property
    def name(self) -> str:
        return self.host.name

    # --- files ---------------------------------------------------------------------------
    def read(self, path: str) -> str | None:
        """Text of ``path`` or None when it does not exist."""
        if path not in self._text:
            try:
                self._text[path] = self.host.read_file(path).decode("utf-8", "replace")
            except FileNotFoundError:
                self._text[path] = None
            except HostPathError:
                # recorded tree: an absolute symlink (e.g. to /dev/null, a masked
                # drop-in) points outside the tree; it reads as empty on the host
                self._text[path] = ""
            except IsADirectoryError:
                self._text[path] = None
            except HostError as exc:
                if getattr(exc, "errno", None) in (3, 20, 21):   # ESRCH (process gone), ENOTDIR, EISDIR
                    self._text[path] = None
                else:
                    raise
        return self._text[path]

    def listdir(self, path: str) -> list[str] | None:
        """Names in directory ``path``, or None when it does not exist."""
        if path not in self._dirs:
            try:
                self._dirs[path] = self.host.listdir(path)
            except FileNotFoundError:
                self._dirs[path] = None
            except HostError as exc:
                if getattr(exc, "errno", None) == 20:          # ENOTDIR
                    self._dirs[path] = None
                else:
                    raise
        return self._dirs[path]

    def stat(self, path: str, *, follow_symlinks: bool = True):
        """``FileStat`` of ``path`` or None when it does not exist."""
        key = (path, follow_symlinks)
        if key not in self._stats:
            try:
                self._stats[key] = self.host.stat(path, follow_symlinks=follow_symlinks)
            except (*FATAL, HostTimeout):
                raise
            except (FileNotFoundError, HostPathError):
                self._stats[key] = None
            except HostError as exc:
                if getattr(exc, "errno", None) in (2, 20):
                    self._stats[key] = None
                else:
                    raise
        return self._stats[key]

    def memo(self, key: str, compute):
        """``compute()`` once per probe: parsed facts shared by several checks."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def exists(self, path: str) -> bool:
        try:
            return self.host.exists(path)
        except HostPathError:
            return True          # a symlink leaving a recorded tree still exists

    def value(self, path: str) -> str | None:
        text = self.read(path)
        return None if text is None else text.strip()

    def realpath(self, path: str) -> str | None:
        """Where ``path`` resolves on the host (symlinks followed), or None."""
        try:
            return self.host.realpath(path)
        except (*FATAL, HostTimeout):
            raise
        except HostError:          # missing, a loop of links, not a directory, denied
            return None

    # --- commands --------------------------------------------------------------------------
    def run(self, argv: list[str]) -> RunResult | None:
        """Run a command on a live host (None on a recorded tree)."""
        if self.recorded:
            return None
        return self.host.run(argv, timeout=self.command_timeout)

    def prefetch(self, commands: dict[str, list[str]]) -> None:
        """Run several commands in one round trip (``Host.run_batch``) and keep
        what ``command`` would answer for each; a recorded tree has none to run."""
        if self.recorded:
            return
        todo = {n: a for n, a in commands.items() if n not in self._commands}
        if not todo:
            return
        try:
            results = self.host.run_batch(list(todo.values()), timeout=self.command_timeout)
        except HostBatchError as exc:   # the rest run alone when asked for
            results = exc.results
        for (name, argv), result in zip(todo.items(), results):
            self._commands[name] = _outcome(argv, result)

    def command(self, name: str, argv: list[str]) -> tuple[str | None, str]:
        """Output of ``argv`` on a live host, or of the recording ``name`` in a
        recorded tree. Returns (text, source); text is None when the tool is
        missing or failed, and source then says why."""
        if name in self._commands:
            return self._commands[name]
        if self.recorded:
            path = f"{RECORDED_DIR}/{name}"
            text = self.read(path)
            out = (text, path if text is not None else f"no recording {path} in the tree")
        else:
            out = _outcome(argv, self.host.run(argv, timeout=self.command_timeout))
        self._commands[name] = out
        return out

    # --- environment ------------------------------------------------------------------------
    def container(self) -> str | None:
        """Why this looks like a container (shared kernel), or None."""
        if self._container is False:
            reason = None
            for marker in ("/.dockerenv", "/run/.containerenv"):
                if self.exists(marker):
                    reason = f"{marker} exists"
                    break
            if reason is None:
                kind = self.value("/run/systemd/container")
                if kind:
                    reason = f"/run/systemd/container = {kind}"
            self._container = reason
        return self._container  # type: ignore[return-value]

    def processes(self) -> dict[int, str]:
        """pid -> command name of running processes (/proc/<pid>/comm)."""
        if self._processes is None:
            self._processes = self._read_processes()
        return self._processes

    def _read_processes(self) -> dict[int, str]:
        # a live host answers with one ps (reading /proc/<pid>/comm over SFTP would
        # cost a round trip per process); a recorded tree, or a host without ps, from /proc
        if not self.recorded:
            text, _ = self.command("ps", PS)
            if text is not None:
                out = {}
                for line in text.splitlines():
                    pid, _, comm = line.strip().partition(" ")
                    if pid.isdigit():
                        out[int(pid)] = comm.strip()
                return out
        out = {}
        for name in self.listdir("/proc") or []:
            if name.isdigit():
                comm = self.value(f"/proc/{name}/comm")
                if comm:
                    out[int(name)] = comm
        return out

    def kernel_release(self) -> str | None:
        return self.value("/proc/sys/kernel/osrelease")


def _outcome(argv: list[str], result: RunResult) -> tuple[str | None, str]:
    """(text, source) of a command's result, as ``Probe.command`` answers."""
    if result.rc == 127:
        return None, f"{argv[0]} is not installed"
    if result.rc != 0:
        err = result.stderr.decode("utf-8", "replace").strip().splitlines()
        return None, f"'{' '.join(argv)}' failed (status {result.rc}): {err[-1] if err else ''}"
    return result.text, " ".join(argv)
