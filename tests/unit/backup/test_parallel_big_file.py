"""A big file's chunks compressed on the reading worker's threads (#23) are
stored exactly as one thread stores them: same chunk ids, same content back;
and restored with its chunks decoded on threads ahead of the writes, a
damaged chunk still fails the file and leaves nothing under its name."""
from __future__ import annotations

import os
import random
import shutil

import pytest

from opskit.backup import workers
from opskit.backup.archiver import Archiver
from opskit.backup.checker import Checker
from opskit.backup.restorer import Restorer
from tests.harness.backup import engine_repo, find_node, open_repo


def _big_file(path, rng: random.Random) -> bytes:
    """~6 MiB: compressible text, a repeated block (dedup inside the file), a
    hole, and random bytes."""
    words = [rng.randbytes(5).hex().encode() for _ in range(300)]
    text = b" ".join(rng.choice(words) for _ in range(300_000))[:3 << 20]
    noise = rng.randbytes(1 << 20)
    with open(path, "wb") as fh:
        fh.write(text)
        fh.write(noise)
        fh.write(noise)                 # the same chunks again
        fh.seek(1 << 20, os.SEEK_CUR)   # a hole
        fh.write(text[:500_000])
    return open(path, "rb").read()


def _backup(tmp_path, name, src, threshold, monkeypatch):
    monkeypatch.setattr(workers, "PARALLEL_FILE_MIN", threshold)     # backup and restore
    repo = open_repo(tmp_path / name)
    _sid, snap = Archiver(repo, workers=2).run([str(src)])
    return repo, snap


@pytest.mark.parametrize("seed", [1, 2])
def test_threaded_and_sequential_store_the_same_chunks(tmp_path, monkeypatch, seed):
    src = tmp_path / "src"
    src.mkdir()
    content = _big_file(src / "db.img", random.Random(seed))
    (src / "small").write_bytes(b"small")
    engine_repo(tmp_path / "seq", chunk_avg=64 << 10)
    shutil.copytree(tmp_path / "seq", tmp_path / "par")    # the same keys: the same chunk ids
    seq_repo, seq = _backup(tmp_path, "seq", src, 1 << 60, monkeypatch)
    par_repo, par = _backup(tmp_path, "par", src, 1 << 20, monkeypatch)
    seq_node = find_node(seq_repo, seq, src / "db.img")
    par_node = find_node(par_repo, par, src / "db.img")
    assert len(par_node["content"]) > 20
    assert par_node["content"] == seq_node["content"]
    assert par_node["size"] == len(content)
    # every new chunk was stored once, and it all comes back
    stats = Restorer(par_repo, str(tmp_path / "out")).run(par)
    assert stats.errors == []
    assert (tmp_path / "out" / os.fsdecode(src).lstrip("/") / "db.img").read_bytes() == content
    report = Checker(open_repo(tmp_path / "par")).run(read_data_fraction=1.0)
    assert report.ok, report



def test_a_damaged_chunk_of_a_big_file_fails_that_file_only(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    _big_file(src / "db.img", random.Random(4))
    (src / "small").write_bytes(b"small")
    engine_repo(tmp_path / "r", chunk_avg=64 << 10)
    repo, snap = _backup(tmp_path, "r", src, 1 << 20, monkeypatch)
    content = find_node(repo, snap, src / "db.img")["content"]
    loc = repo.index.lookup(bytes.fromhex(content[len(content) // 2]))
    pack = tmp_path / "r" / "data" / loc.pack[:2] / loc.pack
    raw = bytearray(pack.read_bytes())
    raw[loc.offset + loc.length // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))
    out = tmp_path / "out"
    stats = Restorer(open_repo(tmp_path / "r"), str(out), workers=1).run(snap)
    restored = out / os.fsdecode(src).lstrip("/")
    assert [e["path"] for e in stats.errors] == [str(restored / "db.img")]
    assert not os.path.lexists(restored / "db.img")
    assert (restored / "small").read_bytes() == b"small"
