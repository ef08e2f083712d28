"""Repository verification: structure always, data on request (format doc, Check).

A problem names the object (pack, index, snapshot, tree) and the snapshots
that depend on it, so an operator knows what a damaged file costs.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from . import crypto
from .backends import BackendError
from .pack import BLOB_DELTA, TRAILER_SIZE, read_header
from .repository import REPAIR_INDEX_HINT, CorruptObject, Repository, pack_name
from .tree import blob_refs, name_problems


class FindingsReport:
    """Shared by verification reports (dataclasses with an ``errors`` list)."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


@dataclass
class CheckReport(FindingsReport):
    errors: list = field(default_factory=list)     # {"object", "problem", "snapshots"}
    warnings: list = field(default_factory=list)
    snapshots: int = 0
    trees: int = 0
    packs: int = 0
    packs_read: int = 0
    blobs_read: int = 0
    bytes_read: int = 0
    wal_chains: list = field(default_factory=list)  # with pg-base snapshots (opskit.backup.db)


class Checker:
    def __init__(self, repo: Repository, progress=None):
        self.repo = repo
        self.report = CheckReport()
        self.progress = progress
        self._tree_packs: dict[bytes, frozenset] = {}
        self._delta_base: dict[bytes, bytes | None] = {}   # delta blob -> its base (read once)
        self.pack_users: dict[str, set[str]] = {}
        self.pack_entries: dict[str, list] = {}

    def _error(self, obj: str, problem: str, snapshots=()) -> None:
        self.report.errors.append({"object": obj, "problem": problem,
                                   "snapshots": sorted(s[:12] for s in snapshots)})

    def run(self, *, read_data_fraction: float = 0.0, seed: int | None = None) -> CheckReport:
        repo = self.repo
        # 1. index files
        for name, _size in repo.backend.list("index/"):
            try:
                packs = repo.read_index_file(name)
            except CorruptObject as exc:
                self._error(name, f"{exc.problem}; {REPAIR_INDEX_HINT}")
                continue
            for pack_id, entries in packs.items():
                repo.index.add_pack(pack_id, entries)
                self.pack_entries.setdefault(pack_id, entries)
        stored_packs = {n.split("/")[-1]: size for n, size in repo.backend.list("data/")}
        self.report.packs = len(stored_packs)
        for pack_id in sorted(set(stored_packs) - set(repo.index.packs)):
            self.report.warnings.append(
                {"object": pack_name(pack_id),
                 "problem": "not in any index: left by an interrupted backup; the next backup "
                            "re-indexes it, prune removes it"})
        missing_packs = set(repo.index.packs) - set(stored_packs)
        # 2. snapshots and trees
        for sid in repo.list_snapshot_ids():
            try:
                snap = repo.load_snapshot(sid)
            except (CorruptObject, BackendError) as exc:
                self._error(f"snapshots/{sid}", getattr(exc, "problem", str(exc)))
                continue
            self.report.snapshots += 1
            packs = self._walk_tree(bytes.fromhex(snap["tree"]), sid, "/")
            for pack_id in packs:
                self.pack_users.setdefault(pack_id, set()).add(sid)
        for pack_id in sorted(missing_packs):
            self._error(pack_name(pack_id), "listed in the index but missing from storage",
                        self.pack_users.get(pack_id, ()))
        # a pack must at least hold the blobs the index places in it, plus a trailer
        for pack_id, entries in self.pack_entries.items():
            size = stored_packs.get(pack_id)
            if size is None or not entries:
                continue
            needed = max(e.offset + e.length for e in entries) + TRAILER_SIZE + crypto.OVERHEAD
            if size < needed:
                self._error(pack_name(pack_id), f"truncated: {size} bytes stored, the index "
                            f"places data up to byte {needed}", self.pack_users.get(pack_id, ()))
        # 3. data
        if read_data_fraction > 0:
            candidates = sorted(set(stored_packs) & set(self.pack_entries))
            if read_data_fraction < 1.0:
                rng = random.Random(seed)
                count = max(1, round(len(candidates) * read_data_fraction)) if candidates else 0
                candidates = sorted(rng.sample(candidates, count))
            for pack_id in candidates:
                self._read_pack(pack_id, stored_packs[pack_id])
        return self.report

    def _walk_tree(self, tree_id: bytes, sid: str, path: str) -> frozenset:
        """Packs needed by this tree (memoised: shared subtrees are read once)."""
        if tree_id in self._tree_packs:
            return self._tree_packs[tree_id]
        packs: set[str] = set()
        loc = self.repo.index.lookup(tree_id)
        if loc is None:
            self._error(f"tree {tree_id.hex()[:16]}", f"missing (needed for {path})", [sid])
            self._tree_packs[tree_id] = frozenset()
            return frozenset()
        packs.add(loc.pack)
        try:
            tree = self.repo.load_tree(tree_id)
        except (CorruptObject, BackendError) as exc:
            self._error(pack_name(loc.pack), f"tree for {path} unreadable: {exc}", [sid])
            self._tree_packs[tree_id] = frozenset(packs)
            return frozenset(packs)
        self.report.trees += 1
        for problem in name_problems(tree.get("nodes", [])):
            self._error(f"tree {tree_id.hex()[:16]}", f"{problem} (in {path}): restore refuses "
                        "this snapshot", [sid])
        for node in tree.get("nodes", []):
            name = node.get("name") or node.get("name_b64", "?")
            child = path.rstrip("/") + "/" + name
            if node.get("type") == "dir" and node.get("subtree"):
                packs |= self._walk_tree(bytes.fromhex(node["subtree"]), sid, child)
            for hex_id, role in blob_refs(node):
                bloc = self.repo.index.lookup(bytes.fromhex(hex_id))
                if bloc is None:
                    self._error(f"blob {hex_id[:16]}", f"missing ({role} {child})", [sid])
                    continue
                packs.add(bloc.pack)
                if bloc.type == BLOB_DELTA:
                    packs |= self._base_packs(bytes.fromhex(hex_id), child, sid)
        result = frozenset(packs)
        self._tree_packs[tree_id] = result
        return result

    def _base_packs(self, bid: bytes, path: str, sid: str) -> set[str]:
        """The pack of delta blob ``bid``'s base (read from the delta's head, once
        per delta); a base missing from the index is an error naming both."""
        if bid not in self._delta_base:
            try:
                self._delta_base[bid] = self.repo.delta_base_of(bid)
            except (CorruptObject, BackendError) as exc:
                self._delta_base[bid] = None
                self._error(f"blob {bid.hex()[:16]}", f"delta blob unreadable (part of {path}): "
                            f"{exc}", [sid])
        base = self._delta_base[bid]
        if base is None:
            return set()
        loc = self.repo.index.lookup(base)
        if loc is None:
            self._error(f"blob {base.hex()[:16]}", f"missing (delta base of blob {bid.hex()[:16]}, "
                        f"part of {path})", [sid])
            return set()
        return {loc.pack}

    def _read_pack(self, pack_id: str, size: int) -> None:
        name = pack_name(pack_id)
        users = self.pack_users.get(pack_id, ())
        try:
            data = self.repo.backend.get(name)
        except BackendError as exc:
            self._error(name, f"cannot be read: {exc}", users)
            return
        self.report.packs_read += 1
        self.report.bytes_read += len(data)
        if crypto.object_id(data) != pack_id:
            problem = "content does not match its name (damaged)"
            # say which blobs still decrypt, to tell header damage from blob damage
            bad = self._bad_blobs(data, pack_id)
            if bad:
                problem += f"; {len(bad)} blob(s) fail authentication"
            self._error(name, problem, users)
            return
        try:
            header = read_header(self.repo.keys, data, len(data))
        except crypto.DecryptError as exc:
            self._error(name, f"header unreadable ({exc})", users)
            return
        indexed = {e.id for e in self.pack_entries.get(pack_id, [])}
        if indexed - {e.id for e in header}:
            self._error(name, "index names blobs the pack header does not hold", users)
        bad = self._bad_blobs(data, pack_id, header)
        if bad:
            self._error(name, f"{len(bad)} blob(s) fail authentication", users)

    def _bad_blobs(self, data: bytes, pack_id: str, entries=None) -> list[bytes]:
        """Blobs of a pack that fail authentication or their id. A delta blob
        is checked through its base (which may live in another pack); an
        unreadable base is its own error naming both blobs."""
        from .pack import decrypt_blob
        entries = entries if entries is not None else self.pack_entries.get(pack_id, [])
        bad = []
        lost: dict[str, list[str]] = {}     # problem of a base -> its delta blobs here
        for e in entries:
            try:
                plain = decrypt_blob(self.repo.keys, e, data[e.offset:e.offset + e.length],
                                     self.repo.delta_base)
                if crypto.blob_id(self.repo.keys.id_key, plain) != e.id:
                    bad.append(e.id)
            except crypto.DecryptError:
                bad.append(e.id)
            except CorruptObject as exc:        # the base, not this pack: one error per base
                lost.setdefault(exc.problem, []).append(exc.name)
            self.report.blobs_read += 1
        for problem, deltas in lost.items():
            more = f" (and {len(deltas) - 1} more delta blob(s) in {pack_name(pack_id)})" \
                if len(deltas) > 1 else ""
            self._error(deltas[0], problem + more, self.pack_users.get(pack_id, ()))
        return bad

