"""Deadlines and the clock they run on (R-INC-1, R-AUD-4, R-AUD-5).

A deadline is ``due`` (an aware datetime) and the moment the duty was done
(``done``, None while not yet). Its state at ``now``:

* ``kept``    done at or before due
* ``missed``  done after due, or not done and due has passed
* ``open``    not done, due still ahead (``seconds_left``)

Every domain function takes ``now`` (the clock is a parameter, never read
inside), so tests control time without sleeping; the CLI passes the real
time, or ``--at TIME`` where a command offers it.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from opskit.core.errors import Refused, UsageError

KEPT, MISSED, OPEN = "kept", "missed", "open"
UTC = _dt.timezone.utc


def utcnow() -> _dt.datetime:
    """The real clock (the CLI's default ``now``)."""
    return _dt.datetime.now(UTC)


def parse_when(text: str, what: str = "time") -> _dt.datetime:
    """An ISO-8601 date/time (``2026-11-01T08:00``, ``...Z``, ``+08:00``); a time without
    a zone is local time. UsageError naming ``what`` otherwise."""
    try:
        value = _dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what}: cannot read {text!r} as a date/time",
                         hint="use ISO-8601, e.g. 2026-11-01T08:00 or 2026-11-01T08:00:00+08:00"
                         ) from None
    return value.astimezone() if value.tzinfo is None else value


def iso(value: _dt.datetime) -> str:
    """UTC ISO-8601 with seconds and ``Z`` (how times are stored)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_future(value: _dt.datetime, now: _dt.datetime, what: str) -> _dt.datetime:
    """``value`` unless it lies in the future of ``now`` (a duty cannot be done ahead
    of the clock): UsageError then."""
    if value > now + _dt.timedelta(seconds=60):
        raise UsageError(f"{what} {iso(value)} is in the future (now {iso(now)})")
    return value


@dataclass
class Deadline:
    """One duty with a clock: ``name`` (e.g. report-security), ``rule`` (R-INC-1)."""

    name: str
    rule: str
    due: _dt.datetime
    done: _dt.datetime | None = None

    def state(self, now: _dt.datetime) -> str:
        """The state as of ``now``: a duty done after ``now`` is not done yet then."""
        if self.done is not None and self.done <= now:
            return KEPT if self.done <= self.due else MISSED
        return MISSED if now > self.due else OPEN

    def seconds_left(self, now: _dt.datetime) -> float | None:
        """Seconds until due while open; None once done or missed."""
        return (self.due - now).total_seconds() if self.state(now) == OPEN else None

    def row(self, now: _dt.datetime) -> dict:
        done = self.done if self.done is not None and self.done <= now else None
        return {"deadline": self.name, "rule": self.rule, "due": iso(self.due),
                "done": iso(done) if done else None, "state": self.state(now),
                "seconds_left": self.seconds_left(now)}


def hours(n: float) -> _dt.timedelta:
    return _dt.timedelta(hours=float(n))


def refused(message: str, *, rule: str, hint: str | None = None) -> Refused:
    """A refusal (exit 2) whose one line names the rule it enforces."""
    return Refused(f"{message} ({rule})", rule=rule, hint=hint)
