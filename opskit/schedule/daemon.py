"""Running scheduled jobs: one attempt loop per job, and the foreground daemon.

* Each job runs ``opskit <command>`` in a subprocess (``sys.executable -m
  opskit``, so the same installation) with a timeout.
* A per-job ``FileLock`` (``<state_dir>/schedule/locks/<job>.lock``, tried
  once) means the same job never overlaps itself, not even across two
  daemons or a daemon and a cron line; the skipped start is logged.
* An operational failure (exit 3 or any code other than 0/1/2, a timeout, a
  command that would not start) is retried ``retries`` times after
  ``retry_delay``, doubled each time. Exit 1 (findings) and 2 (usage or
  config error) are final: trying again would change nothing.
* After every finished job its status (``<state_dir>/schedule/jobs/<job>.json``),
  one JSON line in the scheduler log and its Prometheus textfile metrics
  (``opskit_job_<job>.prom``, node_exporter's textfile collector format) are
  written, the files atomically (temporary file + rename).
* Jobs with ``after: [X]`` run right after X succeeded (replicate after each
  backup).
* SIGTERM / SIGINT: no new job starts; running jobs get ``stop_grace``
  seconds to finish, then their process group is terminated (SIGTERM, then
  SIGKILL); their status says ``interrupted``; the daemon exits 0.

Time comes from a clock object (``now()``, ``time()``, ``sleep()``) so tests
drive due jobs without waiting (``tests/harness/clock.py``).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Callable, Sequence

from opskit.core.errors import EXIT_FINDINGS, EXIT_OK, EXIT_OPERATIONAL, EXIT_USAGE, LockHeldError
from opskit.core.filelock import FileLock
from opskit.core.atomicfile import write_atomic
from opskit.core.state import StateLayout, ensure_private_dir, opskit_command

from .jobs import Job, Schedule

OPSKIT = opskit_command()
TIMEOUT_EXIT = 124            # as timeout(1): the job ran out of time


# --- clocks ---------------------------------------------------------------------------
class SystemClock:
    """Wall-clock time; ``sleep`` wakes early when ``stop`` is set."""

    def now(self) -> dt.datetime:
        return dt.datetime.now()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        if stop is not None:
            stop.wait(max(0.0, seconds))
        else:
            time.sleep(max(0.0, seconds))



# --- where things are kept ------------------------------------------------------------
@dataclass
class Paths:
    state_dir: str
    metrics_dir: str | None = None
    log: str | None = None

    def __post_init__(self):
        self.root = StateLayout(self.state_dir).schedule
        self.metrics_dir = self.metrics_dir or os.path.join(self.root, "metrics")
        self.log = self.log or os.path.join(self.root, "schedule.log")

    def status_file(self, job: str) -> str:
        return os.path.join(self.root, "jobs", f"{job}.json")

    def lock_file(self, job: str) -> str:
        return os.path.join(self.root, "locks", f"{job}.lock")

    def metrics_file(self, job: str) -> str:
        return os.path.join(self.metrics_dir, f"opskit_job_{job.replace('-', '_')}.prom")

    def prepare(self) -> None:
        ensure_private_dir(self.state_dir)
        for sub in (self.root, os.path.join(self.root, "jobs"), os.path.join(self.root, "locks")):
            ensure_private_dir(sub)
        os.makedirs(self.metrics_dir, exist_ok=True)
        os.makedirs(os.path.dirname(os.path.abspath(self.log)), mode=0o700, exist_ok=True)


def load_status(paths: Paths, job: str) -> dict:
    try:
        with open(paths.status_file(job), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")


# --- metrics --------------------------------------------------------------------------
METRICS = (
    ("opskit_job_last_run_timestamp_seconds", "Unix time the job last finished."),
    ("opskit_job_last_success_timestamp_seconds", "Unix time the job last finished with exit "
                                                  "code 0."),
    ("opskit_job_duration_seconds", "Seconds the job's last run took (all attempts)."),
    ("opskit_job_exit_code", "Exit code of the job's last run (124: timeout)."),
    ("opskit_job_attempts", "Attempts the job's last run needed."),
    ("opskit_job_running", "1 while the job runs, else 0."),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def metrics_text(job: str, status: dict) -> str:
    """node_exporter textfile collector format for one job."""
    values = {
        "opskit_job_last_run_timestamp_seconds": status.get("finished_ts"),
        "opskit_job_last_success_timestamp_seconds": status.get("last_success_ts"),
        "opskit_job_duration_seconds": status.get("duration"),
        "opskit_job_exit_code": status.get("exit_code"),
        "opskit_job_attempts": status.get("attempts"),
        "opskit_job_running": 1 if status.get("result") == "running" else 0,
    }
    lines = []
    for name, help_text in METRICS:
        value = values[name]
        if value is None:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                  f"{name}{{job=\"{_label(job)}\"}} {float(value):.3f}"]
    return "\n".join(lines) + "\n"


# --- one job --------------------------------------------------------------------------
@dataclass
class JobResult:
    job: str
    result: str    # ok, findings, error, failed, timeout, skipped, interrupted, not set up
    exit_code: int | None
    attempts: int = 0
    duration: float = 0.0
    summary: str = ""
    followers: list["JobResult"] = field(default_factory=list)

    @property
    def cli_exit(self) -> int:
        """The job's outcome as an opskit exit code (for 'schedule run --job')."""
        codes = [self._own_exit()] + [f.cli_exit for f in self.followers]
        return max(codes)

    def _own_exit(self) -> int:
        if self.result in ("ok", "not set up"):
            return EXIT_OK
        if self.result == "findings":
            return EXIT_FINDINGS
        if self.result == "error":
            return EXIT_USAGE
        return EXIT_OPERATIONAL

    def flat(self) -> list["JobResult"]:
        out = [self]
        for f in self.followers:
            out += f.flat()
        return out


def classify(exit_code: int | None) -> str:
    if exit_code == 0:
        return "ok"
    if exit_code == 1:
        return "findings"
    if exit_code == 2:
        return "error"
    if exit_code == TIMEOUT_EXIT:
        return "timeout"
    return "failed"


def _last_line(text: str) -> str:
    for line in reversed((text or "").strip().splitlines()):
        line = line.strip()
        if line:
            return line[:300]
    return ""


class JobRunner:
    """Runs jobs of one schedule: lock, attempts, status, log, metrics, followers."""

    def __init__(self, schedule: Schedule, paths: Paths, *, clock=None,
                 launcher: Sequence[str] = OPSKIT, global_args: Sequence[str] = (),
                 stop: threading.Event | None = None, stop_grace: float = 30.0,
                 env: dict | None = None, blockers: Callable[[Job], list[str]] | None = None):
        self.schedule = schedule
        self.blockers = blockers or (lambda job: [])
        self.paths = paths
        self.clock = clock or SystemClock()
        self.launcher = list(launcher)
        self.global_args = list(global_args)
        self.stop = stop or threading.Event()
        self.stop_grace = stop_grace
        self.env = env
        self._log_lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._procs_lock = threading.Lock()
        paths.prepare()

    # --- log ---------------------------------------------------------------------
    def log(self, event: str, **fields) -> None:
        entry = {"time": iso(self.clock.time()), "event": event, **fields}
        line = json.dumps(entry, ensure_ascii=False, sort_keys=False) + "\n"
        with self._log_lock:
            fd = os.open(self.paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    # --- status ------------------------------------------------------------------
    def _save(self, job: str, status: dict) -> None:
        write_atomic(self.paths.status_file(job), json.dumps(status, indent=1) + "\n")
        write_atomic(self.paths.metrics_file(job), metrics_text(job, status), mode=0o644)

    def argv(self, job: Job) -> list[str]:
        return [*self.launcher, *self.global_args, *job.command]

    # --- running -----------------------------------------------------------------
    def run(self, job: Job, trigger: str = "manual", wait: float = 0) -> JobResult:
        """Run ``job`` now (and, when it succeeds, its followers). ``wait``: seconds to
        wait for the job's lock (a follower waits for the same follower started after
        another job, so the newer data is handled too; others never wait)."""
        try:
            lock = self._lock(job, wait)
        except LockHeldError as exc:
            self.log("skipped", job=job.name, trigger=trigger,
                     reason="still running (lock held)", detail=exc.message)
            return JobResult(job.name, "skipped", None, summary="already running: skipped")
        try:
            result = self._attempts(job, trigger)
        finally:
            lock.release()
        if result.result == "ok" and not self.stop.is_set():
            for follower in self.schedule.followers(job.name):
                result.followers.append(self._follow(follower, job))
        return result

    def _lock(self, job: Job, wait: float) -> FileLock:
        """The job's lock, waiting up to ``wait`` seconds in short steps so a stop
        request (SIGTERM) is not held up by a waiting follower."""
        deadline = time.monotonic() + wait
        while True:
            lock = FileLock(self.paths.lock_file(job.name),
                            timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            try:
                lock.acquire()
                return lock
            except LockHeldError:
                if self.stop.is_set() or time.monotonic() >= deadline:
                    raise

    def _follow(self, follower: Job, job: Job) -> JobResult:
        """Run a follower, unless the config cannot support it (a replication with
        no site configured): then it is recorded as skipped, with the reason."""
        reasons = self.blockers(follower)
        if not reasons:
            return self.run(follower, trigger=f"after {job.name}", wait=follower.timeout)
        self.log("skipped", job=follower.name, trigger=f"after {job.name}",
                 reason="; ".join(reasons))
        return JobResult(follower.name, "not set up", None, summary="; ".join(reasons))

    def _attempts(self, job: Job, trigger: str) -> JobResult:
        previous = load_status(self.paths, job.name)
        started = self.clock.time()
        status = dict(previous, job=job.name, result="running", trigger=trigger,
                      started=iso(started), pid=os.getpid(), host=socket.gethostname(),
                      command=self.argv(job)[len(self.launcher):])
        self._save(job.name, status)
        self.log("start", job=job.name, trigger=trigger, command=job.command)
        attempt, code, summary, result = 0, None, "", "failed"
        delay = job.retry_delay
        while True:
            attempt += 1
            code, summary = self._once(job)
            result = classify(code)
            if self.stop.is_set() and result not in ("ok", "findings", "error"):
                result = "interrupted"
            if result in ("ok", "findings", "error", "interrupted") or attempt > job.retries:
                break
            self.log("retry", job=job.name, attempt=attempt, exit_code=code, result=result,
                     summary=summary, delay=delay)
            self.clock.sleep(delay, self.stop)
            if self.stop.is_set():
                result = "interrupted"
                break
            delay *= 2
        finished = self.clock.time()
        duration = round(max(0.0, finished - started), 3)
        status.update(result=result, exit_code=code, attempts=attempt, duration=duration,
                      finished=iso(finished), finished_ts=finished, summary=summary)
        status.pop("pid", None)
        if result == "ok":
            status["last_success"] = iso(finished)
            status["last_success_ts"] = finished
        self._save(job.name, status)
        self.log("finish", job=job.name, result=result, exit_code=code, attempts=attempt,
                 duration=duration, summary=summary)
        return JobResult(job.name, result, code, attempt, duration, summary)

    def _once(self, job: Job) -> tuple[int | None, str]:
        argv = self.argv(job)
        env = dict(os.environ if self.env is None else self.env)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env,
                                    start_new_session=True)
        except OSError as exc:
            return EXIT_OPERATIONAL, f"cannot start {argv[0]}: {exc.strerror}"
        with self._procs_lock:
            self._procs[job.name] = proc
        deadline = time.monotonic() + job.timeout
        stop_at = None
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.1)   # retrying loses no output
                    code = proc.returncode
                    break
                except subprocess.TimeoutExpired:
                    now = time.monotonic()
                    if now >= deadline:
                        _kill_group(proc)
                        proc.communicate()
                        return TIMEOUT_EXIT, f"timed out after {job.timeout:g}s; killed"
                    if self.stop.is_set():          # SIGTERM: finish within the grace time
                        if stop_at is None:
                            stop_at = now + self.stop_grace
                        elif now >= stop_at:
                            _kill_group(proc)
                            out, err = proc.communicate()
                            code = proc.returncode
                            break
        finally:
            with self._procs_lock:
                self._procs.pop(job.name, None)
        if code < 0:
            code = 128 - code     # killed by a signal: 128 + signal number, as shells say
        errors = [ln.strip() for ln in (err or "").splitlines() if ln.startswith("opskit: error:")]
        if code not in (0, 1):
            text = errors[0][:300] if errors else _last_line(err) or _last_line(out)
        else:
            text = _last_line(out) or _last_line(err)
        return code, text

    def running(self) -> list[str]:
        with self._procs_lock:
            return sorted(self._procs)

    def terminate_all(self) -> None:
        with self._procs_lock:
            procs = list(self._procs.values())
        for proc in procs:
            _kill_group(proc, wait=2.0)


def _kill_group(proc: subprocess.Popen, wait: float = 5.0) -> None:
    """SIGTERM the job's process group, SIGKILL it when it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# --- the schedule library, on an injectable clock -------------------------------------
_LIBRARY_LOCK = threading.Lock()


@contextlib.contextmanager
def library_clock(clock):
    """Make the ``schedule`` library read time from ``clock``.

    The library calls ``datetime.datetime.now()`` through its module global
    ``datetime``; for as long as this context lasts that global is a copy of
    the datetime module whose ``datetime.now()`` asks ``clock``.
    """
    import schedule as lib

    class _ClockDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            value = clock.now()
            return value if tz is None else value.astimezone(tz)

    shim = types.ModuleType("datetime")
    shim.__dict__.update(dt.__dict__)
    shim.datetime = _ClockDatetime
    with _LIBRARY_LOCK:
        original = lib.datetime
        lib.datetime = shim
        try:
            yield lib
        finally:
            lib.datetime = original


class Daemon:
    """``opskit schedule run``: run due jobs until stopped."""

    def __init__(self, runner: JobRunner, *, tick: float = 1.0):
        self.runner = runner
        self.schedule = runner.schedule
        self.clock = runner.clock
        self.stop = runner.stop
        self.tick = tick
        self.threads: dict[str, threading.Thread] = {}
        self.results: list[JobResult] = []
        self._scheduler = None
        self._results_lock = threading.Lock()

    def _due(self, job: Job) -> None:
        """Called by the schedule library when ``job`` is due."""
        if self.stop.is_set():
            return
        if job.every == "month" and self.clock.now().day != (job.day or 1):
            return                        # the library has no months: a daily check
        thread = self.threads.get(job.name)
        if thread is not None and thread.is_alive():
            self.runner.log("skipped", job=job.name, trigger="schedule",
                            reason="still running (previous run not finished)")
            return
        thread = threading.Thread(target=self._work, args=(job,), name=f"job-{job.name}",
                                  daemon=True)
        self.threads[job.name] = thread
        thread.start()

    def _work(self, job: Job) -> None:
        result = self.runner.run(job, trigger="schedule")
        with self._results_lock:
            self.results.extend(result.flat())

    def register(self, lib) -> "object":
        scheduler = lib.Scheduler()
        for job in self.schedule.jobs.values():
            if not job.timed or not job.enabled:
                continue
            hour, minute = job.hour_minute
            if job.every == "hour":
                entry = scheduler.every().hour.at(f":{minute:02d}")
            else:
                unit = scheduler.every()
                unit = getattr(unit, job.weekday or "sunday") if job.every == "week" else unit.day
                entry = unit.at(f"{hour:02d}:{minute:02d}")
            entry.do(self._due, job).tag(job.name)
        return scheduler

    def pending(self) -> float | None:
        """Start the jobs that are due now; seconds until the next one is due."""
        with library_clock(self.clock) as lib:
            if self._scheduler is None:
                self._scheduler = self.register(lib)
                self.runner.log("daemon-start", pid=os.getpid(),
                                jobs=sorted(self.schedule.jobs), schedule=self.schedule.source)
            self._scheduler.run_pending()
            return self._scheduler.idle_seconds

    def join(self, timeout: float = 60.0) -> None:
        """Wait for the running jobs (tests)."""
        for thread in list(self.threads.values()):
            thread.join(timeout)

    def run(self, *, until: Callable[[], bool] | None = None) -> list[JobResult]:
        """Loop until ``stop`` is set (SIGTERM) or ``until()`` is true; then wait for
        running jobs up to ``stop_grace`` seconds, terminate the rest, return results."""
        while not self.stop.is_set():
            idle = self.pending()
            if until is not None and until():
                break
            wait = self.tick if idle is None else max(0.0, min(self.tick, idle))
            self.clock.sleep(wait, self.stop)
        self.shutdown()
        return self.results

    def shutdown(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + self.runner.stop_grace
        busy = [t for t in self.threads.values() if t.is_alive()]
        if busy:
            self.runner.log("stopping", waiting_for=sorted(t.name[4:] for t in busy),
                            grace=self.runner.stop_grace)
        for thread in busy:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self.threads.values()):
            self.runner.terminate_all()
            for thread in self.threads.values():
                thread.join(10.0)
        self.runner.log("daemon-stop", pid=os.getpid())


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT/SIGHUP set ``stop``: the daemon finishes cleanly and exits 0."""
    def handler(signum, _frame):
        stop.set()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)
