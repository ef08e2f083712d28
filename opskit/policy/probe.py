"""Facts about one host, read through the Host interface and cached per run.

The same checks run on the local machine, over SSH and against a *recorded
host tree* (``LocalHost(sysroot=...)``: a copy of /etc, /proc, /sys and
/usr/lib of a machine). Commands cannot run inside a recorded tree, so a
command's output can be recorded next to the files, in
``<tree>/.opskit-recorded/<name>`` (``nft-ruleset.json``, ``iptables-save``,
``ip-route-4.json``, ...); see docs/policy.md.
"""
from __future__ import annotations

import os

from opskit.hosts.base import (Host, HostAuthFailed, HostError, HostKeyRejected, HostPathError,
                               HostUnreachable, RunResult)

RECORDED_DIR = "/.opskit-recorded"
COMMAND_TIMEOUT = 20.0

# errors that mean "the host is gone", not "this check could not decide"
FATAL = (HostUnreachable, HostAuthFailed, HostKeyRejected)


class Probe:
    """Cached reads of one host. Missing files are ``None``, never an error."""

    def __init__(self, host: Host, *, command_timeout: float = COMMAND_TIMEOUT):
        self.host = host
        self.sysroot = getattr(host, "sysroot", None)
        self.command_timeout = command_timeout
        self._text: dict[str, str | None] = {}
        self._dirs: dict[str, list[str] | None] = {}
        self._commands: dict[str, tuple[str | None, str]] = {}
        self._container: str | None | bool = False
        self._processes: dict[int, str] | None = None

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
        from opskit.hosts.local import LocalHost
        if isinstance(self.host, LocalHost):
            try:
                real = self.host._map(path)          # refuses paths leaving a sysroot
            except HostPathError:
                return None
            if not os.path.exists(real):
                return None
            if self.sysroot:
                return "/" + os.path.relpath(real, self.sysroot).lstrip("./")
            return real
        result = self.run(["readlink", "-e", "--", path])
        if result is None or result.rc != 0:
            return None
        return result.text.strip() or None

    # --- commands --------------------------------------------------------------------------
    def run(self, argv: list[str]) -> RunResult | None:
        """Run a command on a live host (None on a recorded tree)."""
        if self.recorded:
            return None
        return self.host.run(argv, timeout=self.command_timeout)

    def prefetch(self, commands: dict[str, list[str]]) -> None:
        """Run several commands in one round trip on a remote host (one shell,
        outputs delimited); LocalHost and recorded trees need no batching."""
        from opskit.hosts.local import LocalHost
        if self.recorded or isinstance(self.host, LocalHost):
            return
        todo = {n: a for n, a in commands.items() if n not in self._commands}
        if not todo:
            return
        import shlex
        marker = "@@opskit-" + os.urandom(6).hex()
        script = "".join(f"printf '\\n{marker} {name}\\n'; {shlex.join(argv)} 2>/dev/null; "
                         f"printf '\\n{marker} rc %s\\n' $?; "
                         for name, argv in todo.items())
        result = self.host.run(["sh", "-c", script], timeout=self.command_timeout)
        parts = result.text.split(f"\n{marker} ")
        for i, part in enumerate(parts):
            name, _, body = part.partition("\n")
            if name not in todo or i + 1 >= len(parts):
                continue
            rc_text = parts[i + 1].partition("\n")[0]
            rc = int(rc_text[3:]) if rc_text.startswith("rc ") and rc_text[3:].isdigit() else -1
            if rc == 0:
                self._commands[name] = (body, " ".join(todo[name]))
            elif rc == 127:
                self._commands[name] = (None, f"{todo[name][0]} is not installed")
            # other failures: left for command() to run alone and report stderr

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
            shown = " ".join(argv)
            result = self.host.run(argv, timeout=self.command_timeout)
            if result.rc == 127:
                out = (None, f"{argv[0]} is not installed")
            elif result.rc != 0:
                err = result.stderr.decode("utf-8", "replace").strip().splitlines()
                out = (None, f"'{shown}' failed (status {result.rc}): {err[-1] if err else ''}")
            else:
                out = (result.text, shown)
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
        from opskit.hosts.local import LocalHost
        if not isinstance(self.host, LocalHost):
            text, _ = self.command("ps", ["ps", "-e", "-o", "pid=,comm="])
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
