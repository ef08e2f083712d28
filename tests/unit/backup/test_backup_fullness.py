"""FULL means one thing everywhere (issue #22 item 8)."""
from __future__ import annotations


def test_first_snapshot_of_a_path_set_is_full_in_snapshots_and_evidence():
    # issue #22 item 8: one definition (opskit.backup.fullness.is_full) for both
    from opskit.backup.fullness import is_full
    from opskit.backup.report import snapshots_result
    first = {"id": "a" * 64, "time": "2024-01-01T00:00:00Z", "paths": ["/etc"], "parent": None,
             "full": False, "stats": {"files": 3, "bytes": 10}}
    second = dict(first, id="b" * 64, parent="a" * 64)
    forced = dict(second, id="c" * 64, full=True)
    assert [is_full(s) for s in (first, second, forced)] == [True, False, True]
    rows = snapshots_result([first, second, forced], []).tables[0].rows
    assert [r["full"] for r in rows] == [True, False, True]
