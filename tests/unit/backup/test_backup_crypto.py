"""Envelope, compression and key slots (format doc, Keys / Encrypted envelope)."""
from __future__ import annotations

import base64
import json
import os

import pytest

from opskit.backup import crypto
from opskit.backup.crypto import DecryptError, MasterKeys

KEY = bytes(range(32))
AAD = b"opskit:snapshot"


def test_envelope_round_trip_and_layout():
    env = crypto.seal(KEY, b"hello", AAD)
    assert env[0] == crypto.ENVELOPE_MASTER
    assert len(env) == crypto.OVERHEAD + len(b"hello")
    assert crypto.open_sealed(KEY, env, AAD) == b"hello"
    assert crypto.open_sealed(KEY, memoryview(env), AAD) == b"hello"
    # random nonces: sealing twice never gives the same bytes
    assert crypto.seal(KEY, b"hello", AAD) != env


@pytest.mark.parametrize("position", range(0, 1 + 12 + 5 + 16))
def test_any_flipped_byte_is_detected(position):
    env = bytearray(crypto.seal(KEY, b"hello", AAD))
    env[position] ^= 0x80
    with pytest.raises(DecryptError):
        crypto.open_sealed(KEY, bytes(env), AAD)


def test_wrong_key_wrong_aad_truncation_and_unknown_kind_are_refused():
    env = crypto.seal(KEY, b"payload", AAD)
    with pytest.raises(DecryptError):
        crypto.open_sealed(os.urandom(32), env, AAD)
    with pytest.raises(DecryptError):                    # a snapshot cannot pose as an index
        crypto.open_sealed(KEY, env, b"opskit:index")
    with pytest.raises(DecryptError):
        crypto.open_sealed(KEY, env[:-1], AAD)
    with pytest.raises(DecryptError):
        crypto.open_sealed(KEY, env[:crypto.OVERHEAD - 1], AAD)
    with pytest.raises(DecryptError, match="write-only"):
        crypto.open_sealed(KEY, bytes([crypto.ENVELOPE_SEALED]) + env[1:], AAD)
    with pytest.raises(DecryptError, match="unknown envelope kind"):
        crypto.open_sealed(KEY, bytes([7]) + env[1:], AAD)


def test_compression_codec_byte():
    text = b"compress me " * 1000
    packed = crypto.compress(text, 3)
    assert packed[0] == crypto.CODEC_ZSTD and len(packed) < len(text) // 10
    assert crypto.decompress(packed) == text
    noise = os.urandom(10_000)
    raw = crypto.compress(noise, 3)                      # incompressible: stored raw
    assert raw == bytes([crypto.CODEC_RAW]) + noise
    assert crypto.decompress(raw) == noise
    assert crypto.decompress(crypto.compress(b"", 3)) == b""
    with pytest.raises(DecryptError):
        crypto.decompress(b"")
    with pytest.raises(DecryptError):
        crypto.decompress(b"\x09abc")
    with pytest.raises(DecryptError):
        crypto.decompress(bytes([crypto.CODEC_ZSTD]) + b"not a zstd frame")


def test_compressed_envelope_round_trip():
    data = b'{"nodes": []}' * 50
    env = crypto.seal_compressed(KEY, data, AAD)
    assert crypto.open_compressed(KEY, env, AAD) == data
    assert data not in env


def test_ids():
    keys = MasterKeys.generate()
    a = crypto.blob_id(keys.id_key, b"chunk")
    assert len(a) == 32
    assert a == crypto.blob_id(keys.id_key, memoryview(b"chunk"))
    assert a != crypto.blob_id(MasterKeys.generate().id_key, b"chunk")   # keyed
    assert a != crypto.blob_id(keys.id_key, b"chunk2")
    import blake3
    assert crypto.object_id(b"stored") == blake3.blake3(b"stored").hexdigest()
    assert len(crypto.object_id(b"")) == 64


def test_master_keys_json_round_trip():
    keys = MasterKeys.generate()
    assert MasterKeys.from_json(keys.to_json()) == keys
    assert len({keys.id_key, keys.data_key, keys.meta_key}) == 3


def test_key_slot_opens_with_the_passphrase_only():
    keys = MasterKeys.generate()
    slot = crypto.make_key_slot(keys, b"secret", n=2 ** 10)
    data = json.loads(slot)
    assert data["kind"] == "full" and data["kdf"]["name"] == "scrypt" and data["kdf"]["n"] == 2 ** 10
    assert len(base64.b64decode(data["kdf"]["salt"])) == 16
    # nothing of the master keys is visible in the slot
    for k in (keys.id_key, keys.data_key, keys.meta_key):
        assert base64.b64encode(k) not in slot and k not in slot
    assert crypto.open_key_slot(slot, b"secret") == keys
    with pytest.raises(DecryptError, match="wrong passphrase"):
        crypto.open_key_slot(slot, b"Secret")


def test_damaged_key_slots_raise_decrypt_error():
    slot = json.loads(crypto.make_key_slot(MasterKeys.generate(), b"pw", n=2 ** 10))
    for bad in (b"not json", json.dumps({**slot, "kdf": {**slot["kdf"], "name": "argon2"}}).encode(),
                json.dumps({k: v for k, v in slot.items() if k != "wrapped"}).encode()):
        with pytest.raises(DecryptError):
            crypto.open_key_slot(bad, b"pw")
    wrapped = bytearray(base64.b64decode(slot["wrapped"]))
    wrapped[20] ^= 1
    damaged = json.dumps({**slot, "wrapped": base64.b64encode(wrapped).decode()}).encode()
    with pytest.raises(DecryptError):
        crypto.open_key_slot(damaged, b"pw")


@pytest.mark.parametrize("write_only", [False, True])
def test_sealing_pack_builder_makes_the_same_pack_format(write_only):
    """Workers seal blobs straight into one buffer (R-BAK-1 unchanged): the
    pack parses, every blob decrypts to its plaintext, and a blob bigger than
    the buffer grows it instead of being cut."""
    from opskit.backup.pack import (BLOB_DATA, SealingPackBuilder, decrypt_blob, read_header)

    keys = MasterKeys.generate()
    writer = keys.write_only_subset() if write_only else keys
    blobs = [os.urandom(5000), b"text " * 4000, os.urandom(300_000)]
    builder = SealingPackBuilder(BLOB_DATA, capacity=64 << 10)
    for i, blob in enumerate(blobs):
        builder.seal(writer, BLOB_DATA, crypto.blob_id(keys.id_key, blob), blob, 1)
    pack = bytes(builder.finish(writer))
    entries = read_header(keys, pack, len(pack))
    assert [e.raw_length for e in entries] == [len(b) for b in blobs]
    for entry, blob in zip(entries, blobs):
        stored = pack[entry.offset:entry.offset + entry.length]
        assert stored[0] == (crypto.ENVELOPE_SEALED if write_only else crypto.ENVELOPE_MASTER)
        assert decrypt_blob(keys, entry, stored) == blob
    again = SealingPackBuilder(BLOB_DATA, builder.buf)                 # reused buffer
    again.seal(writer, BLOB_DATA, crypto.blob_id(keys.id_key, b"x"), b"x", 1)
    second = bytes(again.finish(writer))
    (entry,) = read_header(keys, second, len(second))
    assert decrypt_blob(keys, entry, second[entry.offset:entry.offset + entry.length]) == b"x"
