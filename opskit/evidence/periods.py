"""Regularity over the audit period: is a periodic duty (a full backup every 7
days, a policy check every day, ...) done in every period, and where are the gaps?

Two views of the same event times:
* ``periods``: the audit window cut into consecutive periods of the duty's length
  from ``--since``, each with its number of events (what the pack shows);
* ``gaps``: every stretch longer than the duty's length plus grace with no event
  (from ``--since`` to the first, between two, from the last to now). Any gap
  makes the duty missed: the rule is ``not met``, and the gap is named with dates.
"""
from __future__ import annotations

import bisect
import datetime as dt
from dataclasses import dataclass, field

from .text import T, join

DAY = 86400.0


@dataclass
class Regularity:
    duty: str
    every_s: float
    grace_s: float
    since: dt.datetime
    now: dt.datetime
    count: int = 0
    periods: list[dict] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)
    basis: T | None = None               # why the period has this length (cadence.py)

    @property
    def ok(self) -> bool:
        return self.count > 0 and not self.gaps

    def describe(self) -> T:
        """One line: '13/13 periods covered' or the gaps with dates."""
        covered = sum(1 for p in self.periods if p["count"])
        duty = T(self.duty)
        text = T("{duty}: {count} in the period, {covered}/{periods} periods", duty=duty,
                 count=self.count, covered=covered, periods=len(self.periods))
        if self.basis is not None:
            text = T("{text} (period: {basis})", text=text, basis=self.basis)
        if not self.gaps:
            return text
        shown = join((T("{start} .. {end} ({days} d)", start=g["from"][:10],
                        end=g["to"][:10], days=f"{g['days']:g}") for g in self.gaps[:5]), ", ")
        more = T(" and {more} more", more=len(self.gaps) - 5) if len(self.gaps) > 5 else ""
        return text + T("; MISSED (no {duty} for longer than {days}): {gaps}{more}",
                        duty=duty, days=_days(self.every_s), gaps=shown, more=more)

    def as_dict(self) -> dict:
        return {"duty": self.duty, "every_days": round(self.every_s / DAY, 3),
                "grace_hours": round(self.grace_s / 3600, 2), "count": self.count,
                "periods": self.periods, "gaps": self.gaps, "ok": self.ok}


def _days(seconds: float) -> T:
    days = seconds / DAY
    return T("{days} day", days=f"{days:g}") if days == 1 else \
        T("{days} days", days=f"{days:g}")


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def regularity(duty: str, times: list[dt.datetime], every_s: float, grace_s: float,
               since: dt.datetime, now: dt.datetime, basis: T | None = None) -> Regularity:
    """Check that ``times`` (any order) has an event at least every ``every_s``
    (+ ``grace_s``) seconds from ``since`` to ``now``."""
    inside = sorted(t for t in times if since <= t <= now)
    reg = Regularity(duty, every_s, grace_s, since, now, len(inside), basis=basis)
    step = dt.timedelta(seconds=every_s)
    start = since
    while start < now:
        end = min(start + step, now)
        n = bisect.bisect_left(inside, end) - bisect.bisect_left(inside, start)
        reg.periods.append({"from": _iso(start), "to": _iso(end), "count": n,
                            "complete": end - start >= step})
        start = end
    limit = every_s + grace_s
    marks = [since, *inside, now]
    for before, after in zip(marks, marks[1:]):
        if (after - before).total_seconds() > limit:
            reg.gaps.append({"from": _iso(before), "to": _iso(after),
                             "days": round((after - before).total_seconds() / DAY, 1)})
    return reg
