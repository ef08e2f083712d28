"""``backup run --dry-run``: what a backup would read, without writing anything.

The same selection as the archiver (excludes matched on full path and name)
and the same incremental test (``tree.unchanged``: size, mtime, ctime, inode
and link count against the parent snapshot's node), so the counts are what
the real run would do.
"""
from __future__ import annotations

import os
import stat as statmod
from dataclasses import dataclass, field
from typing import Callable

from .tree import TYPE_DIR, decode_name, unchanged


@dataclass
class BackupPlan:
    """Files a backup would read again (new, changed) or trust (unchanged)."""

    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    bytes_to_read: int = 0
    bytes_total: int = 0
    excluded: int = 0
    unreadable: list[str] = field(default_factory=list)


def parent_files(repo, snap: dict | None) -> dict[bytes, dict]:
    """Every file node of the parent snapshot by absolute path."""
    if snap is None:
        return {}
    out: dict[bytes, dict] = {}

    def walk(tree_id: bytes, base: bytes) -> None:
        for node in repo.load_tree(tree_id).get("nodes", []):
            path = base.rstrip(b"/") + b"/" + decode_name(node)
            if node.get("type") == TYPE_DIR:
                walk(bytes.fromhex(node["subtree"]), path)
            else:
                out[path] = node

    walk(bytes.fromhex(snap["tree"]), b"/")
    return out


def plan_backup(roots: list[str], excluded: Callable[[bytes], bool],
                parent: dict[bytes, dict], full: bool) -> BackupPlan:
    """Walk ``roots`` as the archiver would and sort every regular file."""
    plan = BackupPlan()
    stack = [os.fsencode(r) for r in roots]
    while stack:
        path = stack.pop()
        if excluded(path):
            plan.excluded += 1
            continue
        try:
            st = os.lstat(path)
        except OSError:
            plan.unreadable.append(os.fsdecode(path))
            continue
        if statmod.S_ISDIR(st.st_mode):
            try:
                stack.extend(os.path.join(path, name) for name in os.listdir(path))
            except OSError:
                plan.unreadable.append(os.fsdecode(path))
        elif statmod.S_ISREG(st.st_mode):
            _sort(plan, path, st, parent.get(path), full)
    return plan


def _sort(plan: BackupPlan, path: bytes, st, old: dict | None, full: bool) -> None:
    plan.bytes_total += st.st_size
    if not full and unchanged(old, st):
        plan.unchanged += 1
        return
    (plan.new if old is None else plan.changed).append(os.fsdecode(path))
    plan.bytes_to_read += st.st_size
