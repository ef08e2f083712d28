"""One duration grammar everywhere (issue #22 item 7): m = minutes, mo = months."""
import datetime as dt

import pytest

from opskit.core.audit import parse_since
from opskit.core.durations import DurationError, parse_seconds
from opskit.core.errors import UsageError
from opskit.schedule.jobs import parse_duration as schedule_duration

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("2h", 7200),
                                          ("2h30m", 9000), ("7d", 604800), ("2w", 1209600),
                                          ("6mo", 180 * 86400), ("1y", 365 * 86400),
                                          ("1y6mo", 545 * 86400), ("1.5h", 5400)])
def test_the_grammar(text, seconds):
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["", "30", "m30", "30x", "1m1y", "1h1h", "-3d", "3 days"])
def test_not_durations(bad):
    with pytest.raises(DurationError):
        parse_seconds(bad)


def test_30m_is_thirty_minutes_in_audit_show_and_the_schedule_alike():
    assert parse_since("30m", NOW) == NOW - dt.timedelta(minutes=30)
    assert schedule_duration("30m") == 1800
    assert parse_since("3mo", NOW) == NOW - dt.timedelta(days=90)


def test_bare_numbers_are_seconds_only_where_allowed():
    assert schedule_duration(90) == 90 and schedule_duration("90") == 90
    with pytest.raises(UsageError):
        parse_since("90", NOW)
