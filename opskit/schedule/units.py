"""Status of the scheduled jobs, and crontab / systemd units for sites that prefer them.

Both emitters call ``opskit schedule run --job NAME``, so a job started by
cron or a systemd timer gets the same lock, retries, status, log and
metrics as under ``opskit schedule run``; its ``after:`` jobs run in the
same invocation.
"""
from __future__ import annotations

import datetime as dt
import os
import shlex

from opskit.core.filelock import FileLock
from opskit.core.errors import LockHeldError
from opskit.core.output import Result, Table

from .jobs import Schedule
from .daemon import Paths, load_status


def _held(path: str) -> bool:
    if not os.path.exists(path):
        return False
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except LockHeldError:
        return True
    lock.release()
    return False


def status_result(schedule: Schedule, paths: Paths, now: dt.datetime) -> Result:
    """Last run, result, duration and next run of every job (R-AUD-2)."""
    rows, data = [], []
    for job in schedule.jobs.values():
        st = load_status(paths, job.name)
        result = st.get("result") or "never run"
        if result == "running" and not _held(paths.lock_file(job.name)):
            result = "died while running"      # the runner was killed before it could record
        nxt = job.next_run(now)
        row = {"job": job.name, "when": job.describe_timing(),
               "last_run": st.get("finished") or st.get("started"),
               "result": result, "exit": st.get("exit_code"),
               "duration": st.get("duration"),
               "attempts": st.get("attempts"), "last_success": st.get("last_success"),
               "next_run": nxt.isoformat(sep=" ", timespec="minutes") if nxt else
               ("after " + ", ".join(job.after) if job.after and job.enabled else "-")}
        rows.append(row)
        data.append({"job": job.name, "command": job.command, "timing": job.describe_timing(),
                     "every": job.every, "at": job.at, "after": job.after,
                     "enabled": job.enabled, "rules": job.rules,
                     "next_run": nxt.isoformat(timespec="minutes") if nxt else None,
                     "result": result,
                     **{k: st.get(k) for k in ("started", "finished", "exit_code", "duration",
                                               "attempts", "summary", "last_success",
                                               "trigger")}})
    bad = [r["job"] for r in rows if r["result"] in ("failed", "timeout", "error",
                                                     "died while running")]
    summary = f"{len(rows)} job(s) from {schedule.source}" + (
        f"; last run failed: {', '.join(bad)}" if bad else "")
    table = Table(["job", "when", "last_run", "result", "exit", "duration", "attempts",
                   "last_success", "next_run"], rows,
                  headers={"last_run": "LAST RUN", "last_success": "LAST SUCCESS",
                           "next_run": "NEXT RUN"},
                  kinds={"duration": "seconds", "last_run": "time", "last_success": "time"})
    return Result(data={"schedule": schedule.source, "jobs": data}, tables=[table],
                  messages=[summary], summary=summary, exit_code=1 if bad else 0)


def job_argv(base: list[str], name: str) -> list[str]:
    """``base`` is the command up to and including 'schedule run [--schedule FILE]'.
    ``--quiet``: nothing on stdout, one line on stderr per failure (cron mails output)."""
    return [*base, "--job", name, "--quiet"]


def cron_text(schedule: Schedule, base: list[str], env: dict[str, str],
              left_out: dict[str, list[str]] | None = None) -> str:
    """Crontab lines (user crontab format: no user field). Jobs in ``left_out``
    (name -> reasons) get a comment saying why instead of a line."""
    left_out = left_out or {}
    lines = [f"# opskit schedule from {schedule.source}",
             "# install: opskit schedule cron | crontab -      (or a file in /etc/cron.d with a",
             "# user field added). Each line runs the job with opskit's lock, retries, status,",
             "# log and metrics; 'after:' jobs run right after the job they follow. A job prints",
             "# nothing when it succeeds, so cron mails only failures and findings.",
             "# Give the backup passphrase as OPSKIT_PASSPHRASE_FILE=... (a 0600 file)."]
    for key, value in sorted(env.items()):
        lines.append(f"{key}={value}")
    for job in schedule.jobs.values():
        command = " ".join(shlex.quote(w) for w in job_argv(base, job.name))
        if not job.enabled:
            lines.append(f"# {job.name}: disabled")
        elif job.name in left_out:
            lines.append(f"# {job.name}: left out, not set up: {'; '.join(left_out[job.name])}")
        elif job.timed:
            lines.append(f"# {job.name}: {job.describe_timing()}"
                         + (f" ({', '.join(job.rules)})" if job.rules else ""))
            lines.append(f"{job.cron_fields()} {command}")
        else:
            lines.append(f"# {job.name}: runs after {', '.join(job.after)} (no line of its own)")
    return "\n".join(lines) + "\n"


def _systemd_quote(word: str) -> str:
    if word and all(c.isalnum() or c in "/._-=:,@+" for c in word):
        return word.replace("%", "%%")
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def systemd_units(schedule: Schedule, base: list[str], env: dict[str, str],
                  left_out: dict[str, list[str]] | None = None) -> dict[str, str]:
    """``opskit-<job>.service`` (oneshot) and ``opskit-<job>.timer`` for every timed job
    that is set up (not in ``left_out``)."""
    units: dict[str, str] = {}
    for job in schedule.jobs.values():
        if not job.timed or not job.enabled or job.name in (left_out or {}):
            continue
        after = [f.name for f in schedule.followers(job.name)]
        exec_start = " ".join(_systemd_quote(w) for w in job_argv(base, job.name))
        # the job's own timeout covers each attempt; leave room for retries and followers
        budget = int(job.timeout * (job.retries + 1) + job.retry_delay * (2 ** job.retries)
                     + sum(schedule.jobs[f].timeout for f in after) + 300)
        description = job.description or f"opskit job {job.name}"
        service = ["[Unit]", f"Description=opskit {job.name}: {description}",
                   "After=network-online.target",
                   "Wants=network-online.target", "",
                   "[Service]", "Type=oneshot"]
        for key, value in sorted(env.items()):
            service.append(f"Environment={_systemd_quote(f'{key}={value}')}")
        service += [f"ExecStart={exec_start}", f"TimeoutStartSec={budget}",
                    "# exit 1 = completed with findings (docs/cli.md): not a unit failure",
                    "SuccessExitStatus=1", ""]
        if after:
            service.insert(-1, f"# also runs, after success: {', '.join(after)}")
        timer = ["[Unit]", f"Description=opskit {job.name}: {job.describe_timing()}", "",
                 "[Timer]", f"OnCalendar={job.on_calendar()}", "Persistent=true",
                 f"Unit=opskit-{job.name}.service", "",
                 "[Install]", "WantedBy=timers.target", ""]
        units[f"opskit-{job.name}.service"] = "\n".join(service)
        units[f"opskit-{job.name}.timer"] = "\n".join(timer)
    return units
