"""Is this host a container sharing another machine's kernel? (issue #18 item 8)

The kernel-module, block-device and USB checks are n/a in a container: those
belong to the host's kernel. A marker file alone (``/.dockerenv`` left on a
VM image) does not decide it; evidence that the kernel is shared does:
``systemd-detect-virt --container`` on a live host, ``/run/systemd/container``
(written by systemd inside a container), ``container=`` in PID 1's
environment, or PID 1 in a container cgroup (docker, lxc, kubepods, libpod).
"""
from __future__ import annotations

from .probe import Probe

# 'none' (exit 1) is an answer too: '|| true' keeps it in one batched round trip
DETECT_VIRT = ["sh", "-c", "systemd-detect-virt --container 2>/dev/null || true"]
CGROUP_MARKERS = ("/docker/", "/docker-", "/lxc/", "/lxc.payload", "/kubepods", "/libpod-",
                  "/machine.slice/libpod", "/containerd/", "/actions_job/")


def container_reason(probe: Probe) -> str | None:
    """The evidence that this host shares its kernel with another, or None."""
    text, _ = probe.command("detect-virt", DETECT_VIRT)
    answer = (text or "").strip()
    if answer == "none":
        return None                               # the authoritative answer: own kernel
    if answer:
        return f"systemd-detect-virt --container: {answer}"
    kind = probe.value("/run/systemd/container")
    if kind:
        return f"/run/systemd/container = {kind}"
    environ = probe.read("/proc/1/environ") or ""
    for item in environ.split("\0"):
        if item.startswith("container=") and item[10:]:
            return f"/proc/1/environ: {item}"
    cgroup = probe.read("/proc/1/cgroup") or ""
    for number, line in enumerate(cgroup.splitlines(), 1):
        if any(marker in line for marker in CGROUP_MARKERS):
            return f"/proc/1/cgroup:{number}: {line.strip()}"
    return None
