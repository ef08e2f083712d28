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

Reads and changes are batched with ``Host.run_batch`` (one shell, one round
trip): ``gather`` fetches every file a plan needs with one ``tar`` of them
(symlinks are stored as links, never followed) plus its shell commands,
``run_steps`` runs every planned step as a ``Script`` (its own subshell,
stdin /dev/null, ``set -e``, stderr into stdout), each with its own exit
status and output. So a 200-person apply on an SSH host costs two round
trips, not thousands. Scripts never go on a command line (no ARG_MAX limit,
nothing in the process list).
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

from opskit.hosts.base import Host, HostBatchError, HostCommandError, RunResult, Script, tail

ROOT_VAR = "accounts_root"
EVIDENCE_DIR = "/var/lib/opskit/frozen"      # root-only, outside the person's home


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
        root = host.sysroot or (variables or {}).get(ROOT_VAR) or None
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


# --- reading ----------------------------------------------------------------------

def gather(target: Target, files: dict[str, str] | None = None,
           commands: dict[str, str] | None = None, timeout: float | None = None
           ) -> dict[str, bytes | None]:
    """Read ``files`` (key -> path on the target, mapped under its root) and run
    ``commands`` (key -> shell line) in one round trip. Missing files come back
    None; a command's value is its stdout (rc in ``key + '.rc'`` as bytes)."""
    batch, members = _gather_batch(target, files, commands)
    if not batch:
        return {}
    try:
        results = target.host.run_batch(batch, timeout=timeout)
    except HostBatchError as exc:
        raise _gather_failed(target, exc, files, commands, exc.results) from None
    return _gather_results(results, files, commands, members)


def _gather_batch(target: Target, files, commands) -> tuple[list, dict[str, str]]:
    batch: list = []
    members: dict[str, str] = {}
    if files:
        # one tar for every file (symlinks stored, never followed)
        members = {target.path(path).lstrip("/"): key for key, path in files.items()}
        batch.append(["tar", "-c", "-f", "-", "--ignore-failed-read", "-C", "/", "--",
                      *members])
    batch += [Script(line) for line in (commands or {}).values()]
    return batch, members


def _gather_results(results: list[RunResult], files, commands, members
                    ) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {key: None for key in (files or {})}
    if files:
        out.update(_untar(results[0].stdout, members))
        results = results[1:]
    for key, result in zip(commands or {}, results):
        out[key] = result.stdout
        out[key + ".rc"] = str(result.rc).encode()
    return out


def _gather_failed(target: Target, exc: HostBatchError, files, commands, done: list
                   ) -> HostCommandError:
    """The error for a gather whose batch stopped early, naming what got no answer."""
    answered = max(len(done) - (1 if files else 0), 0)     # the tar comes first
    what = ", ".join(list(commands or {})[answered:][:5]) or "the files"
    return HostCommandError(f"{target.host.describe()}: reading account data failed "
                            f"(no answer for {what}): {exc.reason}", host=target.name,
                            result=exc.result)


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

def rewrite_lines(target: Target, path: str, new: str, check: str | None = None) -> list[str]:
    """sh replacing ``path`` by ``new`` atomically, mode and owner kept (a temp file
    whose name sudo and cron ignore); ``check`` (e.g. 'visudo -cf') vets it first."""
    real = target.path(path)
    tmp = os.path.join(os.path.dirname(real), f".{os.path.basename(real)}.opskit-tmp")
    lines = [f"[ ! -L {q(real)} ]", f"printf %s {q(new)} > {q(tmp)}",
             f"chmod --reference={q(real)} {q(tmp)}", f"chown --reference={q(real)} {q(tmp)}"]
    if check:
        lines.append(f"if ! out=$({check} {q(tmp)} 2>&1); then rm -f {q(tmp)}; "
                     f"echo \"{check} rejected the edited file; left unchanged: $out\"; exit 1; fi")
    return lines + [cmd("mv", "-f", tmp, real)]


def evidence_lines(target: Target, login: str) -> tuple[str, list[str]]:
    """(the root-only evidence directory of ``login`` on the target, sh creating it)."""
    top = target.path(EVIDENCE_DIR)
    evidence = f"{top}/{login}"
    return evidence, [cmd("mkdir", "-p", evidence), cmd("chmod", "700", top, evidence),
                      cmd("chown", "0:0", top, evidence)]




def move_aside_lines(target: Target, login: str, path: str, saved_as: str) -> list[str]:
    """sh moving ``path`` (a target path; its directory must not be a symlink) into
    ``login``'s root-only evidence directory as ``saved_as``."""
    evidence, mk = evidence_lines(target, login)
    real = target.path(path)
    return [f"[ ! -L {q(os.path.dirname(real))} ]", *mk, cmd("mv", "-f", real,
                                                             f"{evidence}/{saved_as}")]

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
    try:
        results = target.host.run_batch(_step_scripts(steps), timeout=timeout)
    except HostBatchError as exc:
        _step_results(steps, exc.results, exc.reason)
    else:
        _step_results(steps, results)
    return steps


def run_steps_then_gather(target: Target, steps: list[Step], files=None, commands=None,
                          timeout: float | None = None) -> dict[str, bytes | None]:
    """``run_steps`` and then ``gather`` in the same round trip (a freeze and its
    verification re-read cost one SSH command, not two)."""
    batch, members = _gather_batch(target, files, commands)
    try:
        results = target.host.run_batch(_step_scripts(steps) + batch, timeout=timeout)
    except HostBatchError as exc:
        _step_results(steps, exc.results, exc.reason)
        raise _gather_failed(target, exc, files, commands, exc.results[len(steps):]) from None
    _step_results(steps, results)
    return _gather_results(results[len(steps):], files, commands, members)


def _step_scripts(steps: list[Step]) -> list[Script]:
    # stderr into stdout: a step's error message shows its output in order
    return [Script("exec 2>&1\nset -e\n" + ("\n".join(step.lines) or ":")) for step in steps]


def _step_results(steps: list[Step], results: list[RunResult], stopped: str = "") -> None:
    """Set ``ok``/``error`` of each step from its result; steps without one did not run."""
    for i, step in enumerate(steps):
        if i < len(results):
            rc = results[i].rc
            step.ok = rc == 0
            if rc:
                text = "\n".join(x for x in results[i].text.splitlines() if x.strip())
                step.error = f"exit status {rc}: {tail(text) or 'no output'}"
        else:
            step.ok = False
            step.error = f"did not run (the batch stopped early: {stopped})"


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
