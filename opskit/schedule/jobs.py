"""The schedule file: jobs, their opskit command and their timing (docs/schedule.md).

    version: 1
    defaults: {timeout: 2h, retries: 2, retry_delay: 5m}
    jobs:
      backup-incremental:
        command: [backup, run, --tag, incremental]
        every: day            # hour | day | week | month
        at: "01:30"           # ":MM" for hourly jobs
      replicate:
        command: [backup, replicate]
        after: [backup-incremental]

The shipped default (R-BAK-4 incremental daily / full weekly, R-BAK-5 monthly
drill, ...) is ``configs/schedule.yaml``, embedded in ``default_schedule``.
Mistakes are ConfigErrors naming file, line and key (exit code 2).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from opskit.core.durations import DurationError, parse_seconds
from opskit.core.errors import ConfigError, UsageError
from opskit.core.schema import Key, MapOf, Section, validate
from opskit.core.yamlfile import YamlDoc, load_yaml, parse_yaml

from . import default_schedule

EMBEDDED = "<embedded default schedule>"
EVERY = ("hour", "day", "week", "month")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def parse_duration(value) -> float:
    """Seconds from a number or a duration such as ``90s``, ``30m``, ``2h``, ``1d``
    (opskit.core.durations)."""
    try:
        return parse_seconds(value, bare_seconds=True)
    except DurationError as exc:
        raise ValueError(str(exc)) from None


def _duration_check(value):
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        return str(exc)
    return None if seconds >= 0 else "expected a duration of at least 0"


def _positive_duration(value):
    problem = _duration_check(value)
    if problem:
        return problem
    return None if parse_duration(value) > 0 else "expected a duration above 0"


def _at_check(value):
    if re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value) or re.fullmatch(r":[0-5]\d", value):
        return None
    return f"expected \"HH:MM\" (or \":MM\" for hourly jobs), got {value!r}"


def _command_check(value):
    if not value:
        return "expected the opskit command as a list of words, e.g. [backup, run]"
    if value[0] == "opskit":
        return "leave out the leading 'opskit': [backup, run], not [opskit, backup, run]"
    if value[0] in ("schedule",):
        return "a job cannot run 'opskit schedule' itself"
    return None


TIMING = {"timeout": Key((int, float, str), None, "Seconds or a duration (2h).",
                         check=_positive_duration),
          "retries": Key(int, None, "Extra attempts after an operational failure.", min=0),
          "retry_delay": Key((int, float, str), None, "First backoff, doubled per attempt.",
                             check=_duration_check)}

JOB = Section({
    "description": Key(str, None, "What the job is for."),
    "command": Key(list, None, "The opskit command, as a list of words (no shell).",
                   item_type=str, nullable=False, check=_command_check),
    "every": Key(str, None, "hour, day, week or month.", choices=EVERY),
    "at": Key(str, None, "HH:MM (or :MM for hourly jobs), local time.", check=_at_check),
    "weekday": Key(str, None, "Weekly jobs: monday ... sunday.", choices=WEEKDAYS),
    "day": Key(int, None, "Monthly jobs: day of the month, 1 ... 28.", min=1,
               check=lambda v: None if v <= 28 else f"expected 1 ... 28 (every month has it), "
                                                    f"got {v}"),
    "after": Key(list, None, "Run right after one of these jobs succeeded.", item_type=str),
    "enabled": Key(bool, True, "false: the job never runs."),
    "rules": Key(list, None, "Rule ids the job produces evidence for.", item_type=str),
    **TIMING,
})

SCHEMA = Section({
    "version": Key(int, 1, "Format version.", choices=(1,)),
    "defaults": Section(dict(TIMING)),
    "jobs": MapOf(JOB),
})

DEFAULTS = {"timeout": 7200.0, "retries": 2, "retry_delay": 300.0}


@dataclass
class Job:
    name: str
    command: list[str]
    every: str | None = None
    at: str | None = None
    weekday: str | None = None
    day: int | None = None
    after: list[str] = field(default_factory=list)
    timeout: float = 7200.0
    retries: int = 2
    retry_delay: float = 300.0
    description: str = ""
    rules: list[str] = field(default_factory=list)
    enabled: bool = True
    where: str = ""          # file:line of the job, for messages

    # --- timing ------------------------------------------------------------------
    @property
    def timed(self) -> bool:
        return self.every is not None

    @property
    def hour_minute(self) -> tuple[int, int]:
        """(hour, minute) of the 'at' time; hour is None-like (-1) for hourly jobs."""
        at = self.at or (":00" if self.every == "hour" else "00:00")
        if at.startswith(":"):
            return -1, int(at[1:])
        hh, mm = at.split(":")
        return int(hh), int(mm)

    def describe_timing(self) -> str:
        parts = []
        if self.timed:
            hour, minute = self.hour_minute
            if self.every == "hour":
                parts.append(f"hourly at :{minute:02d}")
            elif self.every == "day":
                parts.append(f"daily at {hour:02d}:{minute:02d}")
            elif self.every == "week":
                parts.append(f"weekly on {(self.weekday or 'sunday').capitalize()} at "
                             f"{hour:02d}:{minute:02d}")
            else:
                parts.append(f"monthly on day {self.day or 1} at {hour:02d}:{minute:02d}")
        if self.after:
            parts.append("after " + ", ".join(self.after))
        text = "; ".join(parts)
        return text + ("" if self.enabled else " (disabled)")

    def next_run(self, now: dt.datetime) -> dt.datetime | None:
        """The first run strictly after ``now`` (naive local time), None for 'after' jobs."""
        if not self.timed or not self.enabled:
            return None
        hour, minute = self.hour_minute
        now = now.replace(second=0, microsecond=0)
        if self.every == "hour":
            cand = now.replace(minute=minute)
            return cand if cand > now else cand + dt.timedelta(hours=1)
        cand = now.replace(hour=hour, minute=minute)
        if cand <= now:
            cand += dt.timedelta(days=1)
        if self.every == "day":
            return cand
        if self.every == "week":
            target = WEEKDAYS.index(self.weekday or "sunday")
            return cand + dt.timedelta(days=(target - cand.weekday()) % 7)
        day = self.day or 1
        while cand.day != day:
            cand += dt.timedelta(days=1)
        return cand

    def cron_fields(self) -> str:
        """The five crontab time fields."""
        hour, minute = self.hour_minute
        if self.every == "hour":
            return f"{minute} * * * *"
        if self.every == "day":
            return f"{minute} {hour} * * *"
        if self.every == "week":
            dow = (WEEKDAYS.index(self.weekday or "sunday") + 1) % 7   # cron: 0 = Sunday
            return f"{minute} {hour} * * {dow}"
        return f"{minute} {hour} {self.day or 1} * *"

    def on_calendar(self) -> str:
        """systemd.time(7) OnCalendar= expression."""
        hour, minute = self.hour_minute
        if self.every == "hour":
            return f"*-*-* *:{minute:02d}:00"
        if self.every == "day":
            return f"*-*-* {hour:02d}:{minute:02d}:00"
        if self.every == "week":
            return f"{(self.weekday or 'sunday')[:3].capitalize()} *-*-* {hour:02d}:{minute:02d}:00"
        return f"*-*-{self.day or 1:02d} {hour:02d}:{minute:02d}:00"


@dataclass
class Schedule:
    source: str
    jobs: dict[str, Job]

    def job(self, name: str) -> Job:
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise UsageError(f"unknown job {name!r} in {self.source} (jobs: {known})")
        return self.jobs[name]

    def followers(self, name: str) -> list[Job]:
        """Enabled jobs that run right after ``name`` succeeded, in file order."""
        return [j for j in self.jobs.values() if name in j.after and j.enabled]


def schedule_file(config) -> str | None:
    """schedule.file, else schedule.yaml beside the config file, else the system file,
    else None (the embedded default)."""
    found = config.locate("schedule.file", "schedule.yaml")
    return found.path if found else None


def load_schedule(config=None, path: str | None = None) -> Schedule:
    """Load ``path``, or the configured schedule file, or the embedded default."""
    if path is None and config is not None:
        path = schedule_file(config)
    doc = load_yaml(path) if path else parse_yaml(default_schedule.TEXT, EMBEDDED)
    return parse_schedule(doc)


def parse_schedule(doc: YamlDoc) -> Schedule:
    if doc.data is None:
        raise ConfigError("the schedule file is empty; expected 'jobs:'", file=doc.file)
    data = validate(SCHEMA, doc.data, doc)
    base = dict(DEFAULTS)
    for key, value in (data.get("defaults") or {}).items():
        if value is not None:
            base[key] = value
    jobs: dict[str, Job] = {}
    for name, entry in data["jobs"].items():
        path = ("jobs", name)
        if not _NAME.match(name):
            raise doc.error(path, f"job name {name!r}: use lower-case letters, digits, '-', "
                                  "'_' and '.' (it names lock, status and metrics files)")
        timing = {k: entry[k] if entry.get(k) is not None else base[k] for k in DEFAULTS}
        job = Job(name=name, command=list(entry["command"]), every=entry.get("every"),
                  at=entry.get("at"), weekday=entry.get("weekday"), day=entry.get("day"),
                  after=list(entry.get("after") or []),
                  timeout=parse_duration(timing["timeout"]), retries=int(timing["retries"]),
                  retry_delay=parse_duration(timing["retry_delay"]),
                  description=entry.get("description") or "", rules=list(entry.get("rules") or []),
                  enabled=entry.get("enabled") is not False,
                  where=f"{doc.file}:{doc.line(path)}")
        if not job.every and not job.after:
            raise doc.error(path, "a job needs 'every' (hour, day, week, month) or 'after'")
        if job.at and job.every:
            hourly = job.at.startswith(":")
            if hourly != (job.every == "hour"):
                raise doc.error(path + ("at",), "hourly jobs take 'at: \":MM\"', the others "
                                                "'at: \"HH:MM\"'")
        if job.weekday and job.every != "week":
            raise doc.error(path + ("weekday",), "'weekday' is for 'every: week' jobs")
        if job.day and job.every != "month":
            raise doc.error(path + ("day",), "'day' is for 'every: month' jobs")
        jobs[name] = job
    for job in jobs.values():
        for i, before in enumerate(job.after):
            if before not in jobs:
                raise doc.error(("jobs", job.name, "after", i),
                                f"unknown job {before!r} (jobs: {', '.join(sorted(jobs))})")
            if before == job.name:
                raise doc.error(("jobs", job.name, "after", i), "a job cannot run after itself")
    _check_cycles(jobs, doc)
    return Schedule(doc.file, jobs)


def _check_cycles(jobs: dict[str, Job], doc: YamlDoc) -> None:
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            loop = " -> ".join(chain[chain.index(name):] + [name])
            raise doc.error(("jobs", name, "after"), f"'after' makes a loop: {loop}")
        state[name] = 1
        for follower in (j.name for j in jobs.values() if name in j.after):
            visit(follower, chain + [name])
        state[name] = 2

    for name in jobs:
        visit(name, [])
