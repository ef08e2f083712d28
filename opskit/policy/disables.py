"""Policy files that disable a check (R-SEC-2: a high-risk change needing review).

``disabling_files`` finds, per policy file, the checks it turns off
(``enabled: false`` at the top or in a group); ``content_hash`` is what a
reviewer approves (the SHA-256 of the file's bytes, so any edit needs a new
approval); ``reenable`` undoes the disables of unapproved files, so those
checks run anyway.
"""
from __future__ import annotations

import hashlib

from .policyfile import Policy


def _entries(policy: Policy):
    """(label, CheckEntry) for every top-level and group check entry."""
    for check_id, entry in policy.checks.items():
        yield check_id, entry
    for group, g in policy.groups.items():
        for check_id, entry in g.checks.items():
            yield f"{check_id} (group {group})", entry


def _file_of(where: str) -> str:
    return where.rpartition(":")[0] if where.rpartition(":")[2].isdigit() else where


def disabling_files(policy: Policy) -> dict[str, list[str]]:
    """policy file -> 'check at file:line' for each check it disables."""
    out: dict[str, list[str]] = {}
    for label, entry in _entries(policy):
        if entry.values.get("enabled") is False:
            where = entry.where.get("enabled", "")
            out.setdefault(_file_of(where), []).append(f"{label} at {where}")
    return out


def content_hash(path: str) -> str:
    """SHA-256 (hex) of the policy file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def reenable(policy: Policy, files: set[str]) -> int:
    """Turn back on every check that one of ``files`` disabled; returns how many."""
    n = 0
    for _label, entry in _entries(policy):
        if entry.values.get("enabled") is False and \
                _file_of(entry.where.get("enabled", "")) in files:
            entry.values["enabled"] = True
            entry.where["enabled"] += " (unapproved disable ignored, R-SEC-2)"
            n += 1
    return n
