"""Byte streams into the repository as file nodes, and the snapshot around them.

A database backup has no files on disk: a stream (COPY output, pg_dump's
archive, a command's stdout) is cut with the repository's chunker straight
from the pipe, deduplicated and stored, and becomes a file node of a tree,
so list/restore/check/replicate/prune treat it like any backed-up file.
Nothing is written to a temporary file.
"""
from __future__ import annotations

import getpass
import io
import os
import socket
import subprocess
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Callable, Iterable, Iterator

from opskit import __version__

from .. import crypto
from ..chunker import chunk_stream
from ..pack import BLOB_DATA, BLOB_TREE
from ..repository import CorruptObject, Repository, utcnow_iso
from ..tree import TYPE_DIR, TYPE_FILE, IdNames, decode_name, encode_name, encode_tree, safe_name


class IterReader(io.RawIOBase):
    """A readable file over an iterator of byte blocks; ``tap`` sees every block."""

    def __init__(self, blocks: Iterable, tap: Callable[[memoryview], None] | None = None):
        self._it = iter(blocks)
        self._rest = memoryview(b"")   # what the last read took but could not hand out
        self._tap = tap

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        """Fill ``b`` from as many blocks as fit. COPY yields one row per block:
        rows are appended to a bytearray (one C call each, the row freed at
        once) and copied into ``b`` in one go; slicing each row into ``b``
        cost ~1 us a row, most of a logical backup's own time
        (benchmarks/bench_db.py). The tap sees big spans, not rows."""
        view = memoryview(b).cast("B")
        want = len(view)
        if len(self._rest) >= want:          # small reads (tarfile) of a big block
            data = self._rest
        else:
            acc = bytearray(self._rest)
            for block in self._it:
                acc += block
                if len(acc) >= want:
                    break
            data = memoryview(acc)
        filled = min(want, len(data))
        view[:filled] = data[:filled]
        self._rest = data[filled:]
        if self._tap is not None and filled:
            self._tap(view[:filled])
        return filled


class TapReader(io.RawIOBase):
    """A readable file passing ``fh``'s bytes through ``tap`` (hash, count)."""

    def __init__(self, fh: BinaryIO, tap: Callable[[memoryview], None]):
        self._fh = fh
        self._tap = tap

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._fh.readinto(b)
        if n:
            self._tap(memoryview(b)[:n])
        return n or 0


def store_stream(repo: Repository, writer, fh: BinaryIO, previous=None) -> tuple[list[str], int]:
    """Chunk ``fh`` to its end into ``writer``; (blob ids hex, bytes). With
    ``previous`` (db.deltas.PreviousChunks: this stream in the last backup)
    a new chunk may be stored as a delta against the old chunk at its place."""
    cfg = repo.config
    ids, size = [], 0
    for chunk in chunk_stream(fh, cfg.chunk_min, cfg.chunk_avg, cfg.chunk_max):
        if not chunk:
            continue
        data = bytes(chunk)
        bid = crypto.blob_id(repo.keys.id_key, data)
        old = previous.base_for(size, bid) if previous is not None else None
        if old is None:
            writer.add(BLOB_DATA, bid, data)
        else:
            writer.add_delta(bid, data, old)
        ids.append(bid.hex())
        size += len(data)
    return ids, size


def store_command(repo: Repository, writer, cmd: list[str], *, env: dict | None = None,
                  tap: Callable[[memoryview], None] | None = None, previous=None
                  ) -> tuple[list[str], int, int, bytes]:
    """Run ``cmd`` and chunk its stdout into ``writer`` (``tap`` sees every byte,
    ``previous`` as for ``store_stream``);
    (blob ids, bytes, exit code, stderr). On an exception the program is killed
    and the writer aborted. OSError when it cannot be started."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env)
    try:
        source = TapReader(proc.stdout, tap) if tap else proc.stdout
        ids, size = store_stream(repo, writer, source, previous)
    except BaseException:
        proc.kill()
        writer.abort()
        raise
    finally:
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait()
    return ids, size, proc.returncode, err


def _verified_blob(repo: Repository, hex_id: str) -> bytes:
    bid = bytes.fromhex(hex_id)
    data = repo.read_blob(bid)
    if crypto.blob_id(repo.keys.id_key, data) != bid:
        raise CorruptObject(f"blob {hex_id[:16]}", "content does not match its id")
    return data


def read_content(repo: Repository, node: dict, threads: int = 0) -> Iterator[bytes]:
    """A stored file's bytes, blob by blob, each checked against its keyed id.
    With ``threads`` the next blobs are read and decoded on that many threads
    ahead of the consumer (reading, AES, zstd and BLAKE3 release the GIL)."""
    ids = node.get("content", ())
    if threads <= 0:
        for hex_id in ids:
            yield _verified_blob(repo, hex_id)
        return
    pending: deque = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="opskit-decode") as pool:
        try:
            for hex_id in ids:
                pending.append(pool.submit(_verified_blob, repo, hex_id))
                if len(pending) > 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:          # a damaged blob ends the stream: drop the rest
                future.cancel()


class TreeBuilder:
    """Files at absolute paths -> nested tree blobs (format doc, Trees)."""

    def __init__(self, repo: Repository, writer):
        self.repo = repo
        self.writer = writer
        self.now_ns = time.time_ns()
        self._names = IdNames()
        self._root: dict = {}
        self._files: dict[str, dict] = {}

    def _meta(self, name: str, kind: str, mode: int) -> dict:
        node: dict = {"type": kind}
        encode_name(node, "name", name.encode())
        uid, gid = os.geteuid(), os.getegid()
        node.update({"mode": mode, "uid": uid, "gid": gid, "user": self._names.user(uid),
                     "group": self._names.group(gid), "mtime_ns": self.now_ns,
                     "ctime_ns": self.now_ns, "inode": 0, "dev": 0})
        return node

    def add_file(self, path: str, ids: list[str], size: int) -> None:
        """A file node (mode 0600: dumps hold personal data) at ``path``."""
        *dirs, name = path.strip("/").split("/")
        folder = self._root
        for d in dirs:
            folder = folder.setdefault(d, {})
        node = self._meta(name, TYPE_FILE, 0o100600)
        node.update({"size": size, "content": ids})
        folder[name] = node
        self._files[path] = node

    def _store(self, folder: dict) -> bytes:
        nodes = []
        for name, entry in folder.items():
            if entry.get("type") == TYPE_FILE and "content" in entry:
                nodes.append(entry)
                continue
            node = self._meta(name, TYPE_DIR, 0o40700)
            node["subtree"] = self._store(entry).hex()
            nodes.append(node)
        raw = encode_tree(nodes)
        tree_id = crypto.blob_id(self.repo.keys.id_key, raw)
        self.writer.add(BLOB_TREE, tree_id, raw)
        return tree_id

    def finish(self, bases: Callable[[str, list[str]], list[str]] | None = None) -> bytes:
        """Store every tree; the root tree's id. ``bases(path, ids)`` names the
        base blobs a file's delta chunks need (node key "bases", when any)."""
        for path, node in self._files.items():
            needed = bases(path, node["content"]) if bases else []
            if needed:
                node["bases"] = needed
        return self._store(self._root)


def save_snapshot(repo: Repository, writer, root: bytes, *, kind: str, paths: list[str],
                  tags: list[str], stats: dict, extra: dict) -> tuple[str, dict]:
    """Packs and index first, then the snapshot (format doc, Write order)."""
    writer.finish()
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.geteuid())
    snap = {"version": 1, "kind": kind, "time": utcnow_iso(), "host": socket.gethostname(),
            "user": user, "paths": paths, "tree": root.hex(), "parent": None,
            "tags": sorted(set(tags)), "excludes": [], "full": True,
            "program": f"opskit {__version__}", "stats": stats, **extra}
    sid = repo.save_snapshot(snap)
    snap["id"] = sid
    return sid, snap


def find_files(repo: Repository, snap: dict) -> dict[str, dict]:
    """Every file node of a snapshot by its absolute path."""
    out: dict[str, dict] = {}
    stack = [(bytes.fromhex(snap["tree"]), "")]
    while stack:
        tree_id, base = stack.pop()
        for node in repo.load_tree(tree_id).get("nodes", ()):
            safe_name(node)
            path = base + "/" + decode_name(node).decode("utf-8", "surrogateescape")
            if node.get("type") == TYPE_DIR:
                stack.append((bytes.fromhex(node["subtree"]), path))
            elif node.get("type") == TYPE_FILE:
                out[path] = node
    return out
