"""Which snapshots a retention policy keeps (``opskit backup forget``).

R-BAK-2 (copies kept safe), R-BAK-4. Buckets work like restic's: for each
``keep_*`` rule, walk snapshots newest first and keep the newest of every
hour/day/week/month/year until that rule has kept N. A configured **floor**
then overrides everything: snapshots younger than ``floor_days`` and the
newest snapshot a restore drill verified are never forgotten, whatever the
flags, so a client that plants many fake snapshots cannot push real ones out.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from opskit.core.durations import DurationError, parse_timedelta, units_in
from opskit.core.errors import UsageError
from opskit.core.state import StateLayout

def parse_duration(text: str) -> dt.timedelta:
    """``--keep-within`` / ``retention.keep_within``: a duration in opskit's one grammar
    (opskit.core.durations: ``30d``, ``2w``, ``6mo``, ``1y6mo``, ``12h``). Minutes are
    refused: before the grammar was unified ``6m`` meant six months here, and
    keeping snapshots for minutes is never what a retention policy means."""
    try:
        if "m" in units_in(text or ""):
            raise DurationError(f"{text!r} would be minutes; write months as 'mo' (e.g. 6mo)")
        return parse_timedelta(text)
    except DurationError as exc:
        raise UsageError(f"duration {text!r}: {exc}",
                         hint="e.g. 30d, 2w, 6mo, 1y, 12h or 1y6mo") from None


@dataclass
class Policy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: dt.timedelta | None = None
    tags: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.keep_last or self.keep_hourly or self.keep_daily or self.keep_weekly
                    or self.keep_monthly or self.keep_yearly or self.keep_within)


@dataclass
class Floor:
    """What no policy may remove."""

    min_age_days: float = 30.0
    protected_ids: set[str] = field(default_factory=set)   # e.g. newest drill-verified


@dataclass
class Decision:
    snapshot: dict
    keep: bool
    reasons: list[str]


def snapshot_time(snap: dict, tz: dt.tzinfo | None) -> dt.datetime:
    text = snap["time"].rstrip("Z")
    t = dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
    return t.astimezone(tz) if tz else t.astimezone()


def _bucket(t: dt.datetime, unit: str) -> tuple:
    if unit == "hourly":
        return (t.year, t.month, t.day, t.hour)
    if unit == "daily":
        return (t.year, t.month, t.day)
    if unit == "weekly":
        iso = t.isocalendar()
        return (iso[0], iso[1])
    if unit == "monthly":
        return (t.year, t.month)
    return (t.year,)


def decide(snapshots: list[dict], policy: Policy, floor: Floor, *, now: dt.datetime | None = None,
           tz: dt.tzinfo | None = None) -> list[Decision]:
    """Keep/forget decisions for one group of snapshots (same host and paths).

    Snapshots without the policy's tags are kept (the policy does not apply
    to them). Returns decisions newest first.
    """
    if policy.empty():
        raise UsageError("no keep rule given: refusing to forget every snapshot "
                         "(use e.g. --keep-daily 7 --keep-weekly 4, or set backup.retention)")
    now = now or dt.datetime.now(dt.timezone.utc)
    ordered = sorted(snapshots, key=lambda s: (s["time"], s["id"]), reverse=True)
    decisions = []
    counters = {u: getattr(policy, f"keep_{u}") for u in
                ("hourly", "daily", "weekly", "monthly", "yearly")}
    last_bucket: dict[str, tuple | None] = {u: None for u in counters}
    kept_last = 0
    for snap in ordered:
        reasons = []
        if policy.tags and not set(policy.tags) & set(snap.get("tags", [])):
            decisions.append(Decision(snap, True, ["not tagged " + ",".join(policy.tags)]))
            continue
        t = snapshot_time(snap, tz)
        if kept_last < policy.keep_last:
            kept_last += 1
            reasons.append("last")
        for unit, left in counters.items():
            if left <= 0:
                continue
            b = _bucket(t, unit)
            if b != last_bucket[unit]:
                last_bucket[unit] = b
                counters[unit] = left - 1
                reasons.append(unit)
        if policy.keep_within is not None and now - t.astimezone(dt.timezone.utc) <= policy.keep_within:
            reasons.append("within")
        decisions.append(Decision(snap, bool(reasons), reasons))
    # the floor overrides every policy
    for d in decisions:
        if d.keep:
            continue
        t = snapshot_time(d.snapshot, dt.timezone.utc)
        age_days = (now - t).total_seconds() / 86400
        if age_days < floor.min_age_days:
            d.keep, d.reasons = True, [f"floor: younger than {floor.min_age_days:g} days"]
        elif d.snapshot["id"] in floor.protected_ids:
            d.keep, d.reasons = True, ["floor: newest drill-verified snapshot"]
    return decisions


def group_key(snap: dict) -> tuple:
    return (snap.get("host"), tuple(sorted(snap.get("paths", []))))


def newest_drill_verified(state_dir: str) -> set[str]:
    """Ids of the newest snapshot a passing restore drill verified, per site.

    Drill reports (issue: restore drills) are JSON files in
    ``<state_dir>/drills/`` with at least ``snapshot``, ``site``, ``time`` and
    ``passed``; this is the contract retention relies on.
    """
    import glob
    import json
    import os
    best: dict[str, tuple[str, str]] = {}
    for path in glob.glob(os.path.join(StateLayout(state_dir).drills, "*.json")):
        try:
            with open(path) as fh:
                report = json.load(fh)
        except (OSError, ValueError):
            continue
        if not report.get("passed") or not report.get("snapshot"):
            continue
        site = report.get("site", "local")
        when = str(report.get("time", ""))
        if site not in best or when > best[site][0]:
            best[site] = (when, report["snapshot"])
    return {sid for _when, sid in best.values()}
