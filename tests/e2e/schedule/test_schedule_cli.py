"""`opskit schedule run|status|cron [--systemd]` as a user runs them (issue #11, R-BAK-4)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e

SCHEDULE = """
version: 1
defaults: {timeout: 60, retries: 1, retry_delay: 0}
jobs:
  verify:
    description: audit verification
    command: [audit, verify]
    every: day
    at: "06:30"
    rules: [R-AUD-3]
  broken:
    command: [backup, snapshots, --repo, /nonexistent/opskit-repo]
    every: week
    weekday: monday
    at: "02:00"
  follow:
    command: [hosts, list]
    after: [verify]
  drill:
    command: [backup, drill, --site, dr]
    every: month
    day: 1
    at: "05:00"
"""


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "opskit.yaml"
    config.write_text(f"schedule:\n  metrics_dir: {tmp_path / 'metrics'}\n")
    (tmp_path / "schedule.yaml").write_text(SCHEDULE)
    home = tmp_path / "home"
    env = {"OPSKIT_HOME": str(home)}

    def opskit(*args, timeout=60):
        return run_opskit("--config", str(config), *args, env=env, timeout=timeout)
    opskit.home, opskit.tmp, opskit.config, opskit.env = home, tmp_path, config, env
    return opskit


def test_run_one_job_now_with_its_follower_then_status(setup):
    run = setup("schedule", "run", "--job", "verify", "--json")
    assert run.exit_code == 0, run.output
    rows = json.loads(run.stdout)
    assert [(r["job"], r["result"]) for r in rows] == [("verify", "ok"), ("follow", "ok")]
    prom = (setup.tmp / "metrics" / "opskit_job_verify.prom").read_text()
    assert re.search(r'^opskit_job_last_success_timestamp_seconds\{job="verify"\} \d+', prom, re.M)
    assert 'opskit_job_exit_code{job="verify"} 0.000' in prom
    log = [json.loads(line) for line in open(setup.home / "schedule" / "schedule.log")]
    assert [(e["event"], e["job"]) for e in log] == [("start", "verify"), ("finish", "verify"),
                                                    ("start", "follow"), ("finish", "follow")]
    status = setup("schedule", "status", "--json")
    assert status.exit_code == 0, status.output
    jobs = {j["job"]: j for j in json.loads(status.stdout)["jobs"]}
    assert jobs["verify"]["result"] == "ok" and jobs["verify"]["last_success"]
    assert jobs["verify"]["next_run"].endswith("06:30")
    assert jobs["broken"]["result"] == "never run"
    assert jobs["drill"]["next_run"][8:10] == "01"
    table = setup("schedule", "status")
    assert "after verify" in table.stdout and "monthly on day 1 at 05:00" in table.stdout
    audit = json.loads(run_opskit("audit", "show", "--command", "schedule run", "--json",
                                  env=setup.env).stdout)
    assert audit[-1]["details"]["jobs"][0]["job"] == "verify"


def test_a_failing_job_is_retried_recorded_and_exits_3(setup):
    run = setup("schedule", "run", "--job", "broken")
    assert run.exit_code == 3, run.output
    assert "no repository at /nonexistent/opskit-repo" in run.stdout
    status = json.loads(setup("schedule", "status", "--json").stdout)
    broken = next(j for j in status["jobs"] if j["job"] == "broken")
    assert broken["result"] == "failed" and broken["attempts"] == 2 and broken["exit_code"] == 3
    assert setup("schedule", "status").exit_code == 1           # a last run failed
    prom = (setup.tmp / "metrics" / "opskit_job_broken.prom").read_text()
    assert 'opskit_job_exit_code{job="broken"} 3.000' in prom
    assert 'opskit_job_attempts{job="broken"} 2.000' in prom


def test_usage_and_config_errors_exit_2(setup, tmp_path):
    unknown = setup("schedule", "run", "--job", "nope")
    assert unknown.exit_code == 2 and "unknown job 'nope'" in unknown.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("jobs:\n  x:\n    command: [audit, verify]\n    every: daily\n")
    run = setup("schedule", "status", "--schedule", str(bad))
    assert run.exit_code == 2
    assert f"{bad}:4: key 'jobs.x.every'" in run.stderr and "Traceback" not in run.output


CRON_FIELD = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def test_cron_lines_are_valid_crontab(setup):
    run = setup("schedule", "cron")
    assert run.exit_code == 0, run.output
    entries = [ln for ln in run.stdout.splitlines() if ln and not ln.startswith("#")]
    env_lines = [ln for ln in entries if re.match(r"^[A-Z_]+=", ln)]
    assert env_lines == [f"OPSKIT_HOME={setup.home}"]
    jobs = [ln for ln in entries if ln not in env_lines]
    assert len(jobs) == 2          # 'follow' runs after 'verify'; 'drill' has no site 'dr'
    assert "# drill: left out, not set up: no site 'dr' in the config" in run.stdout
    assert "warning: job drill left out" in run.stderr
    for line in jobs:
        fields = line.split()
        for value, (lo, hi) in zip(fields[:5], CRON_FIELD):
            assert value == "*" or lo <= int(value) <= hi, line
        assert fields[5] == sys.executable and fields[6:8] == ["-m", "opskit"]
        assert fields[8:10] == ["--config", str(setup.config)]
        assert fields[10:13] == ["schedule", "run", "--job"]
    assert "30 6 * * * " in run.stdout and "0 2 * * 1 " in run.stdout
    assert "0 5 1 * * " not in run.stdout
    assert "# follow: runs after verify" in run.stdout
    # a cron line, run as cron would, does the job
    line = next(ln for ln in jobs if ln.endswith("--job verify --quiet"))
    proc = subprocess.run(line.split()[5:], env=dict(os.environ, OPSKIT_HOME=str(setup.home)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""      # cron mails nothing on success
    # a failing job says so in one line on stderr, still nothing on stdout
    line = next(ln for ln in jobs if ln.endswith("--job broken --quiet"))
    proc = subprocess.run(line.split()[5:], env=dict(os.environ, OPSKIT_HOME=str(setup.home)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.startswith("opskit: job broken: ") and proc.stderr.count("\n") == 1


def test_systemd_units_pass_systemd_analyze_verify(setup, tmp_path):
    out = tmp_path / "units"
    run = setup("schedule", "cron", "--systemd", "--out", str(out))
    assert run.exit_code == 0, run.output
    names = sorted(os.listdir(out))
    # 'drill' is left out: no site 'dr' in the config (and a warning says so)
    assert names == ["opskit-broken.service", "opskit-broken.timer",
                     "opskit-verify.service", "opskit-verify.timer"]
    assert "job drill left out" in run.stderr
    timer = (out / "opskit-verify.timer").read_text()
    assert "OnCalendar=*-*-* 06:30:00" in timer and "Persistent=true" in timer
    assert "OnCalendar=Mon *-*-* 02:00:00" in (out / "opskit-broken.timer").read_text()
    service = (out / "opskit-verify.service").read_text()
    assert "Type=oneshot" in service and "schedule run --job verify --quiet" in service
    assert f"Environment=OPSKIT_HOME={setup.home}" in service
    for name in names:                          # every unit parses as INI with known sections
        sections = re.findall(r"^\[(\w+)\]$", (out / name).read_text(), re.M)
        assert sections == (["Unit", "Service"] if name.endswith(".service")
                            else ["Unit", "Timer", "Install"])
    analyze = shutil.which("systemd-analyze")
    if analyze:                                  # the authoritative check where it exists
        proc = subprocess.run([analyze, "verify", *[str(out / n) for n in names]],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for name in names:
            if name.endswith(".timer"):
                spec = re.search(r"^OnCalendar=(.*)$", (out / name).read_text(), re.M).group(1)
                cal = subprocess.run([analyze, "calendar", spec], capture_output=True,
                                     text=True, timeout=30)
                assert cal.returncode == 0, cal.stderr
    printed = setup("schedule", "cron", "--systemd")
    assert printed.exit_code == 0 and "# ---- opskit-verify.timer ----" in printed.stdout


def test_the_daemon_stops_cleanly_on_sigterm(setup):
    proc = subprocess.Popen([sys.executable, "-m", "opskit", "--config", str(setup.config),
                             "schedule", "run"], env=dict(os.environ, **setup.env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = setup.home / "schedule" / "schedule.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (log.exists() and "daemon-start" in log.read_text()):
        time.sleep(0.05)
    assert "daemon-start" in log.read_text()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "scheduler stopped" in out
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events[0] == "daemon-start" and events[-1] == "daemon-stop"
    audit = json.loads(run_opskit("audit", "show", "--command", "schedule run", "--json",
                                  env=setup.env).stdout)
    assert audit[-1]["exit_code"] == 0
