"""Holes in a sparse file are chunked without being read (a 4 GiB image backs up in
under a second), and the cut is exactly the one reading the zeros would give: the
same chunks, so deduplication and old snapshots are unaffected (R-BAK-1)."""
from __future__ import annotations

import io
import os
import random

import pytest

from opskit.backup import chunker
from opskit.backup.chunker import ZEROS, chunk_stream

LO, AVG, HI = 1024, 4096, 16384
PAGE = 4096


@pytest.fixture(autouse=True)
def small_reads(monkeypatch):
    """Read blocks of a few chunks, so holes fall past a block boundary (where they
    are skipped) in files of a few hundred KiB."""
    monkeypatch.setattr(chunker, "READ_BLOCK", 2 * HI + 123)


def chunks_of(fh, first: bytes = b"") -> list[bytes]:
    return [bytes(c) for c in chunk_stream(fh, LO, AVG, HI, first=first)]


def sparse_file(path, layout: list[tuple[str, int]], rng: random.Random) -> bytes:
    """Write ``layout`` (("data", n) / ("hole", n) / ("zeros", n) written zeros) to
    ``path`` as a sparse file; return its content."""
    content = bytearray()
    with open(path, "wb") as fh:
        for kind, size in layout:
            if kind == "hole":
                fh.seek(size, os.SEEK_CUR)
                content += bytes(size)
            else:
                block = rng.randbytes(size) if kind == "data" else bytes(size)
                fh.write(block)
                content += block
        fh.truncate(len(content))
    return bytes(content)


LAYOUTS = {
    "hole-at-start": [("hole", 20 * PAGE), ("data", 3 * PAGE)],
    "hole-in-middle": [("data", 3 * PAGE + 17), ("hole", 64 * PAGE), ("data", 5000)],
    "hole-at-end": [("data", 2 * PAGE), ("hole", 40 * PAGE)],
    "only-a-hole": [("hole", 50 * PAGE)],
    "hole-shorter-than-max": [("data", PAGE), ("hole", 2 * PAGE), ("data", 3 * PAGE)],
    "written-zeros-then-hole": [("data", 100), ("zeros", 5 * PAGE), ("hole", 30 * PAGE),
                                ("data", 7)],
    "many-holes": [(k, n * PAGE) for _ in range(12) for k, n in (("data", 1), ("hole", 9))],
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_holes_are_cut_as_if_read(tmp_path, name):
    content = sparse_file(tmp_path / "f", LAYOUTS[name], random.Random(name))
    with open(tmp_path / "f", "rb", buffering=0) as fh:
        sparse = chunks_of(fh)
    read = chunks_of(io.BytesIO(content))          # no fileno: every byte read
    assert b"".join(sparse) == content
    assert [len(c) for c in sparse] == [len(c) for c in read]
    assert sparse == read


def test_random_layouts_agree(tmp_path):
    rng = random.Random(20261204)
    for trial in range(40):
        layout = [(rng.choice(["data", "hole", "zeros"]), rng.randint(1, 40) * PAGE
                   + rng.choice([0, 0, rng.randint(1, PAGE)])) for _ in range(rng.randint(1, 6))]
        content = sparse_file(tmp_path / f"f{trial}", layout, rng)
        with open(tmp_path / f"f{trial}", "rb", buffering=0) as fh:
            first = fh.read(LO + 1)                # as the worker calls it
            sparse = chunks_of(fh, first)
        assert sparse == chunks_of(io.BytesIO(content)), f"layout {layout}"


def test_a_hole_is_not_read(tmp_path):
    """The chunks of a big hole (past the first read block) are views of the shared
    zero buffer, not file reads."""
    path = tmp_path / "big"
    with open(path, "wb") as fh:
        fh.write(b"x" * 10)
        fh.truncate(40 * chunker.READ_BLOCK)
    with open(path, "rb", buffering=0) as fh:
        views = [(v.obj is ZEROS, len(v)) for v in chunk_stream(fh, LO, AVG, HI)]
    skipped = sum(size for from_zeros, size in views if from_zeros)
    assert skipped >= 38 * chunker.READ_BLOCK, f"only {skipped} bytes of the hole skipped the read"
