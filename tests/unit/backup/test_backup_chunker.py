"""Content-defined chunking: streamed cuts equal whole-buffer cuts (format doc, Chunking)."""
from __future__ import annotations

import io
import random

import pytest
from fastcdc.fastcdc_cy import fastcdc_cy

from opskit.backup import chunker
from opskit.backup.chunker import chunk_stream

MIN, AVG, MAX = 16 << 10, 64 << 10, 256 << 10


def whole_cuts(data: bytes) -> list[bytes]:
    """What the compiled FastCDC cuts when it sees the whole file at once."""
    if len(data) <= MIN:
        return [data] if data else []
    return [data[c.offset:c.offset + c.length]
            for c in fastcdc_cy(data, min_size=MIN, avg_size=AVG, max_size=MAX)]


def stream_cuts(data: bytes, first: int = 0) -> list[bytes]:
    fh = io.BytesIO(data)
    head = fh.read(first)
    return [bytes(c) for c in chunk_stream(fh, MIN, AVG, MAX, first=head)]


def _random(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _mixed(n: int, seed: int) -> bytes:
    """Random runs, zero runs (cut only at max) and repeated text."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n:
        kind = rng.randrange(3)
        length = rng.randrange(1, 400_000)
        part = (rng.randbytes(length) if kind == 0 else bytes(length) if kind == 1
                else (b"line %d of text\n" % rng.randrange(100)) * (length // 16 + 1))
        parts.append(part)
        size += len(part)
    return b"".join(parts)[:n]


SIZES = [0, 1, MIN - 1, MIN, MIN + 1, AVG, MAX - 1, MAX, MAX + 1, 3 * MAX + 17, 3 << 20]
# read blocks smaller than, equal to and larger than the max chunk size
BLOCKS = [MIN + 3, MAX - 1, MAX, MAX * 2 + 5, 16 << 20]


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("make", [_random, _mixed], ids=["random", "mixed"])
def test_streamed_cuts_equal_whole_file_cuts(monkeypatch, make, block):
    monkeypatch.setattr(chunker, "READ_BLOCK", block)
    for i, size in enumerate(SIZES):
        data = make(size, seed=1000 + i)
        expected = whole_cuts(data)
        got = stream_cuts(data)
        assert b"".join(got) == data, size
        assert [len(c) for c in got] == [len(c) for c in expected], (size, block)
        assert got == expected


@pytest.mark.parametrize("first", [1, MIN + 1, MAX + 7])
def test_bytes_already_read_are_part_of_the_stream(monkeypatch, first):
    """The worker reads min+1 bytes to spot small files, then hands them in as ``first``."""
    monkeypatch.setattr(chunker, "READ_BLOCK", MAX - 3)
    data = _mixed(2 << 20, seed=7)
    assert stream_cuts(data, first=first) == whole_cuts(data)


def test_chunk_sizes_respect_min_and_max():
    data = _mixed(6 << 20, seed=3)
    chunks = stream_cuts(data)
    assert len(chunks) > 10
    assert all(len(c) <= MAX for c in chunks)
    assert all(len(c) >= MIN for c in chunks[:-1])
    zeros = stream_cuts(bytes(3 * MAX + 5))
    assert b"".join(zeros) == bytes(3 * MAX + 5)
    assert len(zeros) >= 4 and all(len(c) <= MAX for c in zeros)


def test_an_insertion_only_changes_nearby_chunks():
    """Content-defined cuts resynchronise after an edit: that is what makes dedup work."""
    data = _random(4 << 20, seed=11)
    edited = data[:1_000_000] + b"INSERTED BYTES" + data[1_000_000:]
    before, after = set(stream_cuts(data)), stream_cuts(edited)
    new = [c for c in after if c not in before]
    assert len(after) > 20
    assert sum(map(len, new)) <= 3 * MAX, f"{len(new)} of {len(after)} chunks changed"


def test_the_reused_read_buffer_carries_nothing_from_one_file_to_the_next(monkeypatch):
    monkeypatch.setattr(chunker, "READ_BLOCK", MAX + 1000)
    big, small = _random(3 * MAX, 11), _random(MAX // 2, 12)
    assert stream_cuts(big) == whole_cuts(big)
    assert stream_cuts(small) == whole_cuts(small)      # same buffer, shorter file
    assert stream_cuts(b"") == []
