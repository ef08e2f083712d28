"""The one duration grammar of opskit (docs/cli.md, "Durations").

A duration is one or more ``<number><unit>`` parts, largest first, e.g.
``90s``, ``30m``, ``2h30m``, ``7d``, ``2w``, ``6mo``, ``1y6mo``:

    s  seconds    m  minutes    h  hours    d  days    w  weeks
    mo months (30 days)         y  years (365 days)

``m`` is always minutes and ``mo`` always months, in every command and
config key (``audit show --since``, ``evidence --since``,
``backup forget --keep-within``, ``retention.keep_within``, schedule
timeouts). A bare number is seconds only where a caller allows it.
"""
from __future__ import annotations

import datetime as dt
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400,
         "y": 365 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(mo|[smhdwy])", re.IGNORECASE)
_ORDER = ["y", "mo", "w", "d", "h", "m", "s"]
EXAMPLES = "90s, 30m, 2h30m, 7d, 2w, 6mo, 1y"


class DurationError(ValueError):
    """Text that is not a duration; the message says what was expected."""


def parse_seconds(text, *, bare_seconds: bool = False) -> float:
    """Seconds in ``text`` (see the module doc). ``bare_seconds``: a plain number
    (or an int/float value from YAML) is seconds."""
    if isinstance(text, bool):
        raise DurationError(f"expected a duration such as {EXAMPLES}, got {text!r}")
    if isinstance(text, (int, float)) and bare_seconds:
        return float(text)
    raw = str(text).strip()
    if bare_seconds and re.fullmatch(r"\d+(?:\.\d+)?", raw):
        return float(raw)
    return _parse(raw)


def _parse(raw: str) -> float:
    parts = list(_PART.finditer(raw))
    if not parts or "".join(p.group(0) for p in parts).replace(" ", "") != raw.replace(" ", ""):
        raise DurationError(f"expected a duration such as {EXAMPLES}, got {raw!r}")
    units = [p.group(2).lower() for p in parts]
    if [_ORDER.index(u) for u in units] != sorted(_ORDER.index(u) for u in set(units)) \
            or len(set(units)) != len(units):
        raise DurationError(f"duration {raw!r}: give each unit once, largest first "
                            f"(e.g. 1y6mo, 2h30m)")
    return sum(float(p.group(1)) * UNITS[p.group(2).lower()] for p in parts)


def parse_timedelta(text) -> dt.timedelta:
    """``parse_seconds`` as a timedelta."""
    return dt.timedelta(seconds=parse_seconds(text))


def units_in(text: str) -> set[str]:
    """The units a duration text uses (``{"mo", "d"}`` for ``1mo2d``)."""
    return {p.group(2).lower() for p in _PART.finditer(str(text))}
