"""Remove data no snapshot needs (``opskit backup prune``).

Plan first (used blobs from every snapshot's trees, then per pack: keep,
delete or repack), then apply in a crash-safe order:

1. write repacked packs (new objects; nothing refers to them yet)
2. write new index files covering every pack that stays
3. delete the old index files
4. delete packs no index names any more

A SIGKILL anywhere leaves a repository that passes ``check --read-data``:
before 3 the old and new indexes overlap (harmless duplicates), after 3 the
leftover packs are unreferenced (a warning) and the next prune removes them.
Memory: the set of used blob ids (32 bytes each) plus the index itself.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from opskit.core.failpoints import failpoint

from . import crypto
from .backends import ObjectLocked
from .pack import BLOB_DATA, BLOB_DELTA, BLOB_TREE, PackBuilder, pack_kind, read_header
from .repository import CorruptObject, Repository, pack_name
from .tree import blob_refs

REPACK_GARBAGE_RATIO = 0.25   # repack a pack once a quarter of its bytes are garbage


@dataclass
class PrunePlan:
    packs_total: int = 0
    packs_delete: list = field(default_factory=list)
    packs_repack: list = field(default_factory=list)
    packs_keep: int = 0
    unindexed_delete: list = field(default_factory=list)
    bytes_total: int = 0
    bytes_freed: int = 0           # estimate: garbage in deleted and repacked packs
    blobs_used: int = 0
    blobs_unused: int = 0
    index_files: int = 0

    def to_json(self) -> dict:
        data = asdict(self)
        data["packs_delete"] = len(self.packs_delete)
        data["packs_repack"] = len(self.packs_repack)
        data["unindexed_delete"] = len(self.unindexed_delete)
        return data


def used_blobs(repo: Repository) -> set[bytes]:
    """Every blob id reachable from any snapshot (trees and data)."""
    used: set[bytes] = set()
    stack = []
    for sid in repo.list_snapshot_ids():
        snap = repo.load_snapshot(sid)
        stack.append(bytes.fromhex(snap["tree"]))
    while stack:
        tid = stack.pop()
        if tid in used:
            continue
        used.add(tid)
        for node in repo.load_tree(tid).get("nodes", ()):
            if node.get("subtree"):
                stack.append(bytes.fromhex(node["subtree"]))
            for hex_id, _role in blob_refs(node):     # delta bases too
                used.add(bytes.fromhex(hex_id))
    return used | delta_bases(repo, used)


def delta_bases(repo: Repository, used: set[bytes]) -> set[bytes]:
    """The base of every delta blob in ``used``, told apart by their index
    type and read from each delta's head (deltas are small). Whatever node
    reached a delta (a logical backup listing its bases, a write-only host or
    a file backup that deduplicated against it without knowing), its base is
    kept. A delta whose head cannot be read stops prune: its base is unknown."""
    bases: set[bytes] = set()
    lookup = repo.index.lookup
    for bid in used:
        loc = lookup(bid)
        if loc is not None and loc.type == BLOB_DELTA:
            base = repo.delta_base_of(bid)
            if base is not None:
                bases.add(base)
    return bases


def plan(repo: Repository) -> tuple[PrunePlan, set[bytes], dict[str, list]]:
    """What prune would do. Needs the index loaded."""
    used = used_blobs(repo)
    packs: dict[str, list] = {}
    for bid, loc in repo.index.items():
        packs.setdefault(loc.pack, []).append((bid, loc))
    stored = {n.split("/")[-1]: size for n, size in repo.backend.list("data/")}
    p = PrunePlan(index_files=sum(1 for _ in repo.backend.list("index/")))
    p.packs_total = len(stored)
    p.bytes_total = sum(stored.values())
    for pack_id, size in stored.items():
        entries = packs.get(pack_id)
        if not entries:
            p.unindexed_delete.append(pack_id)
            p.bytes_freed += size
            continue
        live = sum(loc.length for bid, loc in entries if bid in used)
        dead = sum(loc.length for bid, loc in entries if bid not in used)
        p.blobs_used += sum(1 for bid, _ in entries if bid in used)
        p.blobs_unused += sum(1 for bid, _ in entries if bid not in used)
        if live == 0:
            p.packs_delete.append(pack_id)
            p.bytes_freed += size
        elif dead and dead >= REPACK_GARBAGE_RATIO * (live + dead):
            p.packs_repack.append(pack_id)
            p.bytes_freed += dead
        else:
            p.packs_keep += 1
    return p, used, packs


def apply(repo: Repository, p: PrunePlan, used: set[bytes], packs: dict[str, list],
          progress=None) -> dict:
    """Carry out a plan (caller holds the exclusive lock)."""
    new_packs: dict[str, list] = {}
    builders = {BLOB_DATA: PackBuilder(BLOB_DATA), BLOB_TREE: PackBuilder(BLOB_TREE)}
    moved: set[bytes] = set()

    def flush(kind: str) -> None:
        b = builders[kind]
        if not b.entries:
            return
        data = b.finish(repo.keys)
        pid = crypto.object_id(data)
        repo.backend.put(pack_name(pid), data)
        new_packs[pid] = b.entries
        builders[kind] = PackBuilder(kind)
        failpoint("prune.after-repack-pack")

    # 1. repack: copy live blobs verbatim (still encrypted; ids unchanged)
    for pack_id in p.packs_repack:
        raw = repo.backend.get(pack_name(pack_id))
        if crypto.object_id(raw) != pack_id:
            raise CorruptObject(pack_name(pack_id), "damaged; run 'opskit backup check --read-data'")
        for entry in read_header(repo.keys, raw, len(raw)):
            if entry.id not in used or entry.id in moved:
                continue
            moved.add(entry.id)
            kind = pack_kind(entry.type)
            b = builders[kind]
            b.add(entry.type, entry.id, raw[entry.offset:entry.offset + entry.length],
                  entry.raw_length)
            if b.size >= repo.pack_size:
                flush(kind)
    for kind in builders:
        flush(kind)
    # 2. a fresh index covering every pack that stays (unless no indexed pack goes:
    #    then the index is already right, and rewriting it would only churn)
    gone = set(p.packs_delete) | set(p.packs_repack)
    if not gone:
        return _delete_unindexed(repo, p, new_packs)
    keep_index: dict[str, list] = {pid: ents for pid, ents in new_packs.items()}
    from .pack import BlobEntry
    for pack_id, entries in packs.items():
        if pack_id in gone:
            continue
        keep_index[pack_id] = [BlobEntry(loc.type, bid, loc.offset, loc.length, loc.raw_length)
                               for bid, loc in entries]
    old_index = [n for n, _ in repo.backend.list("index/")]
    written = set()
    batch: dict[str, list] = {}
    for pack_id, entries in keep_index.items():
        batch[pack_id] = entries
        if len(batch) >= 2000:
            written.add(repo.write_index(batch))
            batch = {}
    if batch:
        written.add(repo.write_index(batch))
    failpoint("prune.after-index-write")
    # 3. old index files go only after the new ones exist
    kept: list[dict] = []          # objects under retention (S3 Object Lock): reported, kept
    still_named: set[str] = set()  # packs a kept index file still names must stay too
    for name in old_index:
        if name.split("/")[-1] not in written:
            try:
                repo.backend.delete(name)
            except ObjectLocked as exc:
                kept.append({"object": name, "retain_until": exc.retain_until})
                still_named |= set(repo.read_index_file(name))
            failpoint("prune.after-index-delete")
    # 4. packs nothing names any more
    for pack_id in still_named & (gone | set(p.unindexed_delete)):
        kept.append({"object": pack_name(pack_id), "retain_until": None,
                     "why": "named by an index file under retention"})
    deleted = _delete_packs(repo, [pid for pid in list(gone) + p.unindexed_delete
                                   if pid not in still_named], kept)
    return {"packs_written": len(new_packs), "packs_deleted": deleted,
            "index_files_written": len(written),
            "index_files_deleted": len([n for n in old_index if n.split("/")[-1] not in written])
            - sum(1 for k in kept if k["object"].startswith("index/")),
            "kept_under_retention": kept}


def _delete_packs(repo: Repository, pack_ids: list[str], kept: list[dict]) -> int:
    """Delete packs; one under retention (Object Lock) is added to ``kept``."""
    deleted = 0
    for pack_id in pack_ids:
        try:
            repo.backend.delete(pack_name(pack_id))
            deleted += 1
        except ObjectLocked as exc:
            kept.append({"object": pack_name(pack_id), "retain_until": exc.retain_until})
        failpoint("prune.after-pack-delete")
    return deleted


def _delete_unindexed(repo: Repository, p: PrunePlan, new_packs: dict) -> dict:
    """Only leftovers no index names: delete them, keeping what retention protects."""
    kept: list[dict] = []
    deleted = _delete_packs(repo, p.unindexed_delete, kept)
    return {"packs_written": len(new_packs), "packs_deleted": deleted, "index_files_written": 0,
            "index_files_deleted": 0, "kept_under_retention": kept}
