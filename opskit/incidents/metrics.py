"""Prometheus textfile gauges of the incident clocks (node_exporter's textfile collector,
the pattern of opskit.schedule.daemon): written by ``incident overdue`` each hour."""
from __future__ import annotations

import datetime as _dt
import os

from opskit.core.atomicfile import write_atomic
from opskit.core.state import StateLayout

from . import clocks
from .settings import GRADES

FILE = "opskit_incidents.prom"


def default_path(state_dir: str, metrics_dir: str | None = None) -> str:
    """``opskit_incidents.prom`` in ``schedule.metrics_dir`` (default the scheduler's)."""
    return os.path.join(metrics_dir or os.path.join(StateLayout(state_dir).schedule, "metrics"),
                        FILE)


def text(incidents: list, now: _dt.datetime) -> str:
    """Open incidents by grade, missed deadlines, and seconds to the next open deadline
    (negative never: a passed deadline is counted as missed instead)."""
    open_ = [i for i in incidents if i.state == "open"]
    left = [d.seconds_left(now) for i in open_ for d in i.deadlines()]
    left = [s for s in left if s is not None]
    missed = sum(1 for i in incidents for d in i.deadlines() if d.state(now) == clocks.MISSED)
    lines = ["# HELP opskit_incidents_open Open incidents by grade (R-INC-1).",
             "# TYPE opskit_incidents_open gauge"]
    lines += [f'opskit_incidents_open{{grade="{g}"}} {sum(1 for i in open_ if i.grade == g)}'
              for g in GRADES]
    lines += ["# HELP opskit_incidents_missed_deadlines Incident deadlines missed (R-INC-1).",
              "# TYPE opskit_incidents_missed_deadlines gauge",
              f"opskit_incidents_missed_deadlines {missed}"]
    if left:
        lines += ["# HELP opskit_incidents_next_deadline_seconds Seconds to the next open "
                  "incident deadline.",
                  "# TYPE opskit_incidents_next_deadline_seconds gauge",
                  f"opskit_incidents_next_deadline_seconds {min(left):.0f}"]
    return "\n".join(lines) + "\n"


def write(path: str, incidents: list, now: _dt.datetime) -> str:
    """Write the gauges to ``path`` atomically (0644: node_exporter reads it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return write_atomic(path, text(incidents, now), mode=0o644)
