"""Content-defined chunking of a file stream with the compiled FastCDC.

The compiled cutter works on one buffer; we feed it blocks and only trust a
cut when ``max_size`` bytes follow the chunk start (or the file ended), so a
streamed file is cut exactly as if it were one buffer.
"""
from __future__ import annotations

import io
import os
import stat
import threading
from functools import lru_cache
from typing import BinaryIO, Iterator

from fastcdc.fastcdc_cy import fastcdc_cy

READ_BLOCK = 16 << 20
ZEROS = bytes(64 << 20)        # the chunk of a hole: a view of this, never read from disk


_spare = threading.local()     # one read buffer per thread, reused file after file


def _buffer(size: int) -> bytearray:
    buf = getattr(_spare, "buf", None)
    if buf is None or len(buf) != size:
        buf = bytearray(size)
    _spare.buf = None           # ours until returned (a generator may be abandoned)
    return buf


def chunk_stream(fh: BinaryIO, min_size: int, avg_size: int, max_size: int,
                 first: bytes = b"") -> Iterator[memoryview]:
    """Yield the chunks of ``fh`` (after ``first``, bytes already read from it).

    Chunks are memoryviews into a buffer that is reused: use (hash, compress,
    copy) each one before asking for the next. File data is read straight
    into that buffer; only the unchunked tail moves, to its front, per block.
    """
    buf = _buffer(max(READ_BLOCK + max_size, len(first)))
    filled = len(first)
    buf[:filled] = first
    eof = False
    holes = _seekable_file(fh)
    base = fh.tell() - filled if holes else 0     # file offset of buf[0]
    while True:
        if holes and not eof and _zeros_ahead(buf, filled):
            for size in _hole_chunks(fh, base + filled, base, min_size, avg_size, max_size):
                base += size
                yield memoryview(ZEROS)[:size]
            if fh.tell() != base + filled:       # skipped: restart at the next chunk
                filled = 0
                fh.seek(base)
        if not eof:
            with memoryview(buf) as free:
                got = fh.readinto(free[filled:])
            if got:
                filled += got
            else:
                eof = True
        if not filled:
            break
        view = memoryview(buf)[:filled]
        if filled <= min_size and eof:
            yield view
            break
        consumed = 0
        for chunk in fastcdc_cy(view, min_size=min_size, avg_size=avg_size, max_size=max_size):
            if not eof and chunk.offset + max_size > filled:
                break
            consumed = chunk.offset + chunk.length
            yield view[chunk.offset:consumed]
        tail = view[consumed:].tobytes()      # (a slice copied onto itself could overlap)
        base += consumed
        filled = len(tail)
        buf[:filled] = tail
        if eof and not filled:
            break
    _spare.buf = buf


def _seekable_file(fh: BinaryIO) -> bool:
    """A regular file, which may have holes (not a pipe or an in-memory stream)."""
    try:
        return stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _zeros_ahead(buf: bytearray, filled: int) -> bool:
    """Is the unchunked tail all zeros (so a hole that follows may be skipped)?"""
    if filled and (buf[0] or buf[filled - 1]):
        return False                    # the common case, decided without a scan
    return buf.count(0, 0, filled) == filled


@lru_cache(maxsize=8)
def zero_chunk_size(min_size: int, avg_size: int, max_size: int) -> int:
    """Where the cutter cuts a run of at least ``max_size`` zeros: the cut of a
    chunk depends only on its first ``max_size`` bytes, so it is always here."""
    first = next(iter(fastcdc_cy(memoryview(ZEROS)[:max_size], min_size=min_size,
                                 avg_size=avg_size, max_size=max_size)))
    return first.length


def _hole_chunks(fh: BinaryIO, pos: int, start: int, min_size: int, avg_size: int,
                 max_size: int) -> Iterator[int]:
    """Sizes of the zero chunks from ``start`` (a chunk start; zeros up to ``pos``)
    that lie wholly before the file's next data (SEEK_DATA): they are cut exactly
    as reading them would cut them, without reading a byte of the hole."""
    if max_size > len(ZEROS):
        return
    try:
        data = os.lseek(fh.fileno(), pos, os.SEEK_DATA)
    except OSError:                     # ENXIO: a hole to the end (or no SEEK_DATA)
        data = os.fstat(fh.fileno()).st_size
        if data <= pos:
            return
    size = zero_chunk_size(min_size, avg_size, max_size)
    while start + max_size <= data:
        yield size
        start += size
