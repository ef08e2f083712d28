"""File-content workers: read, chunk, hash, deduplicate, compress, encrypt and
pack file contents in separate processes, so every core works without
contending for Python's GIL.

The parent forks the workers after loading the index, so each inherits the
set of known blob ids for free (copy-on-write). Each worker writes its own
packs straight to the backend and reports, per file, the chunk ids; when it
is done it writes one index file naming all its packs (an index shard, off
the parent's critical path: #23) and hands the parent their entries in one
message, for its in-memory index. Two workers may store the same *new* chunk if it
appears in two files at once; that costs a little space, never correctness
(the index tolerates a blob in two packs, prune removes the spare copy).
"""
from __future__ import annotations

import ctypes
import os
import stat as statmod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, NamedTuple

from . import crypto
from .backends import BackendError
from .chunker import ZEROS, chunk_stream
from .forkpool import ForkPool, WorkerError  # noqa: F401  (WorkerError re-exported)
from .index import encode_entries
from .pack import BLOB_DATA, BLOB_TREE, SealingPackBuilder
from .repository import CorruptObject, Repository, pack_name
from .fsmeta import read_xattrs
from .tree import (TYPE_FILE, IdNames, decode_name, encode_name, encode_node, encode_tree,
                   node_from_stat, special_node, unchanged)

# A directory without subdirectories is backed up whole by one worker (walk,
# contents, tree) when the files it must read add up to no more than this;
# bigger ones come back split in parts of at most this (split_parts), which
# every worker takes.
LEAF_DIR_MAX_BYTES = 8 << 20

# A file at least this big has its chunks compressed on threads of the worker
# reading it (zstd releases the GIL): one big file (a database, an image) no
# longer holds a backup to one core once the other workers are done (#23).
PARALLEL_FILE_MIN = 32 << 20

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = _FLAGS | os.O_DIRECTORY
_NOATIME = getattr(os, "O_NOATIME", 0)


def _read_ahead(fd: int) -> None:
    """Tell the kernel a file bigger than one chunk is read once, start to end:
    on a disk that doubles its read-ahead window (issue 23). Small files are
    read in one call and get no extra syscall."""
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except (AttributeError, OSError):   # no fadvise here, or a pipe-like file
        pass


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
    xattrs: dict | None = None


class DirResult(NamedTuple):
    """A leaf directory done by a worker, or part of one. ``tree_id`` None
    means declined: with ``parts`` (too many bytes) the parent hands them out
    as part jobs, without (subdirectories, unreadable) it walks the directory
    itself. The answer to a part job has ``nodes``, its entries as
    ``tree.encode_node`` pairs, for the parent to join into the tree."""
    token: int
    tree_id: bytes | None
    files: int = 0
    size: int = 0
    new: int = 0
    changed: int = 0
    unmodified: int = 0
    errors: tuple = ()          # ((path, message), ...)
    parts: tuple = ()           # declined as too big: ((names, bytes to read), ...)
    nodes: tuple | None = None  # a part's entries: ((raw name, node JSON), ...)


def split_parts(stated: list, sizes: list[int]) -> tuple:
    """Names of a directory too big for one worker in groups reading at most
    LEAF_DIR_MAX_BYTES each (a bigger file alone), biggest first, so every
    worker takes some and the parent neither walks nor encodes it (#23)."""
    order = sorted(range(len(stated)), key=lambda i: -sizes[i])
    parts, group, group_bytes = [], [], 0
    for i in order:
        if group and group_bytes + sizes[i] > LEAF_DIR_MAX_BYTES:
            parts.append((tuple(group), group_bytes))
            group, group_bytes = [], 0
        group.append(stated[i][0])
        group_bytes += sizes[i]
    if group:
        parts.append((tuple(group), group_bytes))
    return tuple(parts)


class WalkOptions(NamedTuple):
    """What a worker needs to walk a directory the way the archiver would."""
    full: bool = False
    excluded: Callable[[bytes], bool] | None = None


class _Worker:
    """Runs in the child process."""

    def __init__(self, repo: Repository, walk: WalkOptions | None = None):
        self.repo = repo
        self.keys = repo.keys
        cfg = repo.config
        self.lo, self.avg, self.hi = cfg.chunk_min, cfg.chunk_avg, cfg.chunk_max
        self.builders = {BLOB_DATA: SealingPackBuilder(BLOB_DATA),
                         BLOB_TREE: SealingPackBuilder(BLOB_TREE, capacity=1 << 20)}
        self.seen: set[bytes] = set()
        self._zero_ids: dict[int, bytes] = {}              # chunk size -> id of that many zeros
        self.out_packs: list[tuple[str, bytes]] = []       # (pack id, encode_entries()) of the run
        self.blobs_new = self.bytes_new = self.bytes_stored = 0
        self.walk = walk or WalkOptions()
        self.names = IdNames()
        self._last_old: tuple = (None, None)       # (tree id, _old_tree's answer)
        self._threads: ThreadPoolExecutor | None = None     # made for the first big file
        self._thread_count = 0

    def _open(self, path: bytes, dir_fd: int | None = None) -> int:
        try:
            return os.open(path, _FLAGS | _NOATIME, dir_fd=dir_fd)
        except PermissionError:
            return os.open(path, _FLAGS, dir_fd=dir_fd)

    def file(self, token: int, path: bytes) -> FileResult:
        ids, size, error, xattrs = self._content(path)
        return FileResult(token, ids, size, error, xattrs)

    def _content(self, path: bytes, dir_fd: int | None = None
                 ) -> tuple[bytes | None, int, str | None, dict | None]:
        """(concatenated chunk ids, bytes read, None, xattrs) or (None, 0, error, None);
        ``path`` is relative to ``dir_fd`` when given."""
        try:
            fd = self._open(path, dir_fd)
        except OSError as exc:
            return None, 0, exc.strerror or str(exc), None
        xattrs = read_xattrs(fd)        # through the open fd: no second path lookup
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
                _read_ahead(fd)
                big = os.fstat(fd).st_size >= PARALLEL_FILE_MIN
                fh = os.fdopen(fd, "rb", buffering=0)
                fd = -1
                chunks = chunk_stream(fh, self.lo, self.avg, self.hi, first=first)
                if big:
                    size = self._store_parallel(chunks, ids)
                    chunks = ()
            for chunk in chunks:
                size += len(chunk)
                ids.append(self._store(chunk))
        except OSError as exc:
            return None, 0, exc.strerror or str(exc), None
        finally:
            if fh is not None:
                fh.close()
            if fd >= 0:
                os.close(fd)
        return b"".join(ids), size, None, xattrs

    def directory(self, token: int, path: bytes, old_id: bytes | None) -> DirResult:
        """Back up a directory that has no subdirectories, files and tree both,
        sparing the parent a round trip per file. The same rules as the
        archiver's walk: excludes, incremental reuse, errors listed, not fatal.
        Entries are stat'ed and opened relative to the directory's descriptor
        (one name to look up, not a whole path, per call). One that would
        read too much comes back split into ``parts`` for every worker."""
        try:
            dfd = os.open(path, _DIR_FLAGS)
        except OSError:
            return DirResult(token, None)   # declined: the parent's walk reports it
        try:
            return self._directory(token, path, dfd, old_id)
        finally:
            os.close(dfd)

    def _directory(self, token: int, path: bytes, dfd: int, old_id: bytes | None) -> DirResult:
        scanned = self._scan(path, dfd)
        if scanned is None:
            return DirResult(token, None)   # declined: the parent walks it
        stated, errors = scanned
        old_nodes, old = self._old_tree(old_id)
        sizes = self._to_read(stated, old)
        if sum(sizes) > LEAF_DIR_MAX_BYTES:
            # entries that could not be stat'ed are in no part: report them here
            return DirResult(token, None, errors=tuple(errors), parts=split_parts(stated, sizes))
        nodes, tally = self._nodes(path, dfd, stated, old, errors)
        nodes.sort(key=decode_name)
        if old_id is not None and nodes == old_nodes:
            tree_id = old_id            # unchanged directory: reuse, skip encoding
        else:
            raw = encode_tree(nodes)
            tree_id = crypto.blob_id(self.keys.id_key, raw)
            self._store_tree(tree_id, raw)
        return DirResult(token, tree_id, *tally, tuple(errors))

    def _scan(self, path: bytes, dfd: int) -> tuple[list, list] | None:
        """([(name, stat)...], [(path, error)...]) of a directory's entries that are
        not excluded; None when it cannot be listed or holds a directory."""
        join, is_dir, fsencode = os.path.join, statmod.S_ISDIR, os.fsencode
        excluded = self.walk.excluded
        try:
            with os.scandir(dfd) as it:
                entries = list(it)
        except OSError:
            return None
        stated, errors = [], []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return None
            name = fsencode(entry.name)     # scandir(fd) names are str; trees keep bytes
            if excluded is not None and excluded(join(path, name)):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                errors.append((join(path, name), exc.strerror or str(exc)))
                continue
            if is_dir(st.st_mode):
                return None
            stated.append((name, st))
        return stated, errors

    def part(self, token: int, path: bytes, names: tuple, old_id: bytes | None) -> DirResult:
        """Some entries of a directory that was split: their nodes, JSON-encoded
        (``tree.encode_node``), for the parent to join into the tree (#23)."""
        errors: list = []
        stated = []
        try:
            dfd = os.open(path, _DIR_FLAGS)
        except OSError as exc:
            errors.append((path, exc.strerror or str(exc)))
            return DirResult(token, None, errors=tuple(errors), nodes=())
        try:
            for name in names:
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except OSError as exc:
                    errors.append((os.path.join(path, name), exc.strerror or str(exc)))
                    continue
                if statmod.S_ISDIR(st.st_mode):     # replaced by a directory meanwhile
                    errors.append((os.path.join(path, name), "became a directory meanwhile"))
                    continue
                stated.append((name, st))
            nodes, tally = self._nodes(path, dfd, stated, self._old_tree(old_id)[1], errors)
        finally:
            os.close(dfd)
        return DirResult(token, None, *tally, tuple(errors), nodes=tuple(map(encode_node, nodes)))

    def _to_read(self, stated: list, old: dict) -> list[int]:
        """Bytes each entry would read: 0 for all but new or changed files."""
        full, is_reg = self.walk.full, statmod.S_ISREG
        return [st.st_size if is_reg(st.st_mode) and (full or not unchanged(old.get(name), st))
                else 0 for name, st in stated]

    def _nodes(self, path: bytes, dfd: int, stated: list, old: dict, errors: list
               ) -> tuple[list, tuple[int, int, int, int, int]]:
        """Nodes of ``stated`` entries of the directory open as ``dfd``, reading
        new and changed files; (nodes, (files, bytes, new, changed, unmodified)).
        Problems go to ``errors`` as (path, message)."""
        join, full, is_reg = os.path.join, self.walk.full, statmod.S_ISREG
        nodes, files, size, new, changed, same = [], 0, 0, 0, 0, 0
        user, group = self.names.user, self.names.group
        for name, st in stated:
            mode = st.st_mode
            prev = old.get(name)
            if is_reg(mode):
                if prev is not None and not full and unchanged(prev, st):
                    nodes.append(prev)
                    files, size, same = files + 1, size + st.st_size, same + 1
                    continue
                ids, got, error, xattrs = self._content(name, dfd)
                if error is not None:
                    errors.append((join(path, name), error))
                    continue
                content = ([ids.hex()] if len(ids) == 32 else
                           [ids[i:i + 32].hex() for i in range(0, len(ids), 32)])
                uid, gid = st.st_uid, st.st_gid
                # node_from_stat's fields, built in one go on this hot path
                node = {"type": TYPE_FILE, "mode": mode, "uid": uid, "gid": gid,
                        "user": user(uid), "group": group(gid), "mtime_ns": st.st_mtime_ns,
                        "ctime_ns": st.st_ctime_ns, "inode": st.st_ino, "dev": st.st_dev,
                        "nlink": st.st_nlink, "size": got, "content": content}
                if xattrs:
                    node["xattrs"] = xattrs
                encode_name(node, "name", name)
                nodes.append(node)
                files, size = files + 1, size + got
                if prev is None:
                    new += 1
                elif prev.get("content") != content:
                    changed += 1
                else:
                    same += 1
            elif statmod.S_ISLNK(mode):
                node = node_from_stat(name, st, self.names)
                try:
                    encode_name(node, "target", os.readlink(name, dir_fd=dfd))
                except OSError as exc:
                    errors.append((join(path, name), exc.strerror or str(exc)))
                    continue
                nodes.append(node)
            else:                           # FIFO, socket, device node
                node = special_node(name, st, self.names, join(path, name))
                if node is not None:
                    nodes.append(node)
        return nodes, (files, size, new, changed, same)

    def _old_tree(self, old_id: bytes | None) -> tuple[list | None, dict]:
        """The parent snapshot's nodes of a directory, and by name; the last one
        is kept, as the parts of a split directory often come one after another."""
        if old_id is None:
            return None, {}
        if self._last_old[0] == old_id:
            return self._last_old[1]
        try:
            nodes = self.repo.load_tree(old_id).get("nodes", [])
        except (CorruptObject, BackendError):
            return None, {}             # a damaged parent tree only costs re-reading
        found = nodes, {decode_name(n): n for n in nodes}
        self._last_old = (old_id, found)
        return found

    def _store(self, chunk: bytes) -> bytes:
        if isinstance(chunk, memoryview) and chunk.obj is ZEROS:
            return self._store_zeros(chunk)
        bid = crypto.blob_id(self.keys.id_key, chunk)
        self._add(BLOB_DATA, bid, chunk)
        return bid

    def _store_parallel(self, chunks, ids: list) -> int:
        """Store ``chunks`` like ``_store``, compressing new ones on threads;
        appends their ids to ``ids`` in order and returns the bytes seen.
        Hashing, dedup and sealing stay on this thread, in order; a chunk is
        copied before it is handed over (the chunker reuses its buffer)."""
        if self._threads is None:
            from .cores import available_cores
            self._thread_count = available_cores()
            self._threads = ThreadPoolExecutor(max_workers=self._thread_count,
                                               thread_name_prefix="opskit-zstd")
        window = 2 * self._thread_count
        pending: deque = deque()
        size, level = 0, self.repo.compression_level
        try:
            for chunk in chunks:
                size += len(chunk)
                if isinstance(chunk, memoryview) and chunk.obj is ZEROS:
                    ids.append(self._store_zeros(chunk))
                    continue
                bid = crypto.blob_id(self.keys.id_key, chunk)
                ids.append(bid)
                if bid in self.seen or bid in self.repo.index:
                    continue
                self.seen.add(bid)
                data = bytes(chunk)
                pending.append((bid, len(data), self._threads.submit(crypto.compress, data, level)))
                while len(pending) > window or (pending and pending[0][2].done()):
                    self._seal_done(*pending.popleft())
        finally:
            while pending:              # also on an error: the ids sent are in packs
                self._seal_done(*pending.popleft())
        return size

    def _seal_done(self, bid: bytes, raw_length: int, future) -> None:
        builder = self.builders[BLOB_DATA]
        self.bytes_stored += builder.seal_compressed(self.keys, BLOB_DATA, bid, future.result(),
                                                     raw_length)
        self.blobs_new += 1
        self.bytes_new += raw_length
        if builder.size >= self.repo.pack_size:
            self._write(BLOB_DATA)

    def _store_zeros(self, chunk: memoryview) -> bytes:
        """A chunk of a hole: its id is computed once per size (a sparse 4 GiB
        image is mostly one chunk, over and over)."""
        bid = self._zero_ids.get(len(chunk))
        if bid is None:
            bid = self._zero_ids[len(chunk)] = crypto.blob_id(self.keys.id_key, chunk)
        self._add(BLOB_DATA, bid, chunk)
        return bid

    def _store_tree(self, bid: bytes, raw: bytes) -> None:
        self._add(BLOB_TREE, bid, raw)

    def _add(self, blob_type: str, bid: bytes, plaintext) -> None:
        if bid in self.seen or bid in self.repo.index:
            return
        self.seen.add(bid)
        builder = self.builders[blob_type]
        self.bytes_stored += builder.seal(self.keys, blob_type, bid, plaintext,
                                          self.repo.compression_level)
        self.blobs_new += 1
        self.bytes_new += len(plaintext)
        if builder.size >= self.repo.pack_size:
            self._write(blob_type)

    def flush(self, trees: bool = False) -> None:
        """Write the data pack being filled (and the tree pack, with ``trees``)."""
        for kind in (BLOB_DATA, BLOB_TREE) if trees else (BLOB_DATA,):
            if self.builders[kind].entries:
                self._write(kind)

    def _write(self, blob_type: str) -> None:
        """Store the pack of ``blob_type`` being filled and start a new one."""
        builder = self.builders[blob_type]
        data = builder.finish(self.keys)
        pack_id = crypto.object_id(data)
        self.repo.backend.put(pack_name(pack_id), data)
        data.release()                  # the next pack reuses the buffer
        self.builders[blob_type] = SealingPackBuilder(blob_type, builder.buf)
        self.out_packs.append((pack_id, encode_entries(builder.entries)))


    def write_index(self) -> None:
        """One index file naming every pack this worker wrote (after the packs:
        format doc, Write order); none when it wrote no pack."""
        if self.out_packs:
            self.repo.write_index(dict(self.out_packs))


def _handle_files(worker: _Worker, batch: list) -> list:
    # jobs are told apart by length: (token, path) a file, (token, path, old
    # tree) a directory, (token, path, names, old tree) part of one
    jobs = {2: worker.file, 3: worker.directory, 4: worker.part}
    return [jobs[len(item)](*item) for item in batch]


def _finish_worker(worker: _Worker) -> tuple[list, tuple[int, int, int]]:
    worker.flush(trees=True)
    worker.write_index()
    return worker.out_packs, (worker.blobs_new, worker.bytes_new, worker.bytes_stored)


class ContentWorkers:
    """Parent-side handle: ``submit`` paths, ``poll``/``drain`` results.

    ``on_result(kind, payload)`` receives ``("files", [FileResult | DirResult...])``
    per batch, and once per worker, when it is done and has written the index
    file naming them, ``("packs", [(pack_id, index.encode_entries(...))...])``.
    """

    def __init__(self, repo: Repository, count: int, walk: WalkOptions | None = None):
        repo.index.settle()     # merged once here, not once in every child
        self.pool = ForkPool(count, init=lambda: _Worker(repo, walk), handle=_handle_files,
                             finish=_finish_worker, name="opskit-content")
        self.blobs_new = self.bytes_new = self.bytes_stored = 0
        self._on_result = None
        self.pool.on_batch = self._batch_done
        self.pool.on_done = self._worker_done

    @property
    def outstanding(self) -> int:
        return self.pool.outstanding

    def _batch_done(self, files) -> None:
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

    def submit_dir(self, token: int, path: bytes, old_id: bytes | None, on_result) -> None:
        """A directory without subdirectories, for one worker to do whole."""
        self._on_result = on_result
        # weighs a quarter batch: at most four directories travel together
        self.pool.submit((token, path, old_id), self.pool.batch_bytes // 4)

    def submit_part(self, token: int, path: bytes, names: tuple, old_id: bytes | None,
                    size: int, on_result) -> None:
        """Some entries of a directory split by ``DirResult.parts``; ``size``
        the bytes they read (and so its weight in a batch)."""
        self._on_result = on_result
        self.pool.submit((token, path, names, old_id), max(size, 1))

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
