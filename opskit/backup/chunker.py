"""Content-defined chunking of a file stream with the compiled FastCDC.

The compiled cutter works on one buffer; we feed it blocks and only trust a
cut when ``max_size`` bytes follow the chunk start (or the file ended), so a
streamed file is cut exactly as if it were one buffer.
"""
from __future__ import annotations

from typing import BinaryIO, Iterator

from fastcdc.fastcdc_cy import fastcdc_cy

READ_BLOCK = 16 << 20


def chunk_stream(fh: BinaryIO, min_size: int, avg_size: int, max_size: int,
                 first: bytes = b"") -> Iterator[bytes]:
    """Yield the chunks of ``fh`` (after ``first``, bytes already read from it).

    Chunks are memoryviews into a buffer that is reused: use (hash, compress,
    copy) each one before asking for the next.
    """
    buf = first
    eof = False
    while True:
        if not eof:
            block = fh.read(READ_BLOCK)
            if block:
                buf = buf + block if buf else block
            else:
                eof = True
        if not buf:
            return
        if len(buf) <= min_size and eof:
            yield buf
            return
        view = memoryview(buf)
        consumed = 0
        for chunk in fastcdc_cy(view, min_size=min_size, avg_size=avg_size, max_size=max_size):
            if not eof and chunk.offset + max_size > len(buf):
                break
            consumed = chunk.offset + chunk.length
            yield view[chunk.offset:consumed]
        view.release()
        buf = buf[consumed:]
        if eof and not buf:
            return
