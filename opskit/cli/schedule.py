"""`opskit schedule`: Scheduler: run opskit jobs on a timetable, or print cron/systemd units."""
from __future__ import annotations

import os
import threading

import click

from opskit.core.errors import UsageError
from opskit.core.output import Result, Table

from .app import App, OpskitGroup, output_options, pass_app


@click.group("schedule", cls=OpskitGroup)
def group() -> None:
    """Scheduler: run opskit jobs on a timetable, or print cron/systemd units (R-BAK-4, R-BAK-5).

    \b
    The jobs come from --schedule FILE, else schedule.file in the config,
    else schedule.yaml beside the config file, else /etc/opskit/schedule.yaml,
    else the embedded default (daily incremental and weekly full backup,
    replicate after each, monthly drill from site 'dr', hourly policy check,
    weekly permission report, daily audit verification). See docs/schedule.md.

    \b
        opskit schedule run                      # foreground daemon (systemd, runit, tmux)
        opskit schedule run --job backup-full    # one job now (what cron lines call)
        opskit schedule status
        opskit schedule cron | crontab -
        opskit schedule cron --systemd --out /etc/systemd/system
    """


def _schedule_option(func):
    return click.option("--schedule", "schedule_path", metavar="FILE",
                        help="Schedule file instead of the configured one.")(func)


def _load(app: App, schedule_path: str | None):
    from opskit.schedule.jobs import load_schedule
    return load_schedule(app.config, schedule_path)


def _paths(app: App):
    from opskit.schedule.daemon import Paths
    config = app.config
    metrics = config.get("schedule.metrics_dir")
    log = config.get("schedule.log")
    return Paths(app.state_dir, config.relative_path(metrics) if metrics else None,
                 config.relative_path(log) if log else None)


@group.command("run")
@click.option("--job", "job_names", metavar="NAME", multiple=True,
              help="Run this job now (and its 'after:' jobs), then exit with its exit code. "
                   "Repeatable. Without it: run as a daemon until SIGTERM.")
@click.option("-q", "--quiet", is_flag=True,
              help="With --job: print nothing when the jobs succeed, and one line on stderr "
                   "per job that failed or found something (what cron lines use: cron mails "
                   "any output).")
@_schedule_option
@output_options()
@pass_app
def run_cmd(app: App, job_names: tuple[str, ...], quiet: bool, schedule_path: str | None) -> None:
    """Run the scheduled jobs: a foreground daemon, or one job now with --job.

    \b
    Each job runs 'opskit <command>' in a subprocess with its timeout, never
    overlapping itself (a lock, also across daemons and cron), retried with
    backoff after an operational failure (exit 3, timeout). Status, a
    JSON-lines log and Prometheus textfile metrics are written after every
    job. SIGTERM: running jobs get schedule.stop_grace seconds, then are
    terminated; the daemon exits 0.
    """
    from opskit.schedule.daemon import Daemon, JobRunner, install_signal_handlers
    from opskit.schedule.readiness import blockers

    schedule = _load(app, schedule_path)
    paths = _paths(app)
    stop = threading.Event()
    runner = JobRunner(schedule, paths, global_args=app.child_options(), stop=stop,
                       stop_grace=float(app.config.get("schedule.stop_grace")),
                       blockers=lambda job: blockers(job, app.config))
    install_signal_handlers(stop)
    if job_names:
        jobs = [schedule.job(n) for n in job_names]          # unknown job: exit 2 first
        results = []
        for job in jobs:
            if stop.is_set():
                break
            results.append(runner.run(job, trigger="manual"))
        flat = [r for res in results for r in res.flat()]
        rows = [{"job": r.job, "result": r.result, "exit": r.exit_code, "attempts": r.attempts,
                 "duration": round(r.duration, 3), "summary": r.summary} for r in flat]
        code = max((r.cli_exit for r in results), default=0)
        summary = "; ".join(f"{r.job}: {r.result}" for r in flat)
        app.audit_details["jobs"] = [{k: v for k, v in row.items()} for row in rows]
        if quiet:
            _report_quietly(app, flat, summary, code)
            return
        app.emit(Result(data=rows, tables=[Table(["job", "result", "exit", "attempts",
                                                  "duration", "summary"], rows,
                                                 kinds={"duration": "seconds"})],
                        summary=summary, exit_code=code))
        return
    click.echo(f"opskit schedule: {len(schedule.jobs)} job(s) from {schedule.source}; "
               f"log {paths.log}; stop with SIGTERM", err=True)
    daemon = Daemon(runner)
    results = daemon.run()
    summary = (f"scheduler stopped after {len(results)} job run(s): "
               + (", ".join(f"{r.job} {r.result}" for r in results[-20:]) or "none"))
    app.emit(Result(data=[r.__dict__ | {"followers": None} for r in results],
                    messages=[summary], summary=summary))


def _report_quietly(app: App, flat, summary: str, code: int) -> None:
    """Cron mode: stdout stays empty; each job that did not end ok says so on stderr."""
    for r in flat:
        if r.result not in ("ok", "not set up"):
            click.echo(f"opskit: job {r.job}: {r.result} (exit {r.exit_code}): {r.summary}",
                       err=True)
    app.summary, app.exit_code = summary, code


@group.command("status")
@_schedule_option
@output_options()
@pass_app
def status_cmd(app: App, schedule_path: str | None) -> None:
    """Last run, result, duration and next run of every job (exit 1 when a last run failed)."""
    import datetime as dt
    from opskit.schedule.units import status_result

    app.audited = False
    schedule = _load(app, schedule_path)
    app.emit(status_result(schedule, _paths(app), dt.datetime.now()))


def _left_out(app: App, schedule, env: dict[str, str]) -> dict[str, list[str]]:
    """Timed jobs this config cannot run, with the reasons; each is also a warning on
    stderr, so the admin sees it when installing the lines."""
    from opskit.schedule.readiness import blockers

    left_out = {}
    for job in schedule.jobs.values():
        reasons = blockers(job, app.config, env) if job.enabled else []
        if reasons:
            left_out[job.name] = reasons
            click.echo(f"opskit: warning: job {job.name} left out: {'; '.join(reasons)}", err=True)
    if os.environ.get("OPSKIT_PASSPHRASE") and "OPSKIT_PASSPHRASE_FILE" not in env:
        click.echo("opskit: warning: OPSKIT_PASSPHRASE is not written into cron lines (a secret); "
                   "use OPSKIT_PASSPHRASE_FILE", err=True)
    return left_out


@group.command("cron")
@click.option("--systemd", is_flag=True,
              help="Print systemd .service and .timer units instead of crontab lines.")
@click.option("--out", "out_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="With --systemd: write the unit files into DIR instead of printing them.")
@_schedule_option
@pass_app
def cron_cmd(app: App, systemd: bool, out_dir: str | None, schedule_path: str | None) -> None:
    """Print crontab lines (or, with --systemd, service + timer units) for the schedule.

    \b
        opskit schedule cron | crontab -
        opskit schedule cron --systemd --out /etc/systemd/system
        systemctl daemon-reload && systemctl enable --now opskit-backup-incremental.timer
    """
    from opskit.schedule.daemon import OPSKIT
    from opskit.schedule.readiness import carried_environment
    from opskit.schedule.units import cron_text, systemd_units

    app.audited = False
    if out_dir and not systemd:
        raise UsageError("--out goes with --systemd (crontab lines go to stdout)")
    schedule = _load(app, schedule_path)
    base = [*OPSKIT, *app.child_options(), "schedule", "run"]
    if schedule_path:
        base += ["--schedule", os.path.abspath(schedule_path)]
    env = carried_environment()
    left_out = _left_out(app, schedule, env)
    if not systemd:
        click.echo(cron_text(schedule, base, env, left_out), nl=False)
        return
    units = systemd_units(schedule, base, env, left_out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        for name, text in units.items():
            with open(os.path.join(out_dir, name), "w", encoding="utf-8") as fh:
                fh.write(text)
        timers = " ".join(n for n in units if n.endswith(".timer"))
        click.echo(f"wrote {len(units)} unit file(s) to {out_dir}\n"
                   f"enable with: systemctl daemon-reload && systemctl enable --now {timers}")
        return
    for name, text in units.items():
        click.echo(f"# ---- {name} ----")
        click.echo(text)
