"""Unpack a tar stream into a directory with GNU tar, fed through a pipe.

The caller keeps decoding (pack reads, AES, zstd, the keyed id check) in its
own process and writes the plain tar into ``tar -x``'s stdin, so extraction
(the copy loop and the kernel's file writes) runs in C on another core:
tarfile in the same process left a base-backup restore at 1.15x pgBackRest
(benchmarks/RESULTS.md, "Database backups (#24)"). GNU tar strips a leading
'/' and refuses members whose name holds '..' (it skips them and exits 2,
which ends the restore as failed); symlinks pointing outside are created
only after every file is written, so nothing is written through one.
"""
from __future__ import annotations

import fcntl
import subprocess
import tempfile
from typing import Callable, Iterable

from opskit.core.errors import OperationalError

F_SETPIPE_SZ = 1031      # fcntl.F_SETPIPE_SZ (Python >= 3.10 only)
PIPE_SIZE = 1 << 20      # fewer wake-ups of tar than the 64 KiB default; the max for non-root
UMASK = 0o027            # as tarfile's 'tar' filter: no group/other write, no setuid bits


def tar_command(datadir: str, same_owner: bool) -> list[str]:
    """``tar -x`` reading stdin into ``datadir``; modes masked by ``UMASK``."""
    cmd = ["tar", "-x", "-f", "-", "-C", datadir, "--no-same-permissions"]
    # the restore chowns every file itself afterwards when it was given an owner
    cmd.append("--same-owner" if same_owner else "--no-same-owner")
    return cmd


def untar(blocks: Iterable, datadir: str, *, same_owner: bool, what: str,
          tap: Callable[[bytes], None] | None = None) -> None:
    """Write ``blocks`` (a tar stream) into ``tar -x`` on ``datadir``.

    An exception from ``blocks`` (a damaged pack: CorruptObject) kills tar and
    is raised as is; tar failing raises OperationalError naming ``what``.
    """
    with tempfile.TemporaryFile() as err:     # a file: tar never blocks on a full stderr pipe
        try:
            proc = subprocess.Popen(tar_command(datadir, same_owner), stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=err, umask=UMASK)
        except OSError as exc:
            raise OperationalError(f"{what}: cannot run GNU tar: {exc.strerror}") from None
        try:
            fcntl.fcntl(proc.stdin.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass                              # a smaller pipe only costs wake-ups
        try:
            _feed(proc, blocks, tap)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            _close(proc.stdin)
        if proc.wait() != 0:
            err.seek(0)
            raise OperationalError(f"{what}: tar -x into {datadir} failed (exit "
                                   f"{proc.returncode}): {_first_error(err.read())}")


def _feed(proc: subprocess.Popen, blocks: Iterable, tap) -> None:
    """Every block into tar's stdin; a tar gone early is left to its exit code."""
    try:
        for block in blocks:
            if tap is not None:
                tap(block)
            proc.stdin.write(block)
    except BrokenPipeError:
        pass


def _close(stdin) -> None:
    try:
        stdin.close()
    except BrokenPipeError:
        pass


def _first_error(text: bytes) -> str:
    lines = [ln for ln in text.decode("utf-8", "replace").splitlines()
             if ln and "Removing leading" not in ln and "Exiting with failure" not in ln]
    return lines[0] if lines else "no message"
