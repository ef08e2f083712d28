"""What counts as a full backup: the one definition that ``backup snapshots``
(its FULL column) and the evidence pack's R-BAK-4 full-backup check share
(issue #22 item 8)."""
from __future__ import annotations


def is_full(snap: dict) -> bool:
    """True when ``snap`` holds every file as read, not trusted from a parent:
    a ``--full`` run, or the first snapshot of its path set (it has no parent)."""
    return bool(snap.get("full")) or not snap.get("parent")
