"""Delta-compressed chunks for database streams (#24, docs/database-backup.md).

When one row in a hundred changes anywhere in a table, every ~1 MiB chunk of
its COPY stream holds a changed row and nothing deduplicates. So each new
chunk of a stream is offered to the writer as a delta against the chunk of
the same stream in the database's previous backup that started nearest the
same offset (content-defined boundaries mostly survive row updates; offsets
drift a little). ``BlobWriter.add_delta`` keeps the delta only when it is
clearly smaller. A file node whose chunks are deltas lists their base blobs
under ``"bases"`` so prune keeps them (docs/repository-format.md).
"""
from __future__ import annotations

from bisect import bisect_left

from ..backends import BackendError
from ..pack import BLOB_DELTA
from ..repository import CorruptObject, Repository
from .streams import find_files


class PreviousChunks:
    """One stream's chunks in the previous backup (start offsets and ids),
    and where today's stream stands against them while it is cut."""

    def __init__(self, starts: list[int], ids: list[bytes]):
        self.starts = starts
        self.ids = ids
        self._index = {bid: i for i, bid in enumerate(ids)}
        # today's offset minus the previous version's for the same content:
        # rows moved to the table's end make it grow along the stream, by a
        # chunk per 100 MiB at 1% changed, so offsets alone would pick the
        # neighbour of the right chunk deep into a big table
        self.drift = 0

    @classmethod
    def of(cls, repo: Repository, node: dict) -> "PreviousChunks | None":
        """From a file node (chunk sizes from the index); None when a chunk is unknown."""
        starts, ids, pos = [], [], 0
        for hex_id in node.get("content", ()):
            bid = bytes.fromhex(hex_id)
            loc = repo.index.lookup(bid)
            if loc is None:
                return None
            starts.append(pos)
            ids.append(bid)
            pos += loc.raw_length
        return cls(starts, ids) if ids else None

    def base_for(self, offset: int, bid: bytes) -> bytes | None:
        """The previous chunk to delta today's chunk ``bid`` at ``offset``
        against: the one starting nearest the same place (offset less the
        drift so far). None when ``bid`` is a previous chunk (unchanged)."""
        same = self._index.get(bid)
        if same is not None:
            self.drift = offset - self.starts[same]
            return None
        i = self.nearest(offset - self.drift)
        self.drift = offset - self.starts[i]
        return self.ids[i]

    def nearest(self, offset: int) -> int:
        """Index of the previous chunk whose start is nearest ``offset``."""
        i = bisect_left(self.starts, offset)
        if i == len(self.starts) or (i and offset - self.starts[i - 1] <= self.starts[i] - offset):
            i -= 1
        return i


class PreviousStreams:
    """The streams of a database's newest earlier logical backup, by path,
    and the base blobs each new file node needs."""

    def __init__(self, repo: Repository, writer, files: dict[str, dict]):
        self.repo = repo
        self.writer = writer
        self.files = files

    @classmethod
    def load(cls, repo: Repository, writer, kind: str, path: str, *, enabled: bool = True
             ) -> "PreviousStreams":
        """The newest snapshot of ``kind`` backing up exactly ``path``. No
        previous streams (so no deltas) when turned off, for a write-only key
        set (it cannot read a base) or when that snapshot cannot be read."""
        files: dict[str, dict] = {}
        if enabled and repo.keys.key_for("data") is not None:
            earlier = [s for s in repo.snapshots()
                       if s.get("kind") == kind and s.get("paths") == [path]]
            if earlier:
                try:
                    files = find_files(repo, earlier[-1])
                except (CorruptObject, BackendError):
                    files = {}      # check reports the damage; this backup stores in full
        return cls(repo, writer, files)

    def chunks(self, path: str) -> PreviousChunks | None:
        """The previous version of the stream stored at ``path``, if any."""
        node = self.files.get(path)
        return PreviousChunks.of(self.repo, node) if node else None

    def bases(self, path: str, ids: list[str]) -> list[str]:
        """Sorted hex ids of the base blobs the chunks ``ids`` of a file need.
        Call after ``writer.settle()``: new chunks are looked up in what the
        writer decided; an old chunk is a delta when the index says so, and
        its base is read from its head. (Prune keeps the base of any kept
        delta anyway; the list lets check and repair name what a file needs.)"""
        found: set[bytes] = set()
        for hex_id in set(ids):
            bid = bytes.fromhex(hex_id)
            base = self.writer.delta_bases.get(bid)
            if base is None and not self.writer.new(bid):
                base = self._stored_base(bid)
            if base is not None:
                found.add(base)
        return sorted(b.hex() for b in found)

    def _stored_base(self, bid: bytes) -> bytes | None:
        loc = self.repo.index.lookup(bid)
        if loc is None or loc.type != BLOB_DELTA or self.repo.keys.key_for("data") is None:
            return None      # a full blob; or write-only: cannot read a head
        try:
            return self.repo.delta_base_of(bid)
        except (CorruptObject, BackendError):
            return None      # damaged old blob: check reports it, as for any file
