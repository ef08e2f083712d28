"""backup.workers default: cores available, cgroup-quota aware (issue 23)."""
import os

import pytest

from opskit.backup.cores import available_cores, cgroup_cpu_limit

AFFINITY = len(os.sched_getaffinity(0))


def _write(root, name, text):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize("text, limit", [
    ("max 100000", None),           # v2 without a quota
    ("150000 100000", 1.5),
    ("50000 100000", 0.5),
    ("200000 50000", 4.0),
    ("garbage", None),
])
def test_cgroup_v2_cpu_max(tmp_path, text, limit):
    _write(tmp_path, "cpu.max", text)
    assert cgroup_cpu_limit(str(tmp_path)) == limit


@pytest.mark.parametrize("sub", ["cpu", "cpu,cpuacct", "."])
def test_cgroup_v1_cfs_quota(tmp_path, sub):
    _write(tmp_path, f"{sub}/cpu.cfs_quota_us", "250000")
    _write(tmp_path, f"{sub}/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_limit(str(tmp_path)) == 2.5


def test_cgroup_v1_unlimited_and_absent(tmp_path):
    assert cgroup_cpu_limit(str(tmp_path)) is None       # no cgroup files at all
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "-1")
    _write(tmp_path, "cpu/cpu.cfs_period_us", "100000")
    assert cgroup_cpu_limit(str(tmp_path)) is None


def test_quota_caps_affinity_rounding_up(tmp_path):
    _write(tmp_path, "cpu.max", "50000 100000")           # half a CPU still gets one worker
    assert available_cores(str(tmp_path)) == 1
    _write(tmp_path, "cpu.max", f"{AFFINITY * 100000 - 50000} 100000")
    assert available_cores(str(tmp_path)) == AFFINITY    # rounded up, not down


def test_quota_above_affinity_does_not_raise_it(tmp_path):
    _write(tmp_path, "cpu.max", f"{(AFFINITY + 8) * 100000} 100000")
    assert available_cores(str(tmp_path)) == AFFINITY
    _write(tmp_path, "cpu.max", "max 100000")
    assert available_cores(str(tmp_path)) == AFFINITY


def test_affinity_mask_counts_not_machine_cores(tmp_path):
    """A process pinned to one CPU gets one worker even on a many-core machine."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        assert available_cores(str(tmp_path)) == 1
    finally:
        os.sched_setaffinity(0, before)


def test_restorer_defaults_to_available_cores(monkeypatch):
    """The engine uses it when backup.workers is unset, and a set value wins."""
    from opskit.backup import restorer
    monkeypatch.setattr(restorer, "available_cores", lambda: 3)
    assert restorer.Restorer(None, "/tmp/x").workers == 3
    assert restorer.Restorer(None, "/tmp/x", workers=1).workers == 1
