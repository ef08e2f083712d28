"""Pack files: many encrypted blobs and an encrypted header (format doc, Pack files)."""
from __future__ import annotations

import json
import struct
from typing import Callable, NamedTuple

from . import crypto

PACK_MAGIC = b"OPK1"
_TRAILER = struct.Struct("<I4s")
BLOB_DATA = "data"
BLOB_TREE = "tree"
# a data blob stored as a delta against another data blob (codec 2): its own
# type in pack headers and the index, so prune keeps its base without decrypting
# every data blob to find the deltas among them (docs/repository-format.md)
BLOB_DELTA = "delta"


class BlobEntry(NamedTuple):
    """Where one blob lives inside its pack (a tuple: cheap by the million)."""

    type: str
    id: bytes
    offset: int
    length: int
    raw_length: int


_AAD_PREFIX = {BLOB_DATA: b"opskit:data:", BLOB_TREE: b"opskit:tree:", BLOB_DELTA: b"opskit:delta:"}


def pack_kind(blob_type: str) -> str:
    """The kind of pack a blob goes into: deltas are file content, in data packs."""
    return BLOB_TREE if blob_type == BLOB_TREE else BLOB_DATA


def blob_aad(blob_type: str, bid: bytes) -> bytes:
    prefix = _AAD_PREFIX.get(blob_type) or b"opskit:" + blob_type.encode() + b":"
    return prefix + bid.hex().encode()


def encrypt_blob(keys: crypto.MasterKeys, blob_type: str, bid: bytes, plaintext, level: int) -> bytes:
    return encrypt_payload(keys, blob_type, bid, crypto.compress(plaintext, level))


def encrypt_payload(keys: crypto.MasterKeys, blob_type: str, bid: bytes, payload: bytes) -> bytes:
    """Encrypt an already compressed payload (codec byte first) as blob ``bid``."""
    return crypto.encrypt_role(keys, blob_type, payload, blob_aad(blob_type, bid))


def decrypt_payload(keys: crypto.MasterKeys, entry: BlobEntry, stored: bytes) -> bytes:
    """Authenticate and decrypt a stored blob: its payload, still compressed."""
    return crypto.decrypt_role(keys, entry.type, stored, blob_aad(entry.type, entry.id))


def decrypt_blob(keys: crypto.MasterKeys, entry: BlobEntry, stored: bytes,
                 read_base: Callable[[bytes, bytes], bytes] | None = None) -> bytes:
    """A stored blob's plaintext. A delta blob needs ``read_base(blob id, base
    id)`` giving its base's plaintext; without it, DecryptError."""
    payload = decrypt_payload(keys, entry, stored)
    base_id = crypto.delta_base(payload)
    base = read_base(entry.id, base_id) if base_id is not None and read_base else None
    return crypto.decompress(payload, base)


def encode_header(entries: list[BlobEntry]) -> bytes:
    """The pack header's JSON, ``{"v":1,"blobs":[[type,id,offset,length,raw],...]}``.
    Formatted directly (the same bytes ``json.dumps`` gives with compact
    separators, ~3x faster): types are known names, ids hex, the rest ints."""
    if any(e.type not in _PLAIN_TYPES for e in entries):
        return json.dumps({"v": 1, "blobs": [[e.type, e.id.hex(), e.offset, e.length,
                                              e.raw_length] for e in entries]},
                          separators=(",", ":")).encode()
    return ('{"v":1,"blobs":[' + ",".join([f'["{t}","{i.hex()}",{o},{n},{r}]'
                                           for t, i, o, n, r in entries]) + "]}").encode()


_PLAIN_TYPES = frozenset((BLOB_DATA, BLOB_TREE, BLOB_DELTA))


class PackBuilder:
    """Accumulates encrypted blobs in memory until the pack is big enough."""

    def __init__(self, kind: str):
        self.kind = kind
        self.parts: list[bytes] = []
        self.entries: list[BlobEntry] = []
        self.size = 0

    def add(self, blob_type: str, bid: bytes, stored: bytes, raw_length: int) -> None:
        self.entries.append(BlobEntry(blob_type, bid, self.size, len(stored), raw_length))
        self.parts.append(stored)
        self.size += len(stored)

    def finish(self, keys: crypto.MasterKeys) -> bytes:
        header = encode_header(self.entries)
        sealed = crypto.seal(keys.index_key, crypto.compress(header, 1), b"opskit:packheader")
        self.parts.append(sealed)
        self.parts.append(_TRAILER.pack(len(sealed), PACK_MAGIC))
        return b"".join(self.parts)


class SealingPackBuilder(PackBuilder):
    """Compresses and seals each blob straight into one buffer, and hands the
    pack out as a view of it: no envelope concatenation, no join of parts.
    ``buffer`` may be one a finished pack no longer needs (its view released)."""

    def __init__(self, kind: str, buffer: bytearray | None = None, capacity: int = 17 << 20):
        super().__init__(kind)
        self.buf = buffer if buffer is not None else bytearray(capacity)
        self._sealers: dict[str, tuple] = {}

    def seal(self, keys: crypto.MasterKeys, blob_type: str, bid: bytes, plaintext,
             level: int) -> int:
        """Add one blob; returns its stored length."""
        return self.seal_compressed(keys, blob_type, bid, crypto.compress(plaintext, level),
                                    len(plaintext))

    def seal_compressed(self, keys: crypto.MasterKeys, blob_type: str, bid: bytes,
                        payload: bytes, raw_length: int) -> int:
        """Add one blob already compressed (``crypto.compress``, e.g. on another
        thread); returns its stored length."""
        sealer = self._sealers.get(blob_type)
        if sealer is None:
            sealer = self._sealers[blob_type] = crypto.role_sealer(keys, blob_type)
        length = crypto.seal_into(sealer, payload, blob_aad(blob_type, bid), self.buf, self.size)
        self.entries.append(BlobEntry(blob_type, bid, self.size, length, raw_length))
        self.size += length
        return length

    def finish(self, keys: crypto.MasterKeys) -> memoryview:
        tail = super().finish(keys)         # header + trailer (the only parts)
        end = self.size + len(tail)
        if end > len(self.buf):
            self.buf.extend(bytes(end - len(self.buf)))
        self.buf[self.size:end] = tail
        return memoryview(self.buf)[:end]


def read_header(keys: crypto.MasterKeys, tail: bytes, pack_size: int) -> list[BlobEntry]:
    """Parse a pack header from the pack's last bytes (``tail`` may be the whole pack).

    Raises crypto.DecryptError when the trailer or header is damaged.
    """
    if len(tail) < _TRAILER.size:
        raise crypto.DecryptError("pack too short for a trailer")
    hlen, magic = _TRAILER.unpack(tail[-_TRAILER.size:])
    if magic != PACK_MAGIC:
        raise crypto.DecryptError("bad pack trailer magic")
    if hlen + _TRAILER.size > min(len(tail), pack_size):
        raise crypto.DecryptError(f"header length {hlen} beyond pack data")
    sealed = tail[-_TRAILER.size - hlen:-_TRAILER.size]
    header = json.loads(crypto.decompress(crypto.open_sealed(keys.index_key, sealed,
                                                             b"opskit:packheader")))
    return [BlobEntry(t, bytes.fromhex(i), o, n, r) for t, i, o, n, r in header["blobs"]]


def header_span(tail: bytes) -> int:
    """Bytes at the end of a pack taken by header + trailer (needs the trailer)."""
    hlen, _magic = _TRAILER.unpack(tail[-_TRAILER.size:])
    return hlen + _TRAILER.size


TRAILER_SIZE = _TRAILER.size
