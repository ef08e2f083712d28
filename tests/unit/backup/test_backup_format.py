"""Pack files, index files and tree blobs (format doc: Pack files, Index files, Trees)."""
from __future__ import annotations

import json
import os
import struct
import types

import pytest

from opskit.backup import crypto
from opskit.backup.index import MasterIndex, decode_index, encode_index
from opskit.backup.pack import (BLOB_DATA, BLOB_TREE, PACK_MAGIC, BlobEntry, PackBuilder,
                                decrypt_blob, encrypt_blob, header_span, read_header)
from opskit.backup.tree import (IdNames, UnsafeName, decode_name, encode_name, encode_node,
                                encode_tree, join_tree, node_from_stat, safe_name, unchanged)

KEYS = crypto.MasterKeys.generate()


def _pack(blobs: list[tuple[str, bytes]]) -> tuple[bytes, list[BlobEntry]]:
    kind = blobs[0][0]
    builder = PackBuilder(kind)
    for blob_type, plain in blobs:
        bid = crypto.blob_id(KEYS.id_key, plain)
        builder.add(blob_type, bid, encrypt_blob(KEYS, blob_type, bid, plain, 3), len(plain))
    return builder.finish(KEYS), builder.entries


def test_pack_layout_and_header_round_trip():
    plains = [os.urandom(1000), b"compressible " * 500, b"", b"x"]
    data, entries = _pack([(BLOB_DATA, p) for p in plains])
    assert data.endswith(PACK_MAGIC)
    hlen = struct.unpack("<I", data[-8:-4])[0]
    assert header_span(data) == hlen + 8
    assert entries[-1].offset + entries[-1].length + hlen + 8 == len(data)
    header = read_header(KEYS, data, len(data))
    assert header == entries
    for e, plain in zip(header, plains):
        assert e.raw_length == len(plain)
        assert decrypt_blob(KEYS, e, data[e.offset:e.offset + e.length]) == plain
    # the header can be read from the pack's tail alone
    tail = data[-header_span(data):]
    assert read_header(KEYS, tail, len(data)) == entries
    # nothing in the pack reveals the plaintext
    assert b"compressible" not in data


def test_blob_aad_binds_type_and_id():
    plain = b"tree json"
    bid = crypto.blob_id(KEYS.id_key, plain)
    stored = encrypt_blob(KEYS, BLOB_TREE, bid, plain, 3)
    good = BlobEntry(BLOB_TREE, bid, 0, len(stored), len(plain))
    assert decrypt_blob(KEYS, good, stored) == plain
    with pytest.raises(crypto.DecryptError):       # same bytes claimed as another blob
        decrypt_blob(KEYS, BlobEntry(BLOB_TREE, os.urandom(32), 0, len(stored), 9), stored)
    with pytest.raises(crypto.DecryptError):       # a tree blob claimed as data (other key too)
        decrypt_blob(KEYS, BlobEntry(BLOB_DATA, bid, 0, len(stored), 9), stored)


@pytest.mark.parametrize("where", ["magic", "length", "header", "too-short"])
def test_damaged_pack_header_is_detected(where):
    data, _ = _pack([(BLOB_DATA, os.urandom(100))])
    data = bytearray(data)
    if where == "magic":
        data[-1] ^= 1
    elif where == "length":
        data[-8:-4] = struct.pack("<I", len(data) * 2)
    elif where == "header":
        data[-20] ^= 1
    else:
        data = data[:5]
    with pytest.raises(crypto.DecryptError):
        read_header(KEYS, bytes(data), len(data))


def test_index_encode_decode_round_trip():
    packs = {}
    for p in range(3):
        packs[os.urandom(32).hex()] = [
            BlobEntry(BLOB_DATA if i % 3 else BLOB_TREE, os.urandom(32), i * 1000, 999 + i,
                      2 ** 32 - 1 - i) for i in range(p * 5)]
    raw = encode_index(packs)
    assert raw[:4] == b"OPI1"
    assert struct.unpack_from("<I", raw, 4)[0] == 3
    assert decode_index(raw) == packs
    assert decode_index(encode_index({})) == {}
    with pytest.raises(crypto.DecryptError):
        decode_index(b"OPIX" + raw[4:])


def test_master_index_union_and_first_location_wins():
    idx = MasterIndex()
    bid = os.urandom(32)
    idx.add_pack("aa" * 32, [BlobEntry(BLOB_DATA, bid, 0, 10, 5)])
    idx.add_pack("bb" * 32, [BlobEntry(BLOB_DATA, bid, 7, 10, 5),
                             BlobEntry(BLOB_TREE, b"\1" * 32, 17, 3, 2)])
    assert bid in idx and len(idx) == 2
    assert idx.lookup(bid).pack == "aa" * 32        # a blob in two packs: either serves
    assert idx.lookup(b"\1" * 32).type == BLOB_TREE
    assert idx.lookup(b"\2" * 32) is None
    assert idx.packs == {"aa" * 32: 1, "bb" * 32: 2}


# --- trees ---------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"plain", "\u00e9\u65e5\U0001f600".encode(), b"\xff\xfe", b"a\nb",
                                 b"\xc3", b"ok\xe9"])
def test_name_encoding_round_trip(raw):
    node: dict = {}
    encode_name(node, "name", raw)
    try:
        raw.decode("utf-8")
        assert node == {"name": raw.decode("utf-8")}
    except UnicodeDecodeError:
        assert set(node) == {"name_b64"}
    assert decode_name(json.loads(json.dumps(node))) == raw
    node2: dict = {}
    encode_name(node2, "target", raw)
    assert decode_name(node2, "target") == raw


@pytest.mark.parametrize("bad", [b"", b".", b"..", b"../x", b"/abs", b"a/b", b"x\0y", b"/"])
def test_unsafe_names_are_refused(bad):
    node: dict = {}
    encode_name(node, "name", bad)
    with pytest.raises(UnsafeName):
        safe_name(node)


@pytest.mark.parametrize("good", [b"...", b"..x", b".hidden", b"\xff", b"a\\b", b" "])
def test_unusual_but_safe_names_are_accepted(good):
    node: dict = {}
    encode_name(node, "name", good)
    assert safe_name(node) == good


def test_node_without_name_is_refused():
    with pytest.raises(UnsafeName):
        safe_name({"type": "file"})


def test_trees_sort_by_raw_bytes_and_are_deterministic():
    names = [b"b", b"\xff", b"a", "\u00e9".encode(), b"B", b"a b"]
    nodes = []
    for n in names:
        node: dict = {"type": "file"}
        encode_name(node, "name", n)
        nodes.append(node)
    raw = encode_tree(list(nodes))
    order = [decode_name(n) for n in json.loads(raw)["nodes"]]
    assert order == sorted(names)
    assert encode_tree(list(reversed(nodes))) == raw


def test_node_from_stat_and_unchanged(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    st = os.lstat(path)
    node = node_from_stat(b"f", st, IdNames())
    assert node["type"] == "file" and node["size"] == 5 and node["mtime_ns"] == st.st_mtime_ns
    assert node["mode"] == st.st_mode and node["inode"] == st.st_ino
    node["content"] = ["00" * 32]
    assert unchanged(node, st)
    assert not unchanged(None, st)
    assert not unchanged({k: v for k, v in node.items() if k != "content"}, st)
    for field, attr in (("size", "st_size"), ("mtime_ns", "st_mtime_ns"), ("ctime_ns", "st_ctime_ns"),
                        ("inode", "st_ino")):
        fake = types.SimpleNamespace(**{a: getattr(st, a) for a in
                                        ("st_size", "st_mtime_ns", "st_ctime_ns", "st_ino")})
        setattr(fake, attr, getattr(st, attr) + 1)
        assert not unchanged(node, fake), field
    os.symlink("f", tmp_path / "l")
    link = node_from_stat(b"l", os.lstat(tmp_path / "l"), IdNames())
    assert link["type"] == "symlink" and "size" not in link
    assert node_from_stat(b"d", os.lstat(tmp_path), IdNames())["type"] == "dir"


def test_tree_joined_from_nodes_encoded_one_by_one_is_byte_identical():
    """Workers send a split directory's nodes encoded (#23): the joined tree must
    be encode_tree's bytes, or an unchanged directory would get a new tree id."""
    nodes = [{"type": "file", "size": 3, "content": ["ab" * 32], "xattrs": {"user.k": "dg=="}},
             {"type": "symlink", "target": "\u00e9\u65e5"}, {"type": "fifo", "mode": 4480}]
    for node, name in zip(nodes, [b"z", "\u00e9".encode(), b"\xff-odd"]):
        encode_name(node, "name", name)
    whole = encode_tree([dict(n) for n in nodes])
    parts = [encode_node(n) for n in reversed(nodes)]
    assert join_tree(parts) == whole
    assert join_tree(parts[1:]) != whole                # a node short is another tree
    assert join_tree([]) == encode_tree([])


def test_deferred_packs_are_found_once_looked_up():
    """A backup's parent registers its workers' packs without merging them
    (#23); every question the index answers must still see them."""
    from opskit.backup.index import encode_entries
    a = [BlobEntry(BLOB_DATA, os.urandom(32), i * 100, 100, 300) for i in range(4)]
    idx = MasterIndex()
    idx.add_pack("aa" * 32, a[:1])
    idx.add_pack_deferred("bb" * 32, encode_entries(a))
    assert idx.packs == {"aa" * 32: 1, "bb" * 32: 4}
    assert idx.lookup(a[0].id).pack == "aa" * 32        # the first location still wins
    assert a[3].id in idx and idx.lookup(a[2].id).pack == "bb" * 32
    assert os.urandom(32) not in idx and len(idx) == 4
    late = MasterIndex()
    late.add_pack_deferred("cc" * 32, encode_entries(a))
    assert dict(late.items()).keys() == {e.id for e in a}
    with pytest.raises(ValueError, match="bad length"):
        late.add_pack_deferred("dd" * 32, encode_entries(a)[:-1])


def test_entries_encoded_by_workers_index_and_write_like_entry_lists():
    """Workers hand their parent each pack's entries in the index's binary form:
    indexing them and writing the index file give what the entry lists give."""
    from opskit.backup.index import encode_entries

    def entries(n, kind):
        return [BlobEntry(kind, os.urandom(32), i * 100, 100, 300 + i) for i in range(n)]

    a, b = entries(5, BLOB_DATA), entries(3, BLOB_TREE)
    mixed = {"aa" * 32: encode_entries(a), "bb" * 32: b}
    assert decode_index(encode_index(mixed)) == {"aa" * 32: a, "bb" * 32: b}
    by_lists, by_bytes = MasterIndex(), MasterIndex()
    by_lists.add_pack("aa" * 32, a)
    by_bytes.add_pack_encoded("aa" * 32, encode_entries(a))
    assert sorted(by_lists.items()) == sorted(by_bytes.items())
    assert by_bytes.packs == {"aa" * 32: 5}
    with pytest.raises(ValueError, match="bad length"):
        by_bytes.add_pack_encoded("cc" * 32, encode_entries(a)[:-1])


def test_pack_header_is_the_json_it_always_was():
    from opskit.backup.pack import encode_header

    entries = [BlobEntry(BLOB_DATA if i % 3 else BLOB_TREE, os.urandom(32), i * 77, 77, 2 ** 31 + i)
               for i in range(50)]
    expected = json.dumps({"v": 1, "blobs": [[e.type, e.id.hex(), e.offset, e.length, e.raw_length]
                                             for e in entries]}, separators=(",", ":")).encode()
    assert encode_header(entries) == expected
    odd = [BlobEntry('we"ird', b"\x01" * 32, 0, 1, 1)]
    assert json.loads(encode_header(odd))["blobs"][0][0] == 'we"ird'
    assert encode_header([]) == b'{"v":1,"blobs":[]}'
