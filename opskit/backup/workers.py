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
import multiprocessing as mp
import os
import queue
import traceback
from typing import NamedTuple

from opskit.core.errors import OperationalError

from . import crypto
from .chunker import chunk_stream
from .pack import BLOB_DATA, PackBuilder, encrypt_blob
from .repository import Repository, pack_name

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
_NOATIME = getattr(os, "O_NOATIME", 0)


def tune_malloc() -> None:
    """Keep multi-MiB buffers in the heap instead of an mmap/munmap per
    allocation. The engine allocates many such buffers (reads, compressed
    and encrypted chunks); a fresh mmap costs a page fault per 4 KiB, which
    measured ~20% of backup wall time. glibc only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 << 20)    # M_MMAP_THRESHOLD: the maximum glibc accepts
        libc.mallopt(-1, 128 << 20)   # M_TRIM_THRESHOLD: keep freed memory for reuse
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
        try:
            with os.fdopen(fd, "rb", buffering=0) as fh:
                first = fh.read(self.lo + 1)
                if len(first) <= self.lo:       # small file: one blob, no chunker
                    chunks = (first,) if first else ()
                else:
                    chunks = chunk_stream(fh, self.lo, self.avg, self.hi, first=first)
                for chunk in chunks:
                    size += len(chunk)
                    ids.append(self._store(chunk))
        except OSError as exc:
            return FileResult(token, None, 0, exc.strerror or str(exc))
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


def _worker_main(repo: Repository, tasks, results) -> None:
    worker = _Worker(repo)
    try:
        while True:
            batch = tasks.get()
            if batch is None:
                worker.flush()
                results.put(("packs", worker.out_packs))
                results.put(("done", (worker.blobs_new, worker.bytes_new, worker.bytes_stored)))
                return
            out = [worker.file(token, path) for token, path in batch]
            packs, worker.out_packs = worker.out_packs, []
            results.put(("files", (out, packs)))
    except BaseException as exc:  # report, never hang the parent
        results.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


class ContentWorkers:
    """Parent-side handle: ``submit`` paths, ``poll``/``drain`` results."""

    BATCH_FILES = 64
    BATCH_BYTES = 8 << 20

    def __init__(self, repo: Repository, count: int):
        ctx = mp.get_context("fork")
        self.tasks = ctx.Queue(maxsize=count * 4)
        self.results = ctx.Queue()
        self.procs = [ctx.Process(target=_worker_main, args=(repo, self.tasks, self.results),
                                  daemon=True, name=f"opskit-content-{i}") for i in range(count)]
        for p in self.procs:
            p.start()
        self._batch: list[tuple[int, bytes]] = []
        self._batch_bytes = 0
        self.outstanding = 0          # files submitted and not yet answered
        self.blobs_new = self.bytes_new = self.bytes_stored = 0
        self._done = 0

    def submit(self, token: int, path: bytes, size: int, on_result) -> None:
        self._batch.append((token, path))
        self._batch_bytes += size
        self.outstanding += 1
        if len(self._batch) >= self.BATCH_FILES or self._batch_bytes >= self.BATCH_BYTES:
            self._send(on_result)

    def _send(self, on_result) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        while True:
            try:
                self.tasks.put(batch, timeout=0.05)
                return
            except queue.Full:
                self.poll(on_result, block=False)

    def flush(self, on_result) -> None:
        if self._batch:
            self._send(on_result)

    def poll(self, on_result, *, block: bool) -> None:
        """Handle available results; ``on_result(kind, payload)``."""
        while True:
            try:
                kind, payload = self.results.get(timeout=0.5 if block else 0)
            except queue.Empty:
                if block:
                    self._check_alive()
                    continue
                return
            self._handle(kind, payload, on_result)
            if block:
                return

    def _handle(self, kind, payload, on_result) -> None:
        if kind == "error":
            self.close()
            raise WorkerError(payload)
        if kind == "files":
            files, packs = payload
            self.outstanding -= len(files)
            on_result("packs", packs)
            on_result("files", files)
        elif kind == "packs":
            on_result("packs", payload)
        elif kind == "done":
            self._done += 1
            b, n, s = payload
            self.blobs_new += b
            self.bytes_new += n
            self.bytes_stored += s

    def _check_alive(self) -> None:
        dead = [p for p in self.procs if not p.is_alive() and p.exitcode not in (0, None)]
        if dead:
            self.close()
            raise WorkerError(f"content worker {dead[0].name} died (exit code {dead[0].exitcode})")

    def drain(self, on_result) -> None:
        """Wait for every file, then stop the workers and collect their last packs."""
        self.flush(on_result)
        while self.outstanding:
            self.poll(on_result, block=True)
        for _ in self.procs:
            self.tasks.put(None)
        while self._done < len(self.procs):
            self.poll(on_result, block=True)
        for p in self.procs:
            p.join(timeout=10)

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)


class WorkerError(OperationalError):
    """A content worker failed (storage error, crash); the backup stops, exit 3."""
