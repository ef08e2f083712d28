"""Retention decisions on synthetic timelines (R-BAK-2, R-BAK-4)."""
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from opskit.backup.retention import Floor, Policy, decide, parse_duration
from opskit.core.errors import UsageError

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NO_FLOOR = Floor(min_age_days=0)


def snap(i, when: dt.datetime, tags=()):
    return {"id": f"{i:064x}", "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "host": "db01", "paths": ["/srv"], "tags": list(tags)}


def kept(decisions):
    return sorted(d.snapshot["id"] for d in decisions if d.keep)


def every_6h(days, start=NOW):
    return [snap(i, start - dt.timedelta(hours=6 * i)) for i in range(days * 4)]


def test_keep_daily_keeps_the_newest_of_each_day():
    snaps = every_6h(10)
    decisions = decide(snaps, Policy(keep_daily=3), NO_FLOOR, now=NOW, tz=UTC)
    keep = [d.snapshot for d in decisions if d.keep]
    assert len(keep) == 3
    days = [s["time"][:10] for s in keep]
    assert days == ["2026-11-22", "2026-11-21", "2026-11-20"]
    # the newest of each day: 12:00 today, 18:00 on earlier days
    assert [s["time"][11:16] for s in keep] == ["12:00", "18:00", "18:00"]


def test_weekly_buckets_follow_iso_weeks_across_a_year_boundary():
    start = dt.datetime(2027, 1, 6, 12, tzinfo=UTC)       # Wednesday of ISO week 2027-W01
    snaps = [snap(i, start - dt.timedelta(days=i)) for i in range(21)]
    decisions = decide(snaps, Policy(keep_weekly=3), NO_FLOOR, now=start, tz=UTC)
    keep = [d.snapshot["time"][:10] for d in decisions if d.keep]
    # newest of W01 (Jan 6), of 2026-W53 (Sun Jan 3), of 2026-W52 (Sun Dec 27)
    assert keep == ["2027-01-06", "2027-01-03", "2026-12-27"]


def test_monthly_and_yearly_buckets():
    snaps = [snap(i, NOW - dt.timedelta(days=10 * i)) for i in range(80)]
    keep = [d.snapshot["time"][:7] for d in decide(snaps, Policy(keep_monthly=4), NO_FLOOR,
                                                     now=NOW, tz=UTC) if d.keep]
    assert keep == ["2026-11", "2026-10", "2026-09", "2026-08"]
    keep = [d.snapshot["time"][:4] for d in decide(snaps, Policy(keep_yearly=5), NO_FLOOR,
                                                     now=NOW, tz=UTC) if d.keep]
    assert keep == ["2026", "2025", "2024"]


def test_time_zone_moves_the_day_boundary():
    # 17:00 UTC and 15:00 UTC on Nov 21 are the same UTC day, but 17:00 UTC is
    # already Nov 22 in Shanghai (UTC+8), so there they fall in different days.
    a = snap(1, dt.datetime(2026, 11, 21, 17, tzinfo=UTC))
    b = snap(2, dt.datetime(2026, 11, 21, 15, tzinfo=UTC))
    utc_days = kept(decide([a, b], Policy(keep_daily=5), NO_FLOOR, now=NOW, tz=UTC))
    sh_days = kept(decide([a, b], Policy(keep_daily=5), NO_FLOOR, now=NOW,
                          tz=ZoneInfo("Asia/Shanghai")))
    assert utc_days == [a["id"]]
    assert sh_days == sorted([a["id"], b["id"]])


def test_keep_last_and_within_combine():
    snaps = every_6h(5)
    decisions = decide(snaps, Policy(keep_last=2, keep_within=dt.timedelta(days=2)), NO_FLOOR,
                       now=NOW, tz=UTC)
    keep = [d for d in decisions if d.keep]
    assert len(keep) == 9          # 0..48 h inclusive at 6 h steps
    assert "last" in keep[0].reasons and "within" in keep[0].reasons


def test_tags_limit_the_policy():
    snaps = [snap(0, NOW - dt.timedelta(days=40), tags=["daily"]),
             snap(1, NOW - dt.timedelta(days=41), tags=["manual"]),
             snap(2, NOW - dt.timedelta(days=42), tags=["daily"])]
    decisions = decide(snaps, Policy(keep_last=1, tags=["daily"]), NO_FLOOR, now=NOW, tz=UTC)
    assert kept(decisions) == sorted([snaps[0]["id"], snaps[1]["id"]])


def test_no_rule_is_refused():
    with pytest.raises(UsageError, match="no keep rule"):
        decide(every_6h(1), Policy(), NO_FLOOR, now=NOW)


def test_floor_keeps_young_snapshots_whatever_the_policy():
    snaps = every_6h(40)
    decisions = decide(snaps, Policy(keep_last=1), Floor(min_age_days=30), now=NOW, tz=UTC)
    for d in decisions:
        age = NOW - dt.datetime.fromisoformat(d.snapshot["time"].rstrip("Z")).replace(tzinfo=UTC)
        assert d.keep == (age < dt.timedelta(days=30) or d.snapshot is snaps[0])


def test_floor_holds_against_1000_planted_snapshots():
    """A compromised client plants 1,000 fresh fake snapshots to push real ones
    out of --keep-last/--keep-daily: the floor keeps every real one under 30 days
    and the newest drill-verified one, however old."""
    real = [snap(i, NOW - dt.timedelta(days=i)) for i in range(60)]
    verified = real[45]
    planted = [snap(10_000 + i, NOW + dt.timedelta(minutes=i)) for i in range(1000)]
    floor = Floor(min_age_days=30, protected_ids={verified["id"]})
    decisions = decide(real + planted, Policy(keep_last=5, keep_daily=3), floor, now=NOW, tz=UTC)
    keep = {d.snapshot["id"] for d in decisions if d.keep}
    assert all(s["id"] in keep for s in real[:30])
    assert verified["id"] in keep
    assert real[50]["id"] not in keep      # the floor is a floor, not "keep everything"


@pytest.mark.parametrize("text,days", [("30d", 30), ("2w", 14), ("6mo", 180), ("1y", 365),
                                       ("1y2mo", 425), ("36h", 1.5)])
def test_parse_duration(text, days):
    assert parse_duration(text) == dt.timedelta(days=days)


@pytest.mark.parametrize("bad", ["", "soon", "10", "d30", "-3d", "2d1y", "1d1d"])
def test_parse_duration_rejects_nonsense(bad):
    with pytest.raises(UsageError):
        parse_duration(bad)


def test_keep_within_refuses_minutes_that_used_to_mean_months():
    # '6m' meant six months here before the grammar was unified: never silently 6 minutes
    with pytest.raises(UsageError) as err:
        parse_duration("6m")
    assert "6mo" in str(err.value)
