"""Where account changes land on a host, and how they get there in one round trip.

A ``Target`` is a Host plus the root of its account databases:

* a local host with a ``sysroot`` (an image, a container root): files live
  under the sysroot; shadow-utils run with ``--prefix <sysroot>``;
* an SSH host whose inventory vars set ``accounts_root: DIR``: the same, on
  the remote machine (a chroot or image kept there; the benchmark and the
  tests give every sshd its own account database this way);
* otherwise the real ``/``.

A rooted target is an offline tree: there are no live processes or
sessions to end there, so those freeze steps report 'n/a'.

Reads and changes are batched: ``gather`` fetches every file a plan needs
with one ``sh -s`` command (one ``tar`` of them, base64-encoded; symlinks are
stored as links, never followed), ``run_steps`` runs every planned step with one
more, each step in its own subshell (stdin /dev/null, ``set -e``) with its
exit status and output reported between markers. So a 200-person apply on
an SSH host costs two round trips, not thousands. The script goes on stdin,
never on the command line (no ARG_MAX limit, nothing in the process list).
"""
from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field

from opskit.hosts.base import Host, HostCommandError, tail

ROOT_VAR = "accounts_root"
_BEGIN = "@@opskit-begin"
_END = "@@opskit-end"
_STEP_BEGIN = "@@opskit-step"
_STEP_END = "@@opskit-step-end"


def q(word: str) -> str:
    return shlex.quote(str(word))


def cmd(*argv) -> str:
    """One shell command line from argv words (each quoted)."""
    return " ".join(q(a) for a in argv)


@dataclass
class Target:
    host: Host
    root: str | None = None            # None: the real '/'

    @classmethod
    def of(cls, host: Host, variables: dict | None = None) -> "Target":
        sysroot = getattr(host, "sysroot", None)
        root = sysroot or (variables or {}).get(ROOT_VAR) or None
        return cls(host, str(root).rstrip("/") if root else None)

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def rooted(self) -> bool:
        return self.root is not None

    def path(self, path: str) -> str:
        """The path commands on the host use for the target's ``path``."""
        return f"{self.root}{path}" if self.root else path

    def prefix(self) -> list[str]:
        """``--prefix ROOT`` for shadow-utils that support it (useradd, usermod, groupadd)."""
        return ["--prefix", self.root] if self.root else []

    def sh(self, script: str, timeout: float | None = None):
        return self.host.run(["sh", "-s"], input=script.encode(), timeout=timeout)


# --- reading ----------------------------------------------------------------------

def gather(target: Target, files: dict[str, str] | None = None,
           commands: dict[str, str] | None = None, timeout: float | None = None
           ) -> dict[str, bytes | None]:
    """Read ``files`` (key -> path on the target, mapped under its root) and run
    ``commands`` (key -> shell line) in one round trip. Missing files come back
    None; a command's value is its stdout (rc in ``key + '.rc'`` as bytes)."""
    script, members = _gather_script(target, files, commands)
    if not script:
        return {}
    result = target.sh(script, timeout=timeout)
    return _parse_gather(target, result, files, commands, members)


def _gather_script(target: Target, files, commands) -> tuple[str, dict[str, str]]:
    lines = []
    members: dict[str, str] = {}
    if files:
        # one tar for every file (symlinks stored, never followed), one base64 for the lot
        members = {target.path(path).lstrip("/"): key for key, path in files.items()}
        names = " ".join(q(m) for m in members)
        lines.append(f"printf '{_BEGIN} @files\\n'; tar -c -f - --ignore-failed-read -C / "
                     f"-- {names} 2>/dev/null | base64 -w0; printf '\\n{_END} 3\\n'")
    for key, line in (commands or {}).items():
        lines.append(f"printf '{_BEGIN} %s\\n' {q(key)}; "
                     f"{{ ( {line} ) </dev/null 2>/dev/null; echo \"@rc=$?\"; }} | base64 | "
                     f"tr -d '\\n'; printf '\\n{_END} 2\\n'")
    return ("\n".join(lines) + "\n") if lines else "", members


def _parse_gather(target: Target, result, files, commands, members) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {key: None for key in (files or {})}
    seen: set[str] = set()
    key = None
    body: list[str] = []
    for line in result.text.splitlines():
        if line.startswith(_BEGIN + " "):
            key, body = line[len(_BEGIN) + 1:], []
            seen.add(key)
        elif line.startswith(_END + " ") and key is not None:
            kind = line[len(_END) + 1:].strip()
            data = base64.b64decode("".join(body)) if body else b""
            if kind == "3":
                out.update(_untar(data, members))
            else:
                text, _, rc = data.rpartition(b"@rc=")
                out[key] = text
                out[key + ".rc"] = rc.strip()
            key = None
        elif key is not None:
            body.append(line)
    missing = [k for k in (commands or {}) if k not in out]
    if (files and "@files" not in seen) or missing:
        raise HostCommandError(f"{target.host.describe()}: reading account data failed "
                               f"(no answer for {', '.join(missing[:5]) or 'the files'}): "
                               f"{tail(result.stderr) or 'no output'}", host=target.name,
                               result=result)
    return out


SYMLINK = b"\0opskit: a symlink"    # never equal to wanted content; still an access path


def _untar(data: bytes, members: dict[str, str]) -> dict[str, bytes | None]:
    import io
    import tarfile
    out: dict[str, bytes | None] = {}
    if not data:
        return out
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar:
            key = members.get(info.name.rstrip("/"))
            if key is None:
                continue
            if info.issym() or info.islnk():
                out[key] = SYMLINK
            elif info.isfile():
                fh = tar.extractfile(info)
                out[key] = fh.read() if fh else b""
    return out


# --- changing ---------------------------------------------------------------------

@dataclass
class Step:
    """One unit of change on one host: shell lines run in order under ``set -e``."""

    host: str
    subject: str          # person id ('-' for host-wide steps such as groupadd)
    action: str           # create | update | freeze | groupadd | ...
    detail: str           # what people read in plans
    lines: list[str] = field(default_factory=list)
    ok: bool | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"host": self.host, "person": self.subject, "action": self.action,
                "detail": self.detail,
                "result": "planned" if self.ok is None else "ok" if self.ok else "FAILED",
                "error": self.error}


def run_steps(target: Target, steps: list[Step], timeout: float | None = None) -> list[Step]:
    """Run ``steps`` on the target in one round trip; set ``ok``/``error`` on each.
    A failed step does not stop the others (they are independent by design)."""
    if not steps:
        return steps
    result = target.sh(_steps_script(steps), timeout=timeout)
    _parse_steps(result, steps)
    return steps


def run_steps_then_gather(target: Target, steps: list[Step], files=None, commands=None,
                          timeout: float | None = None) -> dict[str, bytes | None]:
    """``run_steps`` and then ``gather`` in the same round trip (a freeze and its
    verification re-read cost one SSH command, not two)."""
    script, members = _gather_script(target, files, commands)
    result = target.sh(_steps_script(steps) + script, timeout=timeout)
    _parse_steps(result, steps)
    return _parse_gather(target, result, files, commands, members)


def _steps_script(steps: list[Step]) -> str:
    parts = []
    for i, step in enumerate(steps):
        body = "\n".join(step.lines) or ":"
        parts.append(f"printf '{_STEP_BEGIN} {i}\\n'\n( set -e\n{body}\n) </dev/null 2>&1\n"
                     f"printf '\\n{_STEP_END} {i} %d\\n' $?\n")
    return "".join(parts)


def _parse_steps(result, steps: list[Step]) -> None:
    seen: dict[int, tuple[int, list[str]]] = {}
    current, buf = None, []
    for line in result.text.splitlines():
        if line.startswith(_STEP_BEGIN + " "):
            current, buf = int(line.split()[1]), []
        elif line.startswith(_STEP_END + " ") and current is not None:
            _, idx, rc = line.split()
            seen[int(idx)] = (int(rc), buf)
            current = None
        elif current is not None:
            buf.append(line)
    for i, step in enumerate(steps):
        if i in seen:
            rc, output = seen[i]
            step.ok = rc == 0
            if rc:
                text = "\n".join(x for x in output if x.strip())
                step.error = f"exit status {rc}: {tail(text) or 'no output'}"
        else:
            step.ok = False
            step.error = ("did not run (the batch stopped early: "
                          f"{tail(result.stderr) or 'exit status ' + str(result.rc)})")


class HostRunOutcome:
    """Mixin for a run over hosts (``self.hosts``, each with ``.host`` and ``.ok``):
    the hosts that failed, and exit 3 when any did (a rerun finishes the job)."""

    hosts: list

    @property
    def failed_hosts(self) -> list[str]:
        return [h.host for h in self.hosts if not h.ok]

    @property
    def exit_code(self) -> int:
        from opskit.core.errors import EXIT_OK, EXIT_OPERATIONAL
        return EXIT_OPERATIONAL if self.failed_hosts else EXIT_OK
