"""The scheduler (issue #11): schedule files, timing, due jobs on an injected clock,
overlap, retries with backoff, status, metrics, 'after' chains (R-BAK-4, R-BAK-5)."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import threading
from pathlib import Path

import pytest

from opskit.settings import load_config
from opskit.core.errors import ConfigError, UsageError
from opskit.core.filelock import FileLock
from opskit.core.yamlfile import parse_yaml
from opskit.schedule import default_schedule
from opskit.schedule.jobs import load_schedule, parse_duration, parse_schedule
from tests.harness.clock import FakeClock
from opskit.schedule.daemon import (Daemon, JobRunner, Paths, library_clock,
                                    load_status, metrics_text)

REPO = Path(__file__).resolve().parents[3]

# A stand-in for 'opskit': a real subprocess whose behaviour the job's words choose.
#   exit N            exit with N
#   sleep S           sleep S seconds, exit 0
#   flaky FILE N      fail (exit 3) until called N times, then exit 0; counts in FILE
#   mark FILE         append a line to FILE, exit 0
STUB = r"""
import sys, time, os
words = sys.argv[1:]
if words[0] == "exit":
    print("stub exiting", words[1], file=sys.stderr); sys.exit(int(words[1]))
if words[0] == "sleep":
    time.sleep(float(words[1])); print("slept"); sys.exit(0)
if words[0] == "flaky":
    path, need = words[1], int(words[2])
    n = (int(open(path).read()) if os.path.exists(path) else 0) + 1
    open(path, "w").write(str(n))
    if n < need:
        print("opskit: error: backend unreachable", file=sys.stderr); sys.exit(3)
    print(f"done on call {n}"); sys.exit(0)
if words[0] == "mark":
    with open(words[1], "a") as fh: fh.write(" ".join(words) + "\n")
    print("marked"); sys.exit(0)
sys.exit(99)
"""
LAUNCHER = [sys.executable, "-c", STUB]
MONDAY = dt.datetime(2026, 11, 23, 0, 0)      # a Monday


def schedule_from(text: str, name: str = "schedule.yaml"):
    return parse_schedule(parse_yaml(text, name))


def make_runner(tmp_path, text: str, clock=None, **kw):
    sched = schedule_from(text)
    return JobRunner(sched, Paths(str(tmp_path / "state")), clock=clock or FakeClock(MONDAY),
                     launcher=LAUNCHER, **kw)


# --- the schedule file ---------------------------------------------------------------
def test_shipped_schedule_is_embedded_verbatim_and_has_the_required_jobs():
    assert (REPO / "configs" / "schedule.yaml").read_text() == default_schedule.TEXT
    sched = load_schedule(load_config(None))
    jobs = sched.jobs
    assert sched.source == "<embedded default schedule>"
    assert jobs["backup-incremental"].every == "day"                      # R-BAK-4
    assert jobs["backup-full"].every == "week" and "--full" in jobs["backup-full"].command
    assert set(jobs["replicate"].after) == {"backup-incremental", "backup-full"}
    drill = jobs["restore-drill"]                                         # R-BAK-5
    assert drill.every == "month" and drill.command[:4] == ["backup", "drill", "--site", "dr"]
    assert jobs["policy-check"].every == "hour"
    assert jobs["permission-snapshot"].every == "week"                    # a fresh snapshot,
    assert jobs["permission-report"].after == ["permission-snapshot"]     # then its report
    assert jobs["permission-report"].command[:2] == ["perms", "report"]
    assert jobs["audit-verify"].every == "day" and jobs["audit-verify"].command == ["audit",
                                                                                  "verify"]
    assert {"R-BAK-4"} <= set(jobs["backup-full"].rules)


def test_schedule_file_beside_the_config_is_found(tmp_path):
    (tmp_path / "opskit.yaml").write_text("operator: x\n")
    (tmp_path / "schedule.yaml").write_text(
        "jobs:\n  only:\n    command: [audit, verify]\n    every: day\n")
    sched = load_schedule(load_config(str(tmp_path / "opskit.yaml")))
    assert list(sched.jobs) == ["only"] and sched.source.endswith("schedule.yaml")


@pytest.mark.parametrize("body,line,key,words", [
    ("jobs:\n  a:\n    command: [audit, verify]\n    every: fortnight\n", 4, "jobs.a.every",
     "one of 'hour'"),
    ("jobs:\n  a:\n    command: [audit, verify]\n", 2, "jobs.a", "needs 'every'"),
    ("jobs:\n  a:\n    command: [audit, verify]\n    every: day\n    at: '25:00'\n", 5,
     "jobs.a.at", "HH:MM"),
    ("jobs:\n  a:\n    command: [audit, verify]\n    every: hour\n    at: '01:00'\n", 5,
     "jobs.a.at", "hourly jobs"),
    ("jobs:\n  a:\n    command: [audit, verify]\n    after: [nope]\n", 4, "jobs.a.after[0]",
     "unknown job 'nope'"),
    ("jobs:\n  a:\n    command: [opskit, audit, verify]\n    every: day\n", 3,
     "jobs.a.command", "leave out the leading 'opskit'"),
    ("jobs:\n  a:\n    command: [audit, verify]\n    every: day\n    timeout: soon\n", 5,
     "jobs.a.timeout", "duration"),
    ("jobs:\n  a:\n    command: [audit, verify]\n    every: month\n    day: 31\n", 5,
     "jobs.a.day", "1 ... 28"),
    ("jobs:\n  a:\n    command: [audit, verify]\n    every: day\n    colour: red\n", 5,
     "jobs.a.colour", "unknown key"),
])
def test_schedule_mistakes_name_file_line_and_key(body, line, key, words):
    with pytest.raises(ConfigError) as err:
        schedule_from(body, "/etc/opskit/schedule.yaml")
    message = str(err.value)
    assert message.startswith(f"/etc/opskit/schedule.yaml:{line}: key '{key}'"), message
    assert words in message
    assert err.value.exit_code == 2


def test_after_loops_are_refused():
    with pytest.raises(ConfigError, match="loop: a -> b -> a|loop: b -> a -> b"):
        schedule_from("jobs:\n  a:\n    command: [x]\n    every: day\n    after: [b]\n"
                      "  b:\n    command: [y]\n    after: [a]\n")


def test_durations():
    assert parse_duration(90) == 90 and parse_duration("90s") == 90
    assert parse_duration("30m") == 1800 and parse_duration("2h") == 7200
    assert parse_duration("1d") == 86400
    with pytest.raises(ValueError):
        parse_duration("soon")


# --- timing, cron and systemd ----------------------------------------------------------
TIMINGS = """
jobs:
  hourly: {command: [a], every: hour, at: ":15"}
  daily: {command: [a], every: day, at: "01:30"}
  weekly: {command: [a], every: week, weekday: sunday, at: "03:00"}
  monthly: {command: [a], every: month, day: 1, at: "05:00"}
  chained: {command: [a], after: [daily]}
"""


def test_next_run_for_every_kind_of_timing():
    jobs = schedule_from(TIMINGS).jobs
    now = dt.datetime(2026, 11, 23, 10, 20)               # Monday 10:20
    assert jobs["hourly"].next_run(now) == dt.datetime(2026, 11, 23, 11, 15)
    assert jobs["daily"].next_run(now) == dt.datetime(2026, 11, 24, 1, 30)
    assert jobs["weekly"].next_run(now) == dt.datetime(2026, 11, 29, 3, 0)      # Sunday
    assert jobs["monthly"].next_run(now) == dt.datetime(2026, 12, 1, 5, 0)
    assert jobs["chained"].next_run(now) is None
    assert jobs["daily"].next_run(dt.datetime(2026, 11, 23, 1, 0)) == dt.datetime(2026, 11, 23,
                                                                                  1, 30)


def test_cron_fields_and_on_calendar():
    jobs = schedule_from(TIMINGS).jobs
    assert jobs["hourly"].cron_fields() == "15 * * * *"
    assert jobs["daily"].cron_fields() == "30 1 * * *"
    assert jobs["weekly"].cron_fields() == "0 3 * * 0"
    assert jobs["monthly"].cron_fields() == "0 5 1 * *"
    assert jobs["weekly"].on_calendar() == "Sun *-*-* 03:00:00"
    assert jobs["monthly"].on_calendar() == "*-*-01 05:00:00"


def test_the_schedule_library_fires_on_the_injected_clock(tmp_path):
    """Due jobs run when the fake clock passes their time -- nobody sleeps."""
    marks = tmp_path / "marks"
    runner = make_runner(tmp_path, f"""
jobs:
  daily: {{command: [mark, "{marks}", daily], every: day, at: "01:30"}}
  hourly: {{command: [mark, "{marks}", hourly], every: hour, at: ":15"}}
  monthly: {{command: [mark, "{marks}", monthly], every: month, day: 1, at: "00:30"}}
  follow: {{command: [mark, "{marks}", follow], after: [daily]}}
""")
    clock = runner.clock
    daemon = Daemon(runner)
    daemon.pending()                                   # registers at 00:00 Monday
    assert not marks.exists()
    clock.set(MONDAY.replace(minute=16))
    daemon.pending()
    daemon.join()
    assert marks.read_text().split("\n")[:1] == [f"mark {marks} hourly"]
    clock.set(MONDAY.replace(hour=1, minute=31))
    daemon.pending()
    daemon.join()
    lines = marks.read_text().splitlines()
    assert lines[-2:] == [f"mark {marks} daily", f"mark {marks} follow"] or \
        sorted(lines[-3:]) == sorted([f"mark {marks} daily", f"mark {marks} follow",
                                      f"mark {marks} hourly"])
    assert "monthly" not in marks.read_text()          # Nov 23 is not the 1st
    clock.set(dt.datetime(2026, 12, 1, 0, 31))
    daemon.pending()
    daemon.join()
    assert "monthly" in marks.read_text()
    status = load_status(runner.paths, "follow")
    assert status["result"] == "ok" and status["trigger"] == "after daily"
    daemon.shutdown()


def test_library_clock_is_restored():
    import schedule as lib
    before = lib.datetime
    with library_clock(FakeClock(MONDAY)):
        assert lib.datetime.datetime.now() == MONDAY
    assert lib.datetime is before


# --- running one job -------------------------------------------------------------------
def test_a_successful_job_writes_status_log_and_metrics(tmp_path):
    marks = tmp_path / "m"
    runner = make_runner(tmp_path, f"jobs:\n  j:\n    command: [mark, '{marks}']\n"
                                   "    every: day\n")
    result = runner.run(runner.schedule.job("j"))
    assert (result.result, result.exit_code, result.attempts) == ("ok", 0, 1)
    status = load_status(runner.paths, "j")
    assert status["result"] == "ok" and status["last_success"] and status["summary"] == "marked"
    prom = Path(runner.paths.metrics_file("j")).read_text()
    assert re.search(r'^opskit_job_exit_code\{job="j"\} 0\.000$', prom, re.M)
    assert re.search(r'^opskit_job_last_success_timestamp_seconds\{job="j"\} \d+\.\d+$', prom,
                     re.M)
    assert "# TYPE opskit_job_duration_seconds gauge" in prom
    events = [json.loads(line)["event"] for line in open(runner.paths.log)]
    assert events == ["start", "finish"]
    leftovers = [n for n in os.listdir(runner.paths.metrics_dir) if n.startswith(".")]
    assert not leftovers                                   # tmp + rename left nothing behind


def test_a_failing_job_is_retried_with_backoff_and_recorded(tmp_path):
    counter = tmp_path / "calls"
    runner = make_runner(tmp_path, f"jobs:\n  j:\n    command: [flaky, '{counter}', '3']\n"
                                   "    every: day\n    retries: 2\n    retry_delay: 60\n")
    start = runner.clock.now()
    result = runner.run(runner.schedule.job("j"))
    assert result.result == "ok" and result.attempts == 3 and counter.read_text() == "3"
    # backoff 60 s, then 120 s, on the injected clock
    assert (runner.clock.now() - start).total_seconds() >= 180
    retries = [json.loads(line) for line in open(runner.paths.log)
               if json.loads(line)["event"] == "retry"]
    assert [r["delay"] for r in retries] == [60, 120]
    assert retries[0]["exit_code"] == 3 and "backend unreachable" in retries[0]["summary"]


def test_a_job_that_keeps_failing_ends_failed_with_exit_3(tmp_path):
    runner = make_runner(tmp_path, "jobs:\n  j:\n    command: [exit, '3']\n    every: day\n"
                                   "    retries: 1\n    retry_delay: 1\n")
    result = runner.run(runner.schedule.job("j"))
    assert (result.result, result.exit_code, result.attempts, result.cli_exit) == \
        ("failed", 3, 2, 3)
    status = load_status(runner.paths, "j")
    assert status["result"] == "failed" and "last_success" not in status
    prom = Path(runner.paths.metrics_file("j")).read_text()
    assert 'opskit_job_exit_code{job="j"} 3.000' in prom
    assert "opskit_job_last_success" not in prom


@pytest.mark.parametrize("code,result", [(1, "findings"), (2, "error")])
def test_findings_and_usage_errors_are_not_retried(tmp_path, code, result):
    runner = make_runner(tmp_path, f"jobs:\n  j:\n    command: [exit, '{code}']\n"
                                   "    every: day\n    retries: 3\n")
    got = runner.run(runner.schedule.job("j"))
    assert (got.result, got.attempts, got.cli_exit) == (result, 1, code)


def test_a_job_that_runs_too_long_is_killed_as_timeout(tmp_path):
    runner = make_runner(tmp_path, "jobs:\n  j:\n    command: [sleep, '30']\n    every: day\n"
                                   "    timeout: 0.5\n    retries: 0\n")
    got = runner.run(runner.schedule.job("j"))
    assert got.result == "timeout" and got.exit_code == 124 and "timed out" in got.summary


def test_the_same_job_never_overlaps_even_across_daemons(tmp_path):
    marks = tmp_path / "m"
    runner = make_runner(tmp_path, f"jobs:\n  j:\n    command: [mark, '{marks}']\n"
                                   "    every: day\n")
    # another daemon (or a cron line) holds the job's lock
    with FileLock(runner.paths.lock_file("j"), timeout=0):
        got = runner.run(runner.schedule.job("j"))
    assert got.result == "skipped" and not marks.exists()
    events = [json.loads(line) for line in open(runner.paths.log)]
    assert events[-1]["event"] == "skipped" and "lock held" in events[-1]["reason"]
    assert runner.run(runner.schedule.job("j")).result == "ok"


def test_a_due_job_still_running_is_not_started_twice(tmp_path):
    runner = make_runner(tmp_path, "jobs:\n  slow:\n    command: [sleep, '1.5']\n"
                                   "    every: hour\n    at: ':00'\n")
    daemon = Daemon(runner)
    daemon.pending()
    runner.clock.set(MONDAY + dt.timedelta(hours=1, seconds=1))
    daemon.pending()                                   # starts 'slow'
    first = daemon.threads["slow"]
    runner.clock.set(MONDAY + dt.timedelta(hours=2, seconds=1))
    daemon.pending()                                   # due again while still running
    assert daemon.threads["slow"] is first
    daemon.join()
    events = [json.loads(line) for line in open(runner.paths.log)]
    assert [e["event"] for e in events if e.get("job") == "slow"].count("start") == 1
    assert any(e["event"] == "skipped" and "still running" in e["reason"] for e in events)
    daemon.shutdown()


def test_stop_terminates_a_running_job_and_records_interrupted(tmp_path):
    runner = make_runner(tmp_path, "jobs:\n  slow:\n    command: [sleep, '60']\n"
                                   "    every: hour\n    at: ':00'\n", stop_grace=0.3)
    daemon = Daemon(runner)
    daemon.pending()
    runner.clock.set(MONDAY + dt.timedelta(hours=1, seconds=1))
    daemon.pending()
    for _ in range(200):
        if runner.running():
            break
        threading.Event().wait(0.01)
    daemon.shutdown()                                  # what SIGTERM leads to
    status = load_status(runner.paths, "slow")
    assert status["result"] == "interrupted" and status["exit_code"] == 143
    assert json.loads(open(runner.paths.log).read().splitlines()[-1])["event"] == "daemon-stop"


def test_followers_run_only_after_success(tmp_path):
    marks = tmp_path / "m"
    runner = make_runner(tmp_path, f"""
jobs:
  backup: {{command: [exit, '3'], every: day, retries: 0}}
  replicate: {{command: [mark, '{marks}'], after: [backup]}}
""")
    got = runner.run(runner.schedule.job("backup"))
    assert got.result == "failed" and got.followers == [] and not marks.exists()


def test_unknown_job_is_a_usage_error(tmp_path):
    runner = make_runner(tmp_path, "jobs:\n  j:\n    command: [exit, '0']\n    every: day\n")
    with pytest.raises(UsageError, match="unknown job 'x'"):
        runner.schedule.job("x")


def test_metrics_text_escapes_labels_and_skips_unknown_values():
    text = metrics_text('we"ird', {"exit_code": 0})
    assert 'opskit_job_exit_code{job="we\\"ird"} 0.000' in text
    assert "last_success" not in text and text.endswith("\n")
