"""How many CPUs this process may really use: the default of ``backup.workers``.

``os.cpu_count()`` counts the machine's cores; in a container or a systemd
slice the CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``) and the affinity mask may allow far fewer, and forking
one worker per machine core then only adds context switches (issue 23).
"""
from __future__ import annotations

import math
import os

CGROUP_ROOT = "/sys/fs/cgroup"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota(quota: str | None, period: str | None) -> float | None:
    """CPUs allowed by a quota/period pair; None when unlimited or unreadable."""
    try:
        q, p = int(quota), int(period)
    except (TypeError, ValueError):     # "max" (v2 unlimited), missing file
        return None
    return q / p if q > 0 and p > 0 else None     # v1 writes -1 for unlimited


def cgroup_cpu_limit(root: str = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows, from v2 ``cpu.max`` or v1's cfs files under
    ``root``; None when there is no quota."""
    v2 = _read(os.path.join(root, "cpu.max"))
    if v2 is not None:
        parts = v2.split()
        return _quota(parts[0], parts[1] if len(parts) > 1 else "100000")
    for v1 in (os.path.join(root, "cpu"), os.path.join(root, "cpu,cpuacct"), root):
        quota = _read(os.path.join(v1, "cpu.cfs_quota_us"))
        if quota is not None:
            return _quota(quota, _read(os.path.join(v1, "cpu.cfs_period_us")))
    return None


def available_cores(root: str = CGROUP_ROOT) -> int:
    """Cores this process may use: the affinity mask, capped by the cgroup quota
    rounded up (a 1.5-CPU quota still lets two workers share it), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)
