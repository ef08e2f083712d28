"""Age-based retention of stored policy runs and permission snapshots (issue #21
item 2): the evidence pack needs the whole audit window, not the newest 100."""
import datetime as dt

from opskit.core.keep import expired, id_time
from opskit.policy.store import RunStore

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)


def rid(days: float, ms: bool = False) -> str:
    when = NOW - dt.timedelta(days=days)
    return when.strftime("%Y%m%dT%H%M%S") + ("123Z-abc" if ms else ".000000Z-abc")


def test_id_time_reads_policy_run_and_snapshot_ids():
    assert id_time(rid(1)) == NOW - dt.timedelta(days=1)
    assert id_time(rid(2, ms=True)) == NOW - dt.timedelta(days=2)
    assert id_time("not-a-time") is None


def test_only_records_older_than_keep_days_and_beyond_keep_go():
    ids = [rid(d) for d in (500, 450, 399, 10, 1)]            # oldest first
    assert expired(ids, keep=2, keep_days=400, now=NOW) == ids[:2]
    assert expired(ids, keep=4, keep_days=400, now=NOW) == ids[:1]   # the floor keeps one
    assert expired(ids + ["odd"], keep=0, keep_days=0, now=NOW) == ids   # unknown time kept
    hourly = [rid(h / 24) for h in range(399 * 24, 0, -1)]
    assert expired(hourly, keep=100, keep_days=400, now=NOW) == []      # not by count


def test_run_store_keeps_a_year_of_hourly_runs(tmp_path):
    store = RunStore(str(tmp_path), keep=100)
    assert store.keep_days == 400.0
    (tmp_path / "policy" / "runs").mkdir(parents=True)
    now_ids = [rid(d) for d in (800, 300, 200, 100, 50)]
    for i in now_ids:
        (tmp_path / "policy" / "runs" / f"{i}.json").write_text("{}")
    store.keep = 1
    store.prune()
    assert store.ids() == now_ids[1:]                 # only the 800-day-old one went
