"""Keys, key slots, compression and the encrypted envelope (docs/repository-format.md).

R-BAK-1: everything is compressed, then AES-256-GCM encrypted before it is
stored. Blob ids are keyed BLAKE3, so they reveal nothing about content.
"""
from __future__ import annotations

import base64
import datetime as dt
import getpass
import json
import os
import socket
import threading
from dataclasses import dataclass

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

ENVELOPE_MASTER = 0x01
ENVELOPE_SEALED = 0x02   # reserved for write-only key slots (issue 4)
CODEC_RAW = 0x00
CODEC_ZSTD = 0x01
# a zstd frame compressed against another data blob's plaintext (its "base",
# a raw-content dictionary): codec || 32-byte base blob id || frame. Readers
# before this codec say "unknown codec 2" (docs/repository-format.md).
CODEC_ZSTD_DELTA = 0x02
DELTA_HEAD = 1 + 32
DELTA_LEVEL = 3             # level 1's fast strategy finds no matches in the base (measured)
MAX_WINDOW_LOG = 27         # 128 MiB: base and chunk together, far above the 4 MiB chunk limit
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = 1 + NONCE_LEN + TAG_LEN

KDF_N, KDF_R, KDF_P = 2**15, 8, 1   # 32 MiB, ~0.1 s: memory-hard against GPU guessing (restic picks the same)


class DecryptError(Exception):
    """Authentication failed: wrong key, or the bytes were changed."""


_KEY_FIELDS = ("id_key", "data_key", "meta_key", "index_key", "x25519_private")


@dataclass(frozen=True)
class MasterKeys:
    """The repository's key set (see the format doc, section Keys).

    A *full* set decrypts everything. A *write-only* set (``write_only``) has
    no ``data_key``, ``meta_key`` or ``x25519_private``: it can add data and
    snapshots, sealed to ``x25519_public``, but decrypt none of them.
    """

    id_key: bytes
    data_key: bytes | None
    meta_key: bytes | None
    index_key: bytes
    x25519_private: bytes | None
    x25519_public: bytes
    write_only: bool = False

    @classmethod
    def generate(cls) -> "MasterKeys":
        private = X25519PrivateKey.generate()
        return cls(os.urandom(32), os.urandom(32), os.urandom(32), os.urandom(32),
                   private.private_bytes_raw(), private.public_key().public_bytes_raw())

    def write_only_subset(self) -> "MasterKeys":
        """What a write-only backup host gets: enough to deduplicate and add."""
        return MasterKeys(self.id_key, None, None, self.index_key, None, self.x25519_public, True)

    def to_json(self) -> bytes:
        data = {"x25519_public": base64.b64encode(self.x25519_public).decode(),
                "write_only": self.write_only}
        for name in _KEY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                data[name] = base64.b64encode(value).decode()
        return json.dumps(data).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "MasterKeys":
        data = json.loads(raw)

        def get(name):
            return base64.b64decode(data[name]) if data.get(name) else None
        return cls(get("id_key"), get("data_key"), get("meta_key"), get("index_key"),
                   get("x25519_private"), get("x25519_public"), bool(data.get("write_only")))

    def key_for(self, role: str) -> bytes | None:
        """Symmetric key of a role: data, tree and snapshot are secret; index,
        config, lock and pack headers are readable by write-only hosts."""
        if role in ("data", "delta"):      # a delta blob is file content too
            return self.data_key
        if role in ("tree", "snapshot"):
            return self.meta_key
        return self.index_key


def blob_id(id_key: bytes, plaintext: bytes | memoryview) -> bytes:
    """Keyed BLAKE3-256 of a chunk: equal chunks, equal ids; ids leak no content."""
    return blake3.blake3(plaintext, key=id_key).digest()


def object_id(stored: bytes | memoryview) -> str:
    """Content id of a stored object: unkeyed BLAKE3-256 hex of its bytes."""
    return blake3.blake3(stored).hexdigest()


# --- compression -----------------------------------------------------------------
_local = threading.local()


# Level 1 (what backups use) with a 4096-entry match table instead of 16384 and
# matches of 6 bytes or more: measured ~10% faster than zstd's own level 1 on
# the benchmark data (database pages, CSV exports, PDFs) for 0.1% more bytes.
# Any zstd decoder reads it; only the encoder's search changes.
_LEVEL_1_TUNED = dict(window_log=18, hash_log=12, chain_log=13, search_log=1, min_match=6,
                      target_length=0, strategy=zstandard.STRATEGY_FAST, write_content_size=1)


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        if level == 1:
            comp = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(
                **_LEVEL_1_TUNED))
        else:
            comp = zstandard.ZstdCompressor(level=level, write_content_size=True)
        cache[level] = comp
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def compress(data: bytes | memoryview, level: int) -> bytes:
    """codec byte + payload; stored raw when zstd does not save at least 3%."""
    packed = _compressor(level).compress(data)
    if len(packed) >= len(data) * 0.97:
        return bytes([CODEC_RAW]) + bytes(data)
    return bytes([CODEC_ZSTD]) + packed


def _window_log(size: int) -> int:
    """Smallest zstd window (log2) spanning ``size`` bytes: base + chunk, so
    any match anywhere in the base is allowed."""
    return min(MAX_WINDOW_LOG, max(10, (size - 1).bit_length()))


def compress_delta(data: bytes | memoryview, base_id: bytes, base: bytes) -> bytes:
    """CODEC_ZSTD_DELTA payload of ``data`` against the plaintext ``base`` of
    blob ``base_id`` (a full blob: deltas never chain)."""
    window_log = _window_log(len(base) + len(data))
    # level 3's 2^17-entry match table forgets most of a MiB-sized base: one
    # entry per ~8 bytes of base + chunk finds it all (a 2.5 MiB chunk: 4 KiB
    # delta instead of 1 MiB, 20 ms; measured, benchmarks/RESULTS.md #24)
    params = zstandard.ZstdCompressionParameters.from_level(
        DELTA_LEVEL, window_log=window_log, hash_log=min(25, max(17, window_log - 3)),
        write_content_size=1, write_checksum=1)   # checksum: a wrong base fails, no garbage
    dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    frame = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress(data)
    return bytes([CODEC_ZSTD_DELTA]) + base_id + frame


def delta_base(payload: bytes) -> bytes | None:
    """The base blob id a payload is a delta against; None for a full payload."""
    if payload[:1] == bytes([CODEC_ZSTD_DELTA]) and len(payload) > DELTA_HEAD:
        return bytes(payload[1:DELTA_HEAD])
    return None


def decompress(payload: bytes, base: bytes | None = None) -> bytes:
    """The plaintext of a payload; a delta payload needs its base's plaintext."""
    if not payload:
        raise DecryptError("empty payload")
    codec = payload[0]
    if codec == CODEC_RAW:
        return payload[1:]
    try:
        if codec == CODEC_ZSTD:
            return _decompressor().decompress(payload[1:])
        if codec == CODEC_ZSTD_DELTA:
            if base is None or len(payload) <= DELTA_HEAD:
                raise DecryptError("delta blob read without its base blob")
            dictionary = zstandard.ZstdCompressionDict(base,
                                                       dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            return zstandard.ZstdDecompressor(dict_data=dictionary,
                                              max_window_size=1 << MAX_WINDOW_LOG
                                              ).decompress(payload[DELTA_HEAD:])
    except zstandard.ZstdError as exc:
        raise DecryptError(f"bad compressed data: {exc}") from None
    raise DecryptError(f"unknown codec {codec}")


# --- envelope --------------------------------------------------------------------
def _aead(key: bytes) -> AESGCM:
    cache = getattr(_local, "aead", None)
    if cache is None:
        cache = _local.aead = {}
    aead = cache.get(key)
    if aead is None:
        aead = cache[key] = AESGCM(key)
    return aead


def _nonce() -> bytes:
    """A fresh random 96-bit nonce. Drawn from the OS in blocks of 4 KiB:
    one getrandom() per 341 blobs instead of one per blob."""
    pool = getattr(_local, "nonces", None)
    if not pool:
        pool = _local.nonces = [os.urandom(NONCE_LEN * 341)]
        _local.nonce_pos = 0
    pos = _local.nonce_pos
    block = pool[0]
    if pos + NONCE_LEN > len(block):
        block = pool[0] = os.urandom(NONCE_LEN * 341)
        pos = 0
    _local.nonce_pos = pos + NONCE_LEN
    return block[pos:pos + NONCE_LEN]


def reset_nonce_pool() -> None:
    """Forget buffered nonces: a forked child must never reuse its parent's."""
    _local.nonces = None


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt into a master-key envelope: kind || nonce || AES-256-GCM(ct||tag)."""
    nonce = _nonce()
    return bytes([ENVELOPE_MASTER]) + nonce + _aead(key).encrypt(nonce, plaintext, aad)


os.register_at_fork(after_in_child=reset_nonce_pool)


def open_sealed(key: bytes, envelope: bytes | memoryview, aad: bytes) -> bytes:
    """Decrypt an envelope; DecryptError when the key is wrong or bytes changed."""
    envelope = bytes(envelope)
    if len(envelope) < OVERHEAD:
        raise DecryptError("too short")
    if envelope[0] == ENVELOPE_SEALED:
        raise DecryptError("sealed by a write-only host: needs the repository's private key")
    if envelope[0] != ENVELOPE_MASTER:
        raise DecryptError(f"unknown envelope kind {envelope[0]}")
    try:
        return _aead(key).decrypt(envelope[1:1 + NONCE_LEN], envelope[1 + NONCE_LEN:], aad)
    except InvalidTag:
        raise DecryptError("authentication failed") from None


# --- sealed envelopes (write-only hosts) ---------------------------------------------
SEALED_HEAD = 1 + 32 + NONCE_LEN


def _sealed_key(shared: bytes, eph_public: bytes, repo_public: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"opskit-sealed-v1" + eph_public + repo_public).derive(shared)


class _SealSession:
    """One ephemeral X25519 key per process: one key exchange, many blobs."""

    def __init__(self, repo_public: bytes):
        eph = X25519PrivateKey.generate()
        self.eph_public = eph.public_key().public_bytes_raw()
        shared = eph.exchange(X25519PublicKey.from_public_bytes(repo_public))
        self.key = _sealed_key(shared, self.eph_public, repo_public)


_sessions: dict[bytes, _SealSession] = {}


def _seal_session(repo_public: bytes) -> _SealSession:
    session = _sessions.get(repo_public)
    if session is None:
        session = _sessions[repo_public] = _SealSession(repo_public)
    return session


def seal_to(repo_public: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt so that only the holder of the repository's X25519 private key
    can read it: 0x02 || ephemeral public || nonce || AES-256-GCM."""
    session = _seal_session(repo_public)
    nonce = _nonce()
    return (bytes([ENVELOPE_SEALED]) + session.eph_public + nonce
            + _aead(session.key).encrypt(nonce, plaintext, aad))


_unsealed: dict[tuple[bytes, bytes], bytes] = {}


def open_sealed_to(keys: "MasterKeys", envelope: bytes, aad: bytes) -> bytes:
    if keys.x25519_private is None:
        raise DecryptError("this is a write-only key: it cannot decrypt backed-up data "
                           "(use the restore key)")
    if len(envelope) < SEALED_HEAD + TAG_LEN:
        raise DecryptError("too short")
    eph_public = bytes(envelope[1:33])
    cache_key = (keys.x25519_private, eph_public)
    key = _unsealed.get(cache_key)
    if key is None:
        priv = X25519PrivateKey.from_private_bytes(keys.x25519_private)
        shared = priv.exchange(X25519PublicKey.from_public_bytes(eph_public))
        key = _unsealed[cache_key] = _sealed_key(shared, eph_public, keys.x25519_public)
    try:
        return _aead(key).decrypt(bytes(envelope[33:SEALED_HEAD]), bytes(envelope[SEALED_HEAD:]), aad)
    except InvalidTag:
        raise DecryptError("authentication failed") from None


def encrypt_role(keys: "MasterKeys", role: str, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt for a role: write-only key sets seal data, trees and snapshots
    to the repository's public key; everything else uses symmetric keys."""
    key = keys.key_for(role)
    if key is None:
        return seal_to(keys.x25519_public, plaintext, aad)
    return seal(key, plaintext, aad)


def role_sealer(keys: "MasterKeys", role: str) -> tuple[bytes, AESGCM]:
    """(envelope bytes before the nonce, cipher) sealing ``role`` the way
    ``encrypt_role`` does; for ``seal_into``, looked up once per pack."""
    key = keys.key_for(role)
    if key is None:
        session = _seal_session(keys.x25519_public)
        return bytes([ENVELOPE_SEALED]) + session.eph_public, _aead(session.key)
    return bytes([ENVELOPE_MASTER]), _aead(key)


def seal_into(sealer: tuple[bytes, AESGCM], plaintext, aad: bytes, out: bytearray,
              pos: int) -> int:
    """The envelope ``encrypt_role`` makes, written into ``out`` at ``pos``
    (grown when short) with no intermediate copies; returns its length."""
    prefix, aead = sealer
    nonce = _nonce()
    start = pos + len(prefix) + NONCE_LEN
    end = start + len(plaintext) + TAG_LEN
    if end > len(out):
        out.extend(bytes(max(end - len(out), len(out) // 2)))
    out[pos:start] = prefix + nonce
    aead.encrypt_into(nonce, plaintext, aad, memoryview(out)[start:end])
    return end - pos


def decrypt_role(keys: "MasterKeys", role: str, envelope, aad: bytes) -> bytes:
    envelope = bytes(envelope)
    if envelope[:1] == bytes([ENVELOPE_SEALED]):
        return open_sealed_to(keys, envelope, aad)
    key = keys.key_for(role)
    if key is None:
        raise DecryptError("this is a write-only key: it cannot decrypt backed-up data "
                           "(use the restore key)")
    return open_sealed(key, envelope, aad)


def seal_compressed(key: bytes, plaintext: bytes, aad: bytes, level: int = 3) -> bytes:
    return seal(key, compress(plaintext, level), aad)


def open_compressed(key: bytes, envelope: bytes, aad: bytes) -> bytes:
    return decompress(open_sealed(key, envelope, aad))


# --- key slots -------------------------------------------------------------------
_KEY_AAD = b"opskit-key-v1"


def _kek(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def make_key_slot(master: MasterKeys, passphrase: bytes, *, n: int = KDF_N, r: int = KDF_R,
                  p: int = KDF_P) -> bytes:
    """A ``keys/<id>`` object: the master set wrapped by scrypt(passphrase)."""
    salt = os.urandom(16)
    kek = _kek(passphrase, salt, n, r, p)
    nonce = os.urandom(NONCE_LEN)
    wrapped = nonce + AESGCM(kek).encrypt(nonce, master.to_json(), _KEY_AAD)
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.geteuid())
    slot = {
        "version": 1, "kind": "write-only" if master.write_only else "full",
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": socket.gethostname(), "user": user,
        "kdf": {"name": "scrypt", "n": n, "r": r, "p": p, "salt": base64.b64encode(salt).decode()},
        "wrapped": base64.b64encode(wrapped).decode(),
    }
    return json.dumps(slot, indent=1).encode()


def open_key_slot(raw: bytes, passphrase: bytes) -> MasterKeys:
    """Unwrap a key slot; DecryptError when the passphrase does not fit."""
    try:
        slot = json.loads(raw)
        kdf = slot["kdf"]
        if kdf.get("name") != "scrypt":
            raise DecryptError(f"unsupported KDF {kdf.get('name')!r}")
        kek = _kek(passphrase, base64.b64decode(kdf["salt"]), int(kdf["n"]), int(kdf["r"]),
                   int(kdf["p"]))
        wrapped = base64.b64decode(slot["wrapped"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DecryptError(f"malformed key slot: {exc}") from None
    try:
        plain = AESGCM(kek).decrypt(wrapped[:NONCE_LEN], wrapped[NONCE_LEN:], _KEY_AAD)
    except InvalidTag:
        raise DecryptError("wrong passphrase") from None
    return MasterKeys.from_json(plain)
