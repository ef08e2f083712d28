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
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

ENVELOPE_MASTER = 0x01
ENVELOPE_SEALED = 0x02   # reserved for write-only key slots (issue 4)
CODEC_RAW = 0x00
CODEC_ZSTD = 0x01
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = 1 + NONCE_LEN + TAG_LEN

KDF_N, KDF_R, KDF_P = 2**15, 8, 1   # 32 MiB, ~0.1 s: memory-hard against GPU guessing (restic picks the same)


class DecryptError(Exception):
    """Authentication failed: wrong key, or the bytes were changed."""


@dataclass(frozen=True)
class MasterKeys:
    """The repository's master key set (see the format doc, section Keys)."""

    id_key: bytes
    data_key: bytes
    meta_key: bytes

    @classmethod
    def generate(cls) -> "MasterKeys":
        return cls(os.urandom(32), os.urandom(32), os.urandom(32))

    def to_json(self) -> bytes:
        return json.dumps({k: base64.b64encode(getattr(self, k)).decode()
                           for k in ("id_key", "data_key", "meta_key")}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "MasterKeys":
        data = json.loads(raw)
        return cls(*(base64.b64decode(data[k]) for k in ("id_key", "data_key", "meta_key")))


def blob_id(id_key: bytes, plaintext: bytes | memoryview) -> bytes:
    """Keyed BLAKE3-256 of a chunk: equal chunks, equal ids; ids leak no content."""
    return blake3.blake3(plaintext, key=id_key).digest()


def object_id(stored: bytes | memoryview) -> str:
    """Content id of a stored object: unkeyed BLAKE3-256 hex of its bytes."""
    return blake3.blake3(stored).hexdigest()


# --- compression -----------------------------------------------------------------
_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
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


def decompress(payload: bytes) -> bytes:
    if not payload:
        raise DecryptError("empty payload")
    codec = payload[0]
    if codec == CODEC_RAW:
        return payload[1:]
    if codec == CODEC_ZSTD:
        try:
            return _decompressor().decompress(payload[1:])
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
        raise DecryptError("sealed to a write-only public key; needs the offline restore key")
    if envelope[0] != ENVELOPE_MASTER:
        raise DecryptError(f"unknown envelope kind {envelope[0]}")
    try:
        return _aead(key).decrypt(envelope[1:1 + NONCE_LEN], envelope[1 + NONCE_LEN:], aad)
    except InvalidTag:
        raise DecryptError("authentication failed") from None


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
        "version": 1, "kind": "full",
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
