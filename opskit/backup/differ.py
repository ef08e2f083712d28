"""Differences between two snapshots, path by path (like ``restic diff``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .repository import Repository
from .tree import TYPE_DIR, decode_name

_META = ("mode", "uid", "gid", "mtime_ns")


@dataclass
class DiffResult:
    changes: list = field(default_factory=list)   # {"change": "+|-|M|U|T", "path", "type"}
    added: int = 0
    removed: int = 0
    modified: int = 0
    metadata: int = 0


def _target(node: dict) -> bytes | None:
    return decode_name(node, "target") if ("target" in node or "target_b64" in node) else None


class Differ:
    def __init__(self, repo: Repository):
        self.repo = repo
        self.result = DiffResult()

    def run(self, snap_a: dict, snap_b: dict) -> DiffResult:
        self._compare(bytes.fromhex(snap_a["tree"]), bytes.fromhex(snap_b["tree"]), "/")
        return self.result

    def _nodes(self, tree_id: bytes | None) -> dict[bytes, dict]:
        if tree_id is None:
            return {}
        return {decode_name(n): n for n in self.repo.load_tree(tree_id).get("nodes", [])}

    def _add(self, change: str, path: str, node: dict) -> None:
        kind = node.get("type", "?")
        self.result.changes.append({"change": change, "path": path + ("/" if kind == TYPE_DIR else ""),
                                    "type": kind})
        if change == "+":
            self.result.added += 1
        elif change == "-":
            self.result.removed += 1
        elif change in ("M", "T"):
            self.result.modified += 1
        else:
            self.result.metadata += 1

    def _all(self, change: str, tree_id: bytes, path: str) -> None:
        for name, node in sorted(self._nodes(tree_id).items()):
            child = path.rstrip("/") + "/" + os.fsdecode(name)
            self._add(change, child, node)
            if node.get("type") == TYPE_DIR:
                self._all(change, bytes.fromhex(node["subtree"]), child)

    def _compare(self, a: bytes | None, b: bytes | None, path: str) -> None:
        if a == b:
            return
        left, right = self._nodes(a), self._nodes(b)
        for name in sorted(set(left) | set(right)):
            child = path.rstrip("/") + "/" + os.fsdecode(name)
            na, nb = left.get(name), right.get(name)
            if nb is None:
                self._add("-", child, na)
                if na.get("type") == TYPE_DIR:
                    self._all("-", bytes.fromhex(na["subtree"]), child)
            elif na is None:
                self._add("+", child, nb)
                if nb.get("type") == TYPE_DIR:
                    self._all("+", bytes.fromhex(nb["subtree"]), child)
            elif na.get("type") != nb.get("type"):
                self._add("T", child, nb)
            elif na.get("type") == TYPE_DIR:
                # a directory's own mtime changes with every entry; report contents only
                self._compare(bytes.fromhex(na["subtree"]), bytes.fromhex(nb["subtree"]), child)
            elif na.get("content") != nb.get("content") or _target(na) != _target(nb):
                self._add("M", child, nb)
            elif any(na.get(k) != nb.get(k) for k in _META):
                self._add("U", child, nb)
