"""The length of each periodic duty's period (issue #21 item 2), from the jobs of the
configured schedule (opskit.schedule.jobs.load_schedule): a monthly drill job means
a 31-day period, a weekly one 7 days. Each duty's period is clamped between a
shortest one the evidence judges (an hourly policy check is judged per day) and the
regulation's floor (R-BAK-4: a full backup at least every 7 days, whatever the
schedule says). A duty no enabled job runs keeps that floor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .periods import DAY
from .text import T

HOUR = 3600.0
EVERY_S = {"hour": HOUR, "day": DAY, "week": 7 * DAY, "month": 31 * DAY}


@dataclass(frozen=True)
class Duty:
    matches: Callable[[list[str]], bool]      # the job's opskit command runs this duty
    shortest_s: float
    longest_s: float                          # the regulation's floor
    grace_s: float


def _backup(full: bool) -> Callable[[list[str]], bool]:
    return lambda c: c[:2] == ["backup", "run"] and ("--full" in c) == full


DUTIES = {
    "backup": Duty(_backup(False), DAY, DAY, 2 * HOUR),                 # daily incrementals
    "full backup": Duty(_backup(True), DAY, 7 * DAY, 12 * HOUR),        # R-BAK-4 floor
    "drill": Duty(lambda c: c[:2] == ["backup", "drill"], DAY, 366 * DAY, DAY),
    "policy check": Duty(lambda c: c[:2] == ["policy", "check"] and "--profile" not in c,
                         DAY, DAY, 2 * HOUR),
    "permission review": Duty(lambda c: c[:2] in (["perms", "snapshot"], ["perms", "report"]),
                              DAY, 7 * DAY, DAY),
}


@dataclass(frozen=True)
class Period:
    every_s: float
    grace_s: float
    basis: T                                   # why this length, for the reason


def _every_s(job, jobs: dict) -> float | None:
    """Seconds between runs of ``job``; an 'after' job runs as often as its most
    frequent timed predecessor."""
    seen, todo, found = set(), [job], []
    while todo:
        j = todo.pop()
        if j.name in seen or not j.enabled:
            continue
        seen.add(j.name)
        if j.timed:
            found.append(EVERY_S[j.every])
        todo += [jobs[n] for n in j.after if n in jobs]
    return min(found) if found else None


def periods(schedule) -> dict[str, Period]:
    """{duty: Period} from ``schedule`` (opskit.schedule.jobs.Schedule)."""
    out = {}
    for name, duty in DUTIES.items():
        runs = [(s, j.name) for j in schedule.jobs.values() if j.enabled and duty.matches(
            list(j.command)) for s in [_every_s(j, schedule.jobs)] if s]
        if not runs:
            out[name] = Period(duty.longest_s, duty.grace_s, T(
                "no job of the schedule {schedule} runs it: the longest period allowed",
                schedule=schedule.source))
            continue
        every, job = min(runs)
        length = min(max(every, duty.shortest_s), duty.longest_s)
        basis = T("schedule job '{job}' ({schedule})", job=job, schedule=schedule.source) \
            if length == every else T("schedule job '{job}' ({schedule}) runs every {days} "
                                      "d: judged per {period} d", job=job,
                                      schedule=schedule.source, days=f"{every / DAY:g}",
                                      period=f"{length / DAY:g}")
        out[name] = Period(length, duty.grace_s, basis)
    return out


def default_periods() -> dict[str, Period]:
    """Periods of the embedded default schedule."""
    from opskit.schedule.jobs import load_schedule
    return periods(load_schedule())
