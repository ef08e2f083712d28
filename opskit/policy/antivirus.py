"""Is a process that calls itself an on-access scanner the real one? (R-NET-4)

A process name is whatever the binary was called when it was started: a copy
of /bin/sleep named ``clamonacc`` shows ``clamonacc`` in ``ps`` (issue #18
item 4). The real scanner is the executable the kernel runs
(``/proc/PID/exe``, resolved with ``Host.realpath``) whose name matches and
which an installed package owns (``dpkg -S`` / ``rpm -qf`` over the Host
interface; in a recorded tree, the tree's ``/var/lib/dpkg/info/*.list``), or
which the policy trusts by path (vendor agents installed without a package).
For ClamAV the age of the signature database is reported too.
"""
from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass

from .probe import Probe

COMM_MAX = 15                      # the kernel truncates /proc/PID/comm to 15 characters
# merged /usr: /usr/bin/x is also /bin/x, and dpkg's database may know only one of them
MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
CLAMAV_DB_DIR = "/var/lib/clamav"
CLAMAV_CONFS = ("/etc/clamav/clamd.conf", "/etc/clamd.d/scan.conf", "/etc/clamd.conf")
CLAMAV_DAILY = ("daily.cld", "daily.cvd")


@dataclass
class Candidate:
    """One running process named like a scanner, and what was found about it."""

    pid: int
    comm: str
    exe: str | None = None          # real path of /proc/PID/exe (None: unresolvable)
    owner: str | None = None        # the package that owns ``exe``
    owner_source: str = ""          # how ownership was asked ('dpkg -S ...')


def judge(c: Candidate, trusted: list[str]) -> tuple[bool | None, str]:
    """(True: the real scanner / False: not / None: cannot tell, why)."""
    where = f"/proc/{c.pid}/exe"
    if c.exe is None:
        return None, (f"{where} of '{c.comm}' cannot be resolved (process gone, executable "
                      "deleted or replaced since it started, or no permission to read it)")
    if posixpath.basename(c.exe)[:COMM_MAX] != c.comm:
        return False, f"process '{c.comm}' (pid {c.pid}) runs {c.exe}, not a {c.comm} binary"
    if c.exe in trusted:
        return True, f"{where} -> {c.exe} (trusted path in the policy)"
    if c.owner is None:
        return False, (f"process '{c.comm}' (pid {c.pid}) runs {c.exe}, which no installed "
                       f"package owns ({c.owner_source})")
    return True, f"{where} -> {c.exe}, package {c.owner} ({c.owner_source})"


def aliases(path: str) -> list[str]:
    """``path`` and its other name under merged /usr (/usr/bin/x <-> /bin/x)."""
    parts = path.split("/")
    if len(parts) > 3 and parts[1] == "usr" and parts[2] in MERGED:
        return [path, "/" + "/".join(parts[2:])]
    if len(parts) > 2 and parts[1] in MERGED:
        return [path, "/usr" + path]
    return [path]


def parse_dpkg_search(text: str, paths: list[str]) -> str | None:
    """The package(s) of the first line of ``dpkg -S`` output naming one of ``paths``
    (lines are 'pkg[, pkg2]: /path'; 'diversion by ...' lines are not owners)."""
    for line in text.splitlines():
        pkgs, sep, path = line.rpartition(": ")
        if sep and path.strip() in paths and not line.startswith(("diversion ", "local diversion")):
            return pkgs.strip()
    return None


def package_owner(probe: Probe, path: str) -> tuple[str | None, str]:
    """(owning package or None, how it was asked). Raises LookupError when no
    package database can be asked."""
    names = aliases(path)
    if probe.recorded:
        return _recorded_owner(probe, names)
    result = probe.run(["dpkg", "-S", *names])
    if result is not None and result.rc != 127:
        return parse_dpkg_search(result.text, names), f"dpkg -S {' '.join(names)}"
    for name in names:
        result = probe.run(["rpm", "-qf", "--qf", "%{NAME}\\n", name])
        if result is None or result.rc == 127:
            break
        if result.rc == 0 and result.text.strip():
            return result.text.strip().splitlines()[0], f"rpm -qf {name}"
    else:
        return None, f"rpm -qf {' '.join(names)}"
    raise LookupError("neither dpkg nor rpm on the host: package ownership cannot be checked")


def _recorded_owner(probe: Probe, names: list[str]) -> tuple[str | None, str]:
    info = "/var/lib/dpkg/info"
    lists = [n for n in probe.listdir(info) or [] if n.endswith(".list")]
    if not lists:
        raise LookupError(f"the recorded tree has no {info}/*.list: package ownership cannot "
                          "be checked")
    for name in sorted(lists):
        text = probe.read(f"{info}/{name}") or ""
        if any(line in names for line in text.splitlines()):
            return name[:-len(".list")].split(":")[0], f"{info}/{name}"
    return None, f"{info}/*.list"


def candidates(probe: Probe, names: set[str]) -> list[Candidate]:
    """Running processes with a scanner's name, their executable and its package."""
    out = []
    for pid, comm in sorted(probe.processes().items()):
        if comm not in names:
            continue
        c = Candidate(pid, comm, probe.realpath(f"/proc/{pid}/exe"))
        if c.exe is not None:
            c.owner, c.owner_source = package_owner(probe, c.exe)
        out.append(c)
    return out


def clamav_signature_age(probe: Probe, now: float | None = None) -> tuple[float, str] | None:
    """(age in days, the database file) of ClamAV's daily signatures: the newer
    of daily.cld / daily.cvd in clamd's DatabaseDirectory. None when absent."""
    directory = CLAMAV_DB_DIR
    for conf in CLAMAV_CONFS:
        for line in (probe.read(conf) or "").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "DatabaseDirectory":
                directory = words[1]
    found = []
    for name in CLAMAV_DAILY:
        path = f"{directory}/{name}"
        mtime = probe.mtime(path)
        if mtime is not None:
            found.append((mtime, path))
    if not found:
        return None
    mtime, path = max(found)
    return ((now if now is not None else time.time()) - mtime) / 86400, path
