"""Several commands in one shell, one round trip: the batch protocol of LocalHost and SSHHost.

The script goes to ``sh -s`` on stdin. Each command runs in a subshell with
stdin /dev/null (an argv list through ``exec``, so no shell builtin or
keyword is taken for a program; a ``Script`` through ``eval``, so a syntax
error stays in its own subshell), then the shell prints a marker line to
stdout (with the index and exit status) and to stderr. The marker is random
per call and never seen by the commands, so no output can forge one; output
is split as bytes, so binary output (a tar stream) comes back exact.
"""
from __future__ import annotations

import secrets
import shlex

from .base import SCRIPT_ARGV, Host, HostBatchError, RunResult, Script, tail


def run_in_one_shell(host: Host, commands: list, timeout: float | None = None
                     ) -> list[RunResult]:
    """``host.run_batch`` for hosts with a POSIX sh: one ``sh -s`` for the lot."""
    if not commands:
        return []
    argvs = [_argv(command) for command in commands]
    marker = "@@opskit-" + secrets.token_hex(16)
    script = "".join(_line(i, command, marker) for i, command in enumerate(commands))
    batch = host.run(["sh", "-s"], input=script.encode(), timeout=timeout)
    outs, heads = _split(batch.stdout, marker)
    errs, _ = _split(batch.stderr, marker)
    results = []
    for i, head in enumerate(heads[:len(commands)]):
        index, _, rc = head.decode("ascii", "replace").partition(" ")
        if index != str(i) or not rc.lstrip("-").isdigit():
            break
        results.append(RunResult(host.name, argvs[i], int(rc), outs[i],
                                 errs[i] if i < len(errs) else b"", batch.duration))
    if len(results) < len(commands):
        raise _stopped(host, batch, results, len(commands), errs)
    return results


def _argv(command) -> list[str]:
    if isinstance(command, Script):
        return list(SCRIPT_ARGV)
    argv = [str(a) for a in command]
    if not argv:
        raise ValueError("run_batch() needs non-empty argv lists")
    return argv


def _line(index: int, command, marker: str) -> str:
    if isinstance(command, Script):
        body = f"eval {shlex.quote(command)}"
    else:
        body = f"exec {shlex.join(_argv(command))}"
    # $? is the subshell's status, taken before printf runs
    return (f"( {body}\n) </dev/null; printf '\\n{marker} {index} %d\\n' $?; "
            f"printf '\\n{marker} {index}\\n' >&2\n")


def _split(data: bytes, marker: str) -> tuple[list[bytes], list[bytes]]:
    """Output before each marker line, and the marker lines' heads (what follows the marker)."""
    parts = data.split(b"\n" + marker.encode() + b" ")
    bodies, heads = [parts[0]], []
    for part in parts[1:]:
        head, _, body = part.partition(b"\n")
        heads.append(head)
        bodies.append(body)
    return bodies, heads


def _stopped(host: Host, batch: RunResult, results: list[RunResult], total: int,
             errs: list[bytes]) -> HostBatchError:
    done = len(results)
    reason = tail(errs[done] if done < len(errs) else b"") or f"exit status {batch.rc}"
    return HostBatchError(f"{host.describe()}: batch stopped after {done} of {total} commands: "
                          f"{reason}", host=host.name, result=batch, results=results,
                          reason=reason)
