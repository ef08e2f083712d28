"""Repairs of a damaged repository (docs/backup.md, "When the repository is damaged").

``repair_index`` rebuilds the index from the pack headers (as restic's
``repair index``): a flipped bit in one index file no longer blocks every
backup and restore. ``repair_snapshots`` rewrites snapshots that refer to
data the index no longer has (files and directories whose data is lost are
left out, the snapshot is saved again tagged ``repaired``) and drops those
that cannot be read at all. Both take ``dry_run`` and never write then.

Write order keeps every step crash-safe: the new index before the old ones
are deleted; new trees and the new snapshot before the old snapshot is.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import crypto
from .backends import BackendError
from .pack import BLOB_TREE, BlobEntry
from .repository import CorruptObject, Repository
from .tree import TYPE_DIR, blob_refs, encode_tree


@dataclass
class IndexRepair:
    dry_run: bool
    index_files: int = 0                  # index files found before the repair
    damaged_index: list = field(default_factory=list)       # {"object", "problem"}
    packs: int = 0                        # packs in the rebuilt index
    blobs: int = 0
    unreadable_packs: list = field(default_factory=list)    # {"object", "problem"}
    written: str | None = None            # id of the new index file
    removed: list = field(default_factory=list)             # old index files deleted

    def to_json(self) -> dict:
        return asdict(self)


def repair_index(repo: Repository, *, dry_run: bool = False) -> IndexRepair:
    """Rebuild the index from every readable pack header; replace the old index files."""
    report = IndexRepair(dry_run)
    old = [name for name, _size in repo.backend.list("index/")]
    report.index_files = len(old)
    for name in old:
        try:
            repo.read_index_file(name)
        except (CorruptObject, BackendError) as exc:
            report.damaged_index.append({"object": name, "problem": _problem(exc)})
    packs: dict[str, list[BlobEntry]] = {}
    for name, size in repo.backend.list("data/"):
        pack_id = name.split("/")[-1]
        try:
            packs[pack_id] = repo.read_pack_header(pack_id, size)
        except (CorruptObject, BackendError) as exc:
            # its blobs cannot be located any more: left unindexed, 'prune' removes it
            report.unreadable_packs.append({"object": name, "problem": _problem(exc)})
    report.packs = len(packs)
    report.blobs = sum(len(entries) for entries in packs.values())
    if dry_run:
        return report
    new = repo.write_index(packs) if packs else None
    report.written = new
    for name in old:
        if name != f"index/{new}":
            repo.backend.delete(name)
            report.removed.append(name)
    return report


@dataclass
class SnapshotRepair:
    dry_run: bool
    snapshots: int = 0
    intact: int = 0
    rewritten: list = field(default_factory=list)   # {"snapshot", "new", "lost"}
    dropped: list = field(default_factory=list)     # {"snapshot", "problem"}

    def to_json(self) -> dict:
        return asdict(self)


def repair_snapshots(repo: Repository, *, dry_run: bool = False) -> SnapshotRepair:
    """Rewrite snapshots without the files whose data is gone; drop unreadable ones.

    Needs a loaded index (``repo.load_index``): run ``repair_index`` first when
    the index itself is damaged."""
    report = SnapshotRepair(dry_run)
    walker = _TreeRewriter(repo, dry_run)
    for sid in sorted(repo.list_snapshot_ids()):
        report.snapshots += 1
        try:
            snap = repo.load_snapshot(sid)
        except (CorruptObject, BackendError) as exc:
            _drop(repo, report, sid, f"snapshot file unreadable: {_problem(exc)}")
            continue
        lost: list[str] = []
        new_tree = walker.rewrite(bytes.fromhex(snap["tree"]), "/", lost)
        if new_tree is None:
            _drop(repo, report, sid, "its root tree is lost: " + "; ".join(lost[:3]))
            continue
        if not lost:
            report.intact += 1
            continue
        entry = {"snapshot": sid, "new": None, "lost": lost}
        if not dry_run:
            walker.flush()
            body = {k: v for k, v in snap.items() if k != "id"}
            body.update(tree=new_tree.hex(), repaired_from=sid,
                        tags=sorted(set(snap.get("tags") or []) | {"repaired"}))
            entry["new"] = repo.save_snapshot(body)
            repo.backend.delete(f"snapshots/{sid}")
        report.rewritten.append(entry)
    walker.flush()
    return report


def _drop(repo: Repository, report: SnapshotRepair, sid: str, problem: str) -> None:
    report.dropped.append({"snapshot": sid, "problem": problem})
    if not report.dry_run:
        repo.backend.delete(f"snapshots/{sid}")


def _problem(exc: BaseException) -> str:
    return getattr(exc, "problem", None) or str(exc)


class _TreeRewriter:
    """Walks trees, leaving out what the index no longer has; memoised per tree."""

    def __init__(self, repo: Repository, dry_run: bool):
        self.repo = repo
        self.dry_run = dry_run
        self.writer = None
        self._done: dict[bytes, tuple[bytes | None, list[str]]] = {}

    def rewrite(self, tree_id: bytes, path: str, lost: list[str]) -> bytes | None:
        """The id of ``tree_id`` without lost data (itself when nothing is lost), or
        None when the tree cannot be read; ``lost`` gets the paths left out."""
        if tree_id not in self._done:
            self._done[tree_id] = self._rewrite(tree_id, path)
        new_id, gone = self._done[tree_id]
        lost.extend(gone)
        return new_id

    def _rewrite(self, tree_id: bytes, path: str) -> tuple[bytes | None, list[str]]:
        try:
            nodes = self.repo.load_tree(tree_id).get("nodes", [])
        except (CorruptObject, BackendError) as exc:
            return None, [f"{path} (tree {tree_id.hex()[:16]}: {_problem(exc)})"]
        kept, gone = [], []
        for node in nodes:
            child = path.rstrip("/") + "/" + str(node.get("name") or node.get("name_b64"))
            if node.get("type") == TYPE_DIR and node.get("subtree"):
                sub_lost: list[str] = []
                new_sub = self.rewrite(bytes.fromhex(node["subtree"]), child, sub_lost)
                gone += sub_lost
                if new_sub is None:
                    continue
                node = dict(node, subtree=new_sub.hex())
            elif any(bytes.fromhex(b) not in self.repo.index for b, _ in blob_refs(node)):
                gone.append(child)
                continue
            kept.append(node)
        if not gone:
            return tree_id, []
        return self._store(kept), gone

    def _store(self, nodes: list[dict]) -> bytes:
        raw = encode_tree(nodes)
        bid = crypto.blob_id(self.repo.keys.id_key, raw)
        if not self.dry_run:
            if self.writer is None:
                self.writer = self.repo.blob_writer(0)
            self.writer.add(BLOB_TREE, bid, raw)
        return bid

    def flush(self) -> None:
        """Write the trees stored so far (packs, then their index)."""
        if self.writer is not None:
            self.writer.finish()
            self.writer = None

