"""IterReader (opskit/backup/db/streams.py): COPY's row-sized blocks and the
repository's chunk-sized blocks read back as one byte stream, whatever the
read size, with the tap seeing every byte once (the row count and checksum
that drills compare rest on it)."""
from __future__ import annotations

import io
import random

import pytest

from opskit.backup.db.streams import IterReader


def read_all(reader: IterReader, size: int) -> bytes:
    out, buf = bytearray(), bytearray(size)
    while True:
        n = reader.readinto(buf)
        if not n:
            return bytes(out)
        out += buf[:n]


def blocks(seed: int) -> list:
    rng = random.Random(seed)
    rows = [b"%d\t%s\n" % (i, bytes(rng.randrange(97, 123) for _ in range(rng.randrange(0, 300))))
            for i in range(3000)]
    rows[5:5] = [b"", memoryview(b"as a view\n"), bytearray(b"as a bytearray\n"),
                 bytes(70000)]
    return rows


@pytest.mark.parametrize("size", [1, 7, 512, 10240, 1 << 16, 16 << 20])
def test_reads_every_byte_in_order_and_the_tap_sees_each_once(size):
    source = blocks(size)
    expected = b"".join(bytes(b) for b in source)
    seen = bytearray()
    got = read_all(IterReader(source, lambda view: seen.extend(view)), size)
    assert got == expected
    assert bytes(seen) == expected


def test_big_blocks_read_in_small_pieces_come_back_whole():
    # a base backup's restore: 1 MiB repository blocks, tarfile reading 10 KiB at a time
    big = [bytes([i]) * (1 << 20) for i in range(64)]
    assert io.BufferedReader(IterReader(big), 10240).read() == b"".join(big)


def test_an_empty_stream_reads_nothing():
    assert read_all(IterReader([]), 100) == b""
    assert read_all(IterReader([b"", b""]), 100) == b""
