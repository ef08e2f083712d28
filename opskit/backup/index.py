"""Index files and the in-memory master index (format doc, Index files).

The master index maps blob id -> (pack id, offset, length, raw length, type).
It is the only whole-repository structure kept in memory.
"""
from __future__ import annotations

import struct
import threading
from typing import Iterable, Iterator, NamedTuple

from . import crypto
from .pack import BLOB_DATA, BLOB_DELTA, BLOB_TREE, BlobEntry

INDEX_MAGIC = b"OPI1"
_HEAD = struct.Struct("<4sI")
_PACK = struct.Struct("<32sI")
_ENTRY = struct.Struct("<32sBIII")
_TYPES = {BLOB_DATA: 0, BLOB_TREE: 1, BLOB_DELTA: 2}
_NAMES = {0: BLOB_DATA, 1: BLOB_TREE, 2: BLOB_DELTA}


class Location(NamedTuple):
    pack: str          # pack id hex
    offset: int
    length: int
    raw_length: int
    type: str


def encode_entries(entries: Iterable[BlobEntry]) -> bytes:
    """One pack's entries in the index file's binary form; backup workers send
    their parent this (a struct pack each) instead of pickled tuples."""
    pack, types = _ENTRY.pack, _TYPES
    return b"".join([pack(e.id, types[e.type], e.offset, e.length, e.raw_length)
                     for e in entries])


def encode_index(packs: dict[str, list[BlobEntry] | bytes]) -> bytes:
    """Binary index plaintext for ``{pack_id_hex: [BlobEntry, ...] or encode_entries()}``."""
    out = [_HEAD.pack(INDEX_MAGIC, len(packs))]
    for pack_id, entries in packs.items():
        raw = entries if isinstance(entries, bytes) else encode_entries(entries)
        out.append(_PACK.pack(bytes.fromhex(pack_id), len(raw) // _ENTRY.size))
        out.append(raw)
    return b"".join(out)


def decode_index(raw: bytes) -> dict[str, list[BlobEntry]]:
    magic, count = _HEAD.unpack_from(raw, 0)
    if magic != INDEX_MAGIC:
        raise crypto.DecryptError("bad index magic")
    pos = _HEAD.size
    packs: dict[str, list[BlobEntry]] = {}
    for _ in range(count):
        pid, n = _PACK.unpack_from(raw, pos)
        pos += _PACK.size
        names = _NAMES
        entries = [BlobEntry(names[t], bid, off, length, raw_len)
                   for bid, t, off, length, raw_len in _ENTRY.iter_unpack(raw[pos:pos + n * _ENTRY.size])]
        pos += n * _ENTRY.size
        packs[pid.hex()] = entries
    return packs


class MasterIndex:
    """Union of all index files plus packs written by this process."""

    def __init__(self) -> None:
        self._blobs: dict[bytes, Location] = {}
        self.packs: dict[str, int] = {}       # pack id -> blob count (known packs)
        self._deferred: list[tuple[str, bytes]] = []    # add_pack_deferred, not merged yet
        self._lock = threading.Lock()

    def add_pack(self, pack_id: str, entries: Iterable[BlobEntry]) -> None:
        with self._lock:
            blobs = self._blobs
            n = 0
            for e in entries:
                if e.id not in blobs:
                    blobs[e.id] = Location(pack_id, e.offset, e.length, e.raw_length, e.type)
                n += 1
            self.packs[pack_id] = n

    def add_index_plaintext(self, raw: bytes) -> None:
        """Add every pack of one decrypted index file. Same result as
        ``add_pack`` over ``decode_index(raw)``, without the intermediate
        BlobEntry objects: opening a repository spends most of its time here."""
        magic, count = _HEAD.unpack_from(raw, 0)
        if magic != INDEX_MAGIC:
            raise crypto.DecryptError("bad index magic")
        pos = _HEAD.size
        with self._lock:
            for _ in range(count):
                pid, n = _PACK.unpack_from(raw, pos)
                pos += _PACK.size
                end = pos + n * _ENTRY.size
                if end > len(raw):
                    raise ValueError("index file truncated")
                self._add_encoded(pid.hex(), raw[pos:end])
                pos = end

    def add_pack_encoded(self, pack_id: str, raw: bytes) -> None:
        """``add_pack`` for entries in ``encode_entries`` form."""
        if len(raw) % _ENTRY.size:
            raise ValueError(f"pack {pack_id}: encoded entries of a bad length")
        with self._lock:
            self._add_encoded(pack_id, raw)

    def add_pack_deferred(self, pack_id: str, raw: bytes) -> None:
        """``add_pack_encoded``, merged only when a lookup misses (or on ``len``,
        ``items``). A backup's parent registers its workers' packs this way:
        their index files are written by the workers, so the parent pays for
        the merge only if something reads this index afterwards (#23)."""
        if len(raw) % _ENTRY.size:
            raise ValueError(f"pack {pack_id}: encoded entries of a bad length")
        with self._lock:
            self._deferred.append((pack_id, raw))
            self.packs[pack_id] = len(raw) // _ENTRY.size

    def settle(self) -> None:
        """Merge the deferred packs now (before a fork, so children share them)."""
        if not self._deferred:
            return
        with self._lock:
            deferred, self._deferred = self._deferred, []
            for pack_id, raw in deferred:
                self._add_encoded(pack_id, raw)

    def _add_encoded(self, pack: str, raw: bytes) -> None:
        blobs, make, names = self._blobs, tuple.__new__, _NAMES
        for bid, t, off, length, raw_len in _ENTRY.iter_unpack(raw):
            if bid not in blobs:
                blobs[bid] = make(Location, (pack, off, length, raw_len, names[t]))
        self.packs[pack] = len(raw) // _ENTRY.size

    def lookup(self, bid: bytes) -> Location | None:
        loc = self._blobs.get(bid)
        if loc is None and self._deferred:
            self.settle()
            loc = self._blobs.get(bid)
        return loc

    def __contains__(self, bid: bytes) -> bool:
        return bid in self._blobs or (bool(self._deferred) and self.lookup(bid) is not None)

    def __len__(self) -> int:
        self.settle()
        return len(self._blobs)

    def items(self) -> Iterator[tuple[bytes, Location]]:
        self.settle()
        return iter(list(self._blobs.items()))
