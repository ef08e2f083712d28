"""Age-based retention of stored records (policy runs, permission snapshots):
the evidence pack needs the whole audit window (issue #21), so a record is
deleted only when it is older than ``keep_days`` *and* not among the newest
``keep`` (a floor for rarely-run jobs)."""
from __future__ import annotations

import datetime as _dt
from typing import Callable


def id_time(record_id: str) -> _dt.datetime | None:
    """The UTC time a record id starts with (``20261122T120000[.ffffff|mmm]Z-...``)."""
    stamp = record_id.split("Z", 1)[0]
    for fmt, width in (("%Y%m%dT%H%M%S.%f", 22), ("%Y%m%dT%H%M%S", 15)):
        try:
            return _dt.datetime.strptime(stamp[:width], fmt).replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            continue
    return None


def expired(ids: list[str], keep: int, keep_days: float,
            time_of: Callable[[str], _dt.datetime | None] = id_time,
            now: _dt.datetime | None = None) -> list[str]:
    """Of ``ids`` (oldest first), those to delete: beyond the newest ``keep`` and
    older than ``keep_days``; an id whose time is unknown is kept."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    cutoff = now - _dt.timedelta(days=keep_days)
    out = []
    for rid in ids[: max(0, len(ids) - keep)]:
        when = time_of(rid)
        if when is not None and when < cutoff:
            out.append(rid)
    return out
