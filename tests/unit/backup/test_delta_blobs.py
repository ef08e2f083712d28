"""Delta-compressed data blobs (#24 day 3): codec 2 (docs/repository-format.md),
the writer keeping a delta only when clearly smaller and never chaining one,
reads rebuilding it from its base, and a missing or damaged base named."""
from __future__ import annotations

import os
import random

import pytest

from opskit.backup import crypto
from opskit.backup.crypto import DecryptError
from opskit.backup.db.deltas import PreviousChunks, PreviousStreams
from opskit.backup.db.streams import TreeBuilder, save_snapshot
from opskit.backup import prune
from opskit.backup.checker import Checker
from opskit.backup.pack import BLOB_DATA, BLOB_DELTA
from opskit.backup.repository import CorruptObject, pack_name
from tests.harness.backup import engine_repo, file_node, open_repo, put_tree, save_crafted_snapshot


def rows(seed: int = 1, n: int = 6000, changed: float = 0.0) -> bytes:
    """COPY-like text; ``changed`` of the rows (anywhere) get another value."""
    rng, edit = random.Random(seed), random.Random(seed + 100)
    out = []
    for i in range(n):
        value = rng.randrange(10 ** 9)
        if edit.random() < changed:
            value = edit.randrange(10 ** 9)
        out.append(b"%d\tperson %d\t%d\t2024-01-%02d\tnote %d\n" % (i, i, value, i % 28 + 1,
                                                                     i % 97))
    return b"".join(out)


def bid(repo, data: bytes) -> bytes:
    return crypto.blob_id(repo.keys.id_key, data)


def test_codec_round_trip_and_head():
    base, new = rows(), rows(changed=0.01)
    base_id = os.urandom(32)
    payload = crypto.compress_delta(new, base_id, base)
    assert payload[0] == crypto.CODEC_ZSTD_DELTA and crypto.delta_base(payload) == base_id
    assert crypto.decompress(payload, base) == new
    # a delta of 1% changed rows is a small fraction of the full zstd payload
    assert len(payload) * 10 < len(crypto.compress(new, 1)), len(payload)
    assert crypto.delta_base(crypto.compress(new, 1)) is None
    with pytest.raises(DecryptError, match="without its base"):
        crypto.decompress(payload)
    with pytest.raises(DecryptError):           # the frame's checksum catches a wrong base
        crypto.decompress(payload, rows(changed=0.5))


def _store(repo, data: bytes, candidate: bytes | None = None) -> bytes:
    """One blob through its own writer (its own pack); its id."""
    writer = repo.blob_writer()
    blob = bid(repo, data)
    if candidate is None:
        writer.add(BLOB_DATA, blob, data)
    else:
        writer.add_delta(blob, data, candidate)
    writer.settle()
    writer.finish()
    return blob


def test_a_delta_points_at_a_full_blob_never_at_a_delta(tmp_path):
    repo = engine_repo(tmp_path / "repo")
    day1, day2, day3 = rows(), rows(changed=0.01), rows(changed=0.02)
    a = _store(repo, day1)
    b = _store(repo, day2, candidate=a)
    c = _store(repo, day3, candidate=b)          # b is a delta: c's base is b's base
    assert repo.delta_base_of(a) is None
    assert repo.delta_base_of(b) == a and repo.delta_base_of(c) == a
    fresh = open_repo(tmp_path / "repo")
    assert [fresh.read_blob(x) for x in (a, b, c)] == [day1, day2, day3]


def test_unrelated_data_falls_back_to_a_full_blob(tmp_path):
    repo = engine_repo(tmp_path / "repo")
    a = _store(repo, rows())
    writer = repo.blob_writer()
    noise = random.Random(3).randbytes(200_000)
    other = rows(seed=9)
    for data in (noise, other):
        assert writer.add_delta(bid(repo, data), data, a)
    assert not writer.add_delta(bid(repo, noise), noise, a)     # known: not queued twice
    writer.settle()
    assert writer.delta_bases == {} and writer.blobs_delta == 0
    writer.finish()
    assert repo.delta_base_of(bid(repo, noise)) is None
    assert repo.delta_base_of(bid(repo, other)) is None
    assert repo.read_blob(bid(repo, other)) == other


def _damage(repo, blob: bytes) -> str:
    loc = repo.index.lookup(blob)
    path = os.path.join(repo.backend.location, pack_name(loc.pack))
    with open(path, "r+b") as fh:
        fh.seek(loc.offset + loc.length // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return path


@pytest.mark.parametrize("how", ["damaged", "missing"])
def test_a_bad_base_names_the_delta_and_the_base(tmp_path, how):
    repo = engine_repo(tmp_path / "repo")
    a = _store(repo, rows())
    b = _store(repo, rows(changed=0.01), candidate=a)
    assert repo.delta_base_of(b) == a
    path = _damage(repo, a)
    if how == "missing":
        os.unlink(path)
    fresh = open_repo(tmp_path / "repo")
    with pytest.raises(CorruptObject) as err:
        fresh.read_blob(b)
    assert b.hex() in str(err.value) and a.hex() in str(err.value)


def test_the_base_is_the_previous_chunk_at_the_same_place_drift_included():
    prev = PreviousChunks([0, 100, 250, 400], [b"a", b"b", b"c", b"d"])
    assert [prev.ids[prev.nearest(o)] for o in (0, 49, 50, 51, 175, 176, 10_000)] == \
        [b"a", b"a", b"a", b"b", b"b", b"c", b"d"]
    assert prev.base_for(0, b"new0") == b"a"
    assert prev.base_for(95, b"b") is None          # unchanged, 5 bytes earlier than before
    assert prev.drift == -5
    # rows gone from b and c: offsets fall behind further; each still finds its chunk
    assert [prev.base_for(o, b"x%d" % o) for o in (180, 315)] == [b"c", b"d"]
    # a fresh stream: offset alone would pick c for 315
    assert PreviousChunks(prev.starts, prev.ids).base_for(315, b"y") == b"c"


def _logical_snapshot(repo, path: str, data: bytes) -> None:
    writer = repo.blob_writer()
    blob = bid(repo, data)
    writer.add(BLOB_DATA, blob, data)
    builder = TreeBuilder(repo, writer)
    builder.add_file(path + "/data/s.t.copy", [blob.hex()], len(data))
    save_snapshot(repo, writer, builder.finish(), kind="pg-logical", paths=[path], tags=[],
                  stats={}, extra={})


def test_previous_streams_need_a_key_that_reads_data_and_the_setting_on(tmp_path):
    repo = engine_repo(tmp_path / "repo")
    _logical_snapshot(repo, "/pg/claims", rows())
    _logical_snapshot(repo, "/pg/other", rows(seed=2))
    found = PreviousStreams.load(repo, None, "pg-logical", "/pg/claims")
    assert list(found.files) == ["/pg/claims/data/s.t.copy"]
    assert found.chunks("/pg/claims/data/s.t.copy").ids == [bid(repo, rows())]
    assert PreviousStreams.load(repo, None, "pg-logical", "/pg/claims", enabled=False).files == {}
    repo.keys = repo.keys.write_only_subset()
    assert PreviousStreams.load(repo, None, "pg-logical", "/pg/claims").files == {}


def _crafted(repo, name: str, content: list[bytes]) -> str:
    """A snapshot of one file of ``content`` and no "bases" key: what a file
    backup or a write-only host makes when it deduplicates against a delta."""
    writer = repo.blob_writer()
    tree = put_tree(repo, writer, [file_node(name, [c.hex() for c in content], 1)])
    writer.finish()
    return save_crafted_snapshot(repo, tree, paths=(f"/{name}",))


def _prune(repo) -> None:
    p, used, packs = prune.plan(repo)
    prune.apply(repo, p, used, packs)


def test_prune_keeps_the_base_of_any_kept_delta_even_unlisted(tmp_path):
    """The delta is reached by a node that does not list its base; once the
    snapshot holding the base itself is forgotten, prune must still keep the
    base (the index marks deltas), and the delta must still read. Control:
    with nothing reaching the delta, both go."""
    repo = engine_repo(tmp_path / "repo")
    day1, day2 = rows(), rows(changed=0.01)
    a = _store(repo, day1)
    b = _store(repo, day2, candidate=a)
    assert repo.index.lookup(b).type == BLOB_DELTA and repo.index.lookup(a).type == BLOB_DATA
    first = _crafted(repo, "day1.copy", [a])
    second = _crafted(repo, "dump.sql", [b])
    repo.backend.delete(f"snapshots/{first}")
    _prune(repo)
    fresh = open_repo(tmp_path / "repo")
    assert fresh.index.lookup(a) is not None, "the base of a kept delta was pruned"
    assert fresh.read_blob(b) == day2
    assert Checker(fresh).run(read_data_fraction=1.0).ok
    fresh.backend.delete(f"snapshots/{second}")
    _prune(fresh)
    last = open_repo(tmp_path / "repo")
    assert last.index.lookup(a) is None and last.index.lookup(b) is None


def test_check_without_reading_data_counts_a_deltas_base_as_needed(tmp_path):
    """A snapshot reaching a delta (its node listing no base) needs the base's
    pack: a missing one is charged to that snapshot by the structure check."""
    repo = engine_repo(tmp_path / "repo")
    a = _store(repo, rows())
    b = _store(repo, rows(changed=0.01), candidate=a)
    sid = _crafted(repo, "dump.sql", [b])
    assert Checker(open_repo(tmp_path / "repo")).run().ok
    base_pack = _damage(repo, a)
    os.unlink(base_pack)
    report = Checker(open_repo(tmp_path / "repo")).run()
    assert not report.ok
    assert any(e["object"].endswith(os.path.basename(base_pack)) and sid[:12] in e["snapshots"]
               for e in report.errors), report.errors
