"""What ``opskit backup ls`` lists: the entries of a snapshot under a path."""
from __future__ import annotations

import os

from opskit.core.errors import UsageError

from .repository import Repository
from .tree import TYPE_DIR, decode_name


def list_entries(repo: Repository, snap: dict, path: str) -> list[dict]:
    """Every entry of ``snap`` at or under ``path``, recursively, in tree order."""
    want = "/" + path.strip("/")
    rows: list[dict] = []

    def walk(tree_id: bytes, base: str) -> None:
        for node in repo.load_tree(tree_id).get("nodes", []):
            full = base.rstrip("/") + "/" + os.fsdecode(decode_name(node))
            inside = full == want or full.startswith(want.rstrip("/") + "/") or want == "/"
            if inside:
                rows.append({"type": node.get("type"), "mode": oct(node.get("mode", 0) & 0o7777),
                             "user": node.get("user") or node.get("uid"),
                             "size": node.get("size"), "path": full})
            if node.get("type") == TYPE_DIR and (inside or want.startswith(full.rstrip("/") + "/")):
                walk(bytes.fromhex(node["subtree"]), full)

    walk(bytes.fromhex(snap["tree"]), "/")
    if want != "/" and not rows:
        raise UsageError(f"path {want} is not in snapshot {snap['id'][:8]}")
    return rows
