"""Prometheus textfile gauge of the WAL archive, written by ``backup wal-push``
(node_exporter's textfile collector, the pattern of opskit.schedule.daemon):
an alert on its age catches an archive_command that keeps failing."""
from __future__ import annotations

import os

from opskit.core.atomicfile import write_atomic
from opskit.core.state import StateLayout

NAME = "opskit_wal_archive_last_success_timestamp"


def path_for(state_dir: str, cluster: str, metrics_dir: str | None = None) -> str:
    """``opskit_wal_archive_<cluster>.prom`` in ``schedule.metrics_dir`` (default the scheduler's)."""
    folder = metrics_dir or os.path.join(StateLayout(state_dir).schedule, "metrics")
    return os.path.join(folder, f"opskit_wal_archive_{cluster}.prom")


def text(cluster: str, when: float, segment: str) -> str:
    label = cluster.replace("\\", "\\\\").replace('"', '\\"')
    return (f"# HELP {NAME} Unix time 'opskit backup wal-push' last stored a WAL file.\n"
            f"# TYPE {NAME} gauge\n"
            f'{NAME}{{cluster="{label}"}} {when:.3f}\n'
            f"# HELP opskit_wal_archive_last_segment_info The WAL file last stored.\n"
            f"# TYPE opskit_wal_archive_last_segment_info gauge\n"
            f'opskit_wal_archive_last_segment_info{{cluster="{label}",file="{segment}"}} 1\n')


def write(path: str, cluster: str, when: float, segment: str) -> str:
    """Write the gauge atomically (0644: node_exporter reads it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return write_atomic(path, text(cluster, when, segment), mode=0o644)
