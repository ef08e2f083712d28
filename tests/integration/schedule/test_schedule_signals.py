"""SIGTERM to a scheduler process while a job runs (issue #11): the job gets the grace
time, then its whole process group is terminated; the status says 'interrupted';
the scheduler exits 0. Real processes, real signals."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

DRIVER = r"""
import datetime as dt, sys, threading
from opskit.core.yamlfile import parse_yaml
from opskit.schedule.jobs import parse_schedule
from tests.harness.clock import FakeClock
from opskit.schedule.daemon import Daemon, JobRunner, Paths, install_signal_handlers

state, grace, child = sys.argv[1], float(sys.argv[2]), sys.argv[3]
sched = parse_schedule(parse_yaml(
    "jobs:\n  slow:\n    command: [go]\n    every: hour\n    at: ':00'\n    retries: 2\n", "s.yaml"))
stop = threading.Event()
clock = FakeClock(dt.datetime(2026, 11, 23, 0, 0))
runner = JobRunner(sched, Paths(state), clock=clock, stop=stop, stop_grace=grace,
                   launcher=[sys.executable, "-c", child])
install_signal_handlers(stop)
daemon = Daemon(runner, tick=0.05)
daemon.pending()
clock.set(dt.datetime(2026, 11, 23, 1, 0, 1))
class Wall:                      # from now on: real sleeping, so the loop idles
    now = clock.now
    time = clock.time
    def sleep(self, s, stop=None): stop.wait(s)
runner.clock = daemon.clock = Wall()
daemon.run()
print("stopped cleanly")
"""

# the job: write its pid, ignore nothing, sleep long; a grandchild too (process group)
CHILD = r"""
import os, subprocess, sys, time
state = os.environ["JOB_STATE"]
grand = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(os.path.join(state, "pids"), "w").write(f"{os.getpid()} {grand.pid}")
time.sleep(60)
"""

CHILD_FINISHES = r"""
import os, time
state = os.environ["JOB_STATE"]
open(os.path.join(state, "pids"), "w").write(str(os.getpid()))
time.sleep(0.8)
print("finished in time")
"""


def _start(tmp_path, grace, child):
    state = tmp_path / "state"
    state.mkdir()
    env = dict(os.environ, JOB_STATE=str(state))
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(state), str(grace), child],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (state / "pids").exists():
        time.sleep(0.02)
    assert (state / "pids").exists(), proc.stderr.read() if proc.poll() is not None else "no job"
    return proc, state


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:           # a zombie is dead too
        return fh.read().split(") ", 1)[1][0] != "Z"


def test_sigterm_kills_a_job_past_the_grace_time_and_exits_0(tmp_path):
    proc, state = _start(tmp_path, 0.5, CHILD)
    time.sleep(0.2)
    job_pid, grand_pid = map(int, (state / "pids").read_text().split())
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in out
    assert time.monotonic() - started < 15
    for _ in range(100):
        if not _alive(job_pid) and not _alive(grand_pid):
            break
        time.sleep(0.05)
    assert not _alive(job_pid) and not _alive(grand_pid)     # the whole process group
    status = json.loads((state / "schedule" / "jobs" / "slow.json").read_text())
    assert status["result"] == "interrupted" and status["attempts"] == 1     # not retried
    events = [json.loads(x)["event"] for x in (state / "schedule" / "schedule.log").read_text()
              .splitlines()]
    assert events[-3:] == ["stopping", "finish", "daemon-stop"] or \
        events[-2:] == ["finish", "daemon-stop"]
    assert "retry" not in events


def test_sigterm_lets_a_job_finish_within_the_grace_time(tmp_path):
    proc, state = _start(tmp_path, 20, CHILD_FINISHES)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    status = json.loads((state / "schedule" / "jobs" / "slow.json").read_text())
    assert status["result"] == "ok" and status["summary"] == "finished in time"
