"""Content-defined chunking of a file stream with the compiled FastCDC.

The compiled cutter works on one buffer; we feed it blocks and only trust a
cut when ``max_size`` bytes follow the chunk start (or the file ended), so a
streamed file is cut exactly as if it were one buffer.
"""
from __future__ import annotations

import threading
from typing import BinaryIO, Iterator

from fastcdc.fastcdc_cy import fastcdc_cy

READ_BLOCK = 16 << 20


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
    while True:
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
        filled = len(tail)
        buf[:filled] = tail
        if eof and not filled:
            break
    _spare.buf = buf
