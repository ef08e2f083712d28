"""File-content workers: read, chunk, hash, deduplicate, compress, encrypt and
pack file contents in separate processes, so every core works without
contending for Python's GIL.

The parent forks the workers after loading the index, so each inherits the
set of known blob ids for free (copy-on-write). Each worker writes its own
packs straight to the backend and reports, per file, the chunk ids, and per
pack, the index entries. Two workers may store the same *new* chunk if it
appears in two files at once; that costs a little space, never correctness
(the index tolerates a blob in two packs, prune removes the spare copy).
"""
from __future__ import annotations

import ctypes
import os
from typing import NamedTuple

from . import crypto
from .chunker import chunk_stream
from .forkpool import ForkPool, WorkerError  # noqa: F401  (WorkerError re-exported)
from .pack import BLOB_DATA, PackBuilder, encrypt_blob
from .repository import Repository, pack_name

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
_NOATIME = getattr(os, "O_NOATIME", 0)


def tune_gc() -> None:
    """Python's cyclic collector walks every live container each time enough new
    ones pile up; a backup or restore creates hundreds of thousands (tree
    nodes, batches) that form no cycles, and the walks measured ~2% of CPU.
    Collect once now, move survivors out of the collector's view, and run it
    far less often. Forked workers inherit the setting."""
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def tune_malloc() -> None:
    """Keep multi-MiB buffers in the heap instead of an mmap/munmap per
    allocation. The engine allocates many such buffers (reads, compressed
    and encrypted chunks); a fresh mmap costs a page fault per 4 KiB, which
    measured ~20% of backup wall time. glibc only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)    # M_MMAP_THRESHOLD: the maximum glibc accepts
        libc.mallopt(-1, 32 << 20)    # M_TRIM_THRESHOLD: keep some freed memory for reuse
    except (OSError, AttributeError):
        pass


class FileResult(NamedTuple):
    token: int
    ids: bytes | None          # concatenated 32-byte chunk ids; None on error
    size: int
    error: str | None


class _Worker:
    """Runs in the child process."""

    def __init__(self, repo: Repository):
        self.repo = repo
        self.keys = repo.keys
        cfg = repo.config
        self.lo, self.avg, self.hi = cfg.chunk_min, cfg.chunk_avg, cfg.chunk_max
        self.builder = PackBuilder(BLOB_DATA)
        self.seen: set[bytes] = set()
        self.out_packs: list[tuple[str, list]] = []
        self.blobs_new = self.bytes_new = self.bytes_stored = 0

    def _open(self, path: bytes) -> int:
        try:
            return os.open(path, _FLAGS | _NOATIME)
        except PermissionError:
            return os.open(path, _FLAGS)

    def file(self, token: int, path: bytes) -> FileResult:
        try:
            fd = self._open(path)
        except OSError as exc:
            return FileResult(token, None, 0, exc.strerror or str(exc))
        ids = []
        size = 0
        fh = None
        try:
            # one read decides: most files are smaller than a chunk, and for them
            # a bare os.read avoids a file object and its fstat
            first = os.read(fd, self.lo + 1)
            if len(first) <= self.lo:       # small file: one blob, no chunker
                chunks = (first,) if first else ()
            else:
                fh = os.fdopen(fd, "rb", buffering=0)
                fd = -1
                chunks = chunk_stream(fh, self.lo, self.avg, self.hi, first=first)
            for chunk in chunks:
                size += len(chunk)
                ids.append(self._store(chunk))
        except OSError as exc:
            return FileResult(token, None, 0, exc.strerror or str(exc))
        finally:
            if fh is not None:
                fh.close()
            if fd >= 0:
                os.close(fd)
        return FileResult(token, b"".join(ids), size, None)

    def _store(self, chunk: bytes) -> bytes:
        bid = crypto.blob_id(self.keys.id_key, chunk)
        if bid in self.seen or bid in self.repo.index:
            return bid
        self.seen.add(bid)
        stored = encrypt_blob(self.keys, BLOB_DATA, bid, chunk, self.repo.compression_level)
        self.builder.add(BLOB_DATA, bid, stored, len(chunk))
        self.blobs_new += 1
        self.bytes_new += len(chunk)
        self.bytes_stored += len(stored)
        if self.builder.size >= self.repo.pack_size:
            self.flush()
        return bid

    def flush(self) -> None:
        if not self.builder.entries:
            return
        data = self.builder.finish(self.keys)
        pack_id = crypto.object_id(data)
        self.repo.backend.put(pack_name(pack_id), data)
        self.out_packs.append((pack_id, self.builder.entries))
        self.builder = PackBuilder(BLOB_DATA)


def _handle_files(worker: _Worker, batch: list) -> tuple[list, list]:
    out = [worker.file(token, path) for token, path in batch]
    packs, worker.out_packs = worker.out_packs, []
    return out, packs


def _finish_worker(worker: _Worker) -> tuple[list, tuple[int, int, int]]:
    worker.flush()
    return worker.out_packs, (worker.blobs_new, worker.bytes_new, worker.bytes_stored)


class ContentWorkers:
    """Parent-side handle: ``submit`` paths, ``poll``/``drain`` results.

    ``on_result(kind, payload)`` receives ``("files", [FileResult...])`` and
    ``("packs", [(pack_id, entries)...])``.
    """

    def __init__(self, repo: Repository, count: int):
        self.pool = ForkPool(count, init=lambda: _Worker(repo), handle=_handle_files,
                             finish=_finish_worker, name="opskit-content")
        self.blobs_new = self.bytes_new = self.bytes_stored = 0
        self._on_result = None
        self.pool.on_batch = self._batch_done
        self.pool.on_done = self._worker_done

    @property
    def outstanding(self) -> int:
        return self.pool.outstanding

    def _batch_done(self, result) -> None:
        files, packs = result
        self._on_result("packs", packs)
        self._on_result("files", files)

    def _worker_done(self, final) -> None:
        packs, (blobs, new, stored) = final
        self._on_result("packs", packs)
        self.blobs_new += blobs
        self.bytes_new += new
        self.bytes_stored += stored

    def submit(self, token: int, path: bytes, size: int, on_result) -> None:
        self._on_result = on_result
        self.pool.submit((token, path), size)

    def flush(self, on_result) -> None:
        self._on_result = on_result
        self.pool.flush()

    def poll(self, on_result, *, block: bool) -> None:
        self._on_result = on_result
        self.pool.poll(block=block)

    def drain(self, on_result) -> None:
        """Wait for every file, then stop the workers and collect their last packs."""
        self._on_result = on_result
        self.pool.drain()

    def close(self) -> None:
        self.pool.close()
