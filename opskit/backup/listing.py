"""What ``opskit backup ls`` lists: the entries of a snapshot under a path,
with the fields ``ls -l`` shows (issue #22 item 8), typed for JSON."""
from __future__ import annotations

import datetime as dt
import os
import stat as statmod

from opskit.core.errors import UsageError

from .fsmeta import TYPE_BLOCKDEV, TYPE_CHARDEV, TYPE_FIFO, TYPE_SOCKET
from .repository import Repository
from .tree import TYPE_DIR, TYPE_FILE, TYPE_SYMLINK, decode_name

# the first letter of ``ls -l``'s mode column, by node type
_TYPE_LETTER = {TYPE_FILE: "-", TYPE_DIR: "d", TYPE_SYMLINK: "l", TYPE_FIFO: "p",
                TYPE_CHARDEV: "c", TYPE_BLOCKDEV: "b", TYPE_SOCKET: "s"}


def mode_text(kind: str | None, mode: int) -> str:
    """``ls -l``'s mode column: type letter, then rwx with setuid/setgid/sticky
    as s/S and t/T. The type comes from the node (its ``mode`` may lack the
    type bits), '?' for a type this version does not know."""
    perms = statmod.filemode(statmod.S_IFREG | (mode & 0o7777))[1:]
    return _TYPE_LETTER.get(kind or "", "?") + perms


def mtime_iso(node: dict) -> str | None:
    """The node's mtime as ISO 8601 in local time with its zone, to the second."""
    ns = node.get("mtime_ns")
    if ns is None:
        return None
    when = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.timezone.utc)
    return when.astimezone().isoformat(timespec="seconds")


def entry(node: dict, path: str) -> dict:
    """One listed entry: typed fields (mode as an int and as ``ls`` text)."""
    kind, mode = node.get("type"), int(node.get("mode") or 0)
    row = {"type": kind, "mode": mode & 0o7777, "mode_text": mode_text(kind, mode),
           "uid": node.get("uid"), "gid": node.get("gid"),
           "user": node.get("user"), "group": node.get("group"),
           "size": node.get("size"), "mtime": mtime_iso(node), "path": path,
           "target": None}
    if kind == TYPE_SYMLINK and ("target" in node or "target_b64" in node):
        target = decode_name(node, "target")
        # a symlink's size is its target's length, as lstat and ls say
        row["target"], row["size"] = os.fsdecode(target), len(target)
    if kind in (TYPE_CHARDEV, TYPE_BLOCKDEV):
        rdev = int(node.get("rdev") or 0)
        row["major"], row["minor"] = os.major(rdev), os.minor(rdev)
    return row


def list_entries(repo: Repository, snap: dict, path: str) -> list[dict]:
    """Every entry of ``snap`` at or under ``path``, recursively, in tree order."""
    want = "/" + path.strip("/")
    rows: list[dict] = []

    def walk(tree_id: bytes, base: str) -> None:
        for node in repo.load_tree(tree_id).get("nodes", []):
            full = base.rstrip("/") + "/" + os.fsdecode(decode_name(node))
            inside = full == want or full.startswith(want.rstrip("/") + "/") or want == "/"
            if inside:
                rows.append(entry(node, full))
            if node.get("type") == TYPE_DIR and (inside or want.startswith(full.rstrip("/") + "/")):
                walk(bytes.fromhex(node["subtree"]), full)

    walk(bytes.fromhex(snap["tree"]), "/")
    if want != "/" and not rows:
        raise UsageError(f"path {want} is not in snapshot {snap['id'][:8]}")
    return rows
