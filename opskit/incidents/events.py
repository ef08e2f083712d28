"""The security-event register (R-AUD-4): six required fields, recorded within 24 h,
kept at least six months.

Each event is one record in the hash-chained register
``<state_dir>/incidents/events.jsonl``: when it happened (``at``), place, type,
scope, measures taken and the person responsible, plus who recorded it and
when (``time``). The record-within deadline runs from ``at`` to ``time``.

Retention: ``prune`` drops the oldest events, but never one recorded less than
``incidents.event_retention_days`` (at least 183) before now; asking for more
is refused naming the floor, and what was dropped is anchored (chain.Register).
"""
from __future__ import annotations

import datetime as _dt
import os

from opskit.core.errors import UsageError

from . import clocks
from .chain import Register, register_at
from .clocks import refused

RULE = "R-AUD-4"
FIELDS = ("place", "type", "scope", "measures", "responsible")


def register(state_dir: str) -> Register:
    """The security-event register of this state directory."""
    return register_at(state_dir, "events.jsonl")


def record(state_dir: str, *, actor: str, at: _dt.datetime, now: _dt.datetime,
           record_hours: float = 24.0, **fields: str) -> dict:
    """Record one security event; every one of the six fields is required (R-AUD-4)."""
    missing = [f for f in FIELDS if not (fields.get(f) or "").strip()]
    if missing:
        raise UsageError(f"a security event needs {', '.join(missing)} (R-AUD-4: time, place, "
                         "type, scope, measures and the person responsible)")
    clocks.not_future(at, now, "event time")

    def decide(records: list[dict]) -> dict:
        return {"time": clocks.iso(now), "event": f"SE-{len(records) + _pruned() + 1:05d}",
                "actor": actor, "at": clocks.iso(at), "record_hours": record_hours,
                **{f: fields[f] for f in FIELDS}}

    reg = register(state_dir)

    def _pruned() -> int:
        anchor = reg.anchor()
        return anchor["seq"] if anchor else 0

    return row(reg.append(decide), now)


def deadline(event: dict) -> clocks.Deadline:
    """Recorded within ``record_hours`` of happening."""
    at = clocks.parse_when(event["at"])
    return clocks.Deadline("recorded-in-time", RULE, at + clocks.hours(event["record_hours"]),
                           clocks.parse_when(event["time"]))


def row(event: dict, now: _dt.datetime) -> dict:
    """One line for ``event list``."""
    return {"id": event["event"], "at": event["at"], **{f: event[f] for f in FIELDS},
            "recorded": event["time"], "recorded_by": event["actor"],
            "in_time": deadline(event).state(now) == clocks.KEPT}


def load(state_dir: str, since: _dt.datetime | None = None) -> list[dict]:
    """Every event (recorded since ``since``), oldest first."""
    out = list(register(state_dir).records())
    if since is not None:
        out = [e for e in out if clocks.parse_when(e["time"]) >= since]
    return out


def prune(state_dir: str, *, before: _dt.datetime, now: _dt.datetime,
          retention_days: int) -> int:
    """Drop events recorded before ``before``; refused when that reaches into the
    retention floor (R-AUD-4). Returns how many were dropped."""
    floor = now - _dt.timedelta(days=retention_days)
    if before > floor:
        raise refused(f"security events are kept at least {retention_days} days: nothing "
                      f"recorded after {clocks.iso(floor)} may be pruned (asked: before "
                      f"{clocks.iso(before)})", rule=RULE,
                      hint=f"--before {floor.date().isoformat()} or earlier")
    return register(state_dir).prune(lambda e: clocks.parse_when(e["time"]) >= before,
                                     f"events recorded before {clocks.iso(before)} "
                                     f"(retention {retention_days} days)", clocks.iso(now))
