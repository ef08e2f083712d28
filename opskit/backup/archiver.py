"""The backup engine: walk paths, chunk, deduplicate, store, write a snapshot.

R-BAK-1 (encrypted before stored), R-BAK-4 (incremental by default, --full
re-reads everything while dedup keeps it small).
"""
from __future__ import annotations

import fnmatch
import getpass
import os
import socket
import stat as statmod
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from opskit import __version__

from . import crypto
from .chunker import chunk_stream
from .pack import BLOB_DATA, BLOB_TREE
from .repository import Repository, utcnow_iso
from .tree import (TYPE_DIR, TYPE_FILE, TYPE_SYMLINK, IdNames, decode_name, encode_name,
                   encode_tree, node_from_stat, unchanged)


@dataclass
class BackupStats:
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    blobs_new: int = 0
    bytes_added: int = 0        # plaintext bytes of new blobs
    bytes_stored: int = 0       # after compression and encryption
    errors: list = field(default_factory=list)   # [{"path":..., "error":...}]
    duration_s: float = 0.0

    def to_json(self) -> dict:
        data = asdict(self)
        data["errors"] = len(self.errors)
        return data


class Progress:
    """Callbacks the CLI implements to show progress; the default does nothing."""

    def file_done(self, path: bytes, size: int) -> None: ...

    def bytes_read(self, n: int) -> None: ...


def fsdecode(path: bytes) -> str:
    return os.fsdecode(path)


class Archiver:
    """One backup run into an open repository (caller holds a shared lock)."""

    def __init__(self, repo: Repository, *, excludes: list[str] | None = None, full: bool = False,
                 workers: int | None = None, progress: Progress | None = None):
        self.repo = repo
        self.excludes = list(excludes or [])
        self.full = full
        self.workers = workers
        self.progress = progress or Progress()
        self.stats = BackupStats()
        self.names = IdNames()
        cfg = repo.config
        self._chunk = (cfg.chunk_min, cfg.chunk_avg, cfg.chunk_max)

    # --- selection -----------------------------------------------------------------
    def excluded(self, path: bytes) -> bool:
        if not self.excludes:
            return False
        text = fsdecode(path)
        base = os.path.basename(text)
        return any(fnmatch.fnmatchcase(text, pat) or fnmatch.fnmatchcase(base, pat)
                   for pat in self.excludes)

    def _error(self, path: bytes, exc: OSError | str) -> None:
        msg = exc if isinstance(exc, str) else (exc.strerror or str(exc))
        self.stats.errors.append({"path": fsdecode(path), "error": msg})

    # --- main entry -------------------------------------------------------------------
    def run(self, paths: list[str], *, tags: list[str] | None = None,
            parent: dict | None = None) -> tuple[str, dict]:
        """Back up ``paths``; returns (snapshot id, snapshot)."""
        start = time.monotonic()
        roots = sorted({os.path.abspath(p) for p in paths})
        self.writer = self.repo.blob_writer(self.workers)
        try:
            parent_root = bytes.fromhex(parent["tree"]) if parent else None
            root_id = self._virtual_dir(b"/", [os.fsencode(r) for r in roots], parent_root)
            self.writer.finish()
        except BaseException:
            self.writer.abort()
            raise
        self.stats.blobs_new = self.writer.blobs_new
        self.stats.bytes_added = self.writer.bytes_new_raw
        self.stats.bytes_stored = self.writer.bytes_stored
        self.stats.duration_s = round(time.monotonic() - start, 3)
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.geteuid())
        snap = {
            "version": 1, "time": utcnow_iso(), "host": socket.gethostname(), "user": user,
            "paths": roots, "tree": root_id.hex(), "parent": parent["id"] if parent else None,
            "tags": sorted(set(tags or [])), "excludes": self.excludes, "full": self.full,
            "program": f"opskit {__version__}", "stats": self.stats.to_json(),
        }
        sid = self.repo.save_snapshot(snap)
        snap["id"] = sid
        return sid, snap

    # --- trees -----------------------------------------------------------------------
    def _parent_nodes(self, tree_id: bytes | None) -> dict[bytes, dict]:
        if tree_id is None:
            return {}
        try:
            tree = self.repo.load_tree(tree_id)
        except Exception:
            return {}  # a damaged parent only costs re-reading
        return {decode_name(n): n for n in tree.get("nodes", [])}

    def _store_tree(self, nodes: list[dict]) -> bytes:
        raw = encode_tree(nodes)
        bid = crypto.blob_id(self.repo.keys.id_key, raw)
        self.writer.add(BLOB_TREE, bid, raw)
        return bid

    def _virtual_dir(self, prefix: bytes, roots: list[bytes], parent_tree: bytes | None) -> bytes:
        """Tree for directory ``prefix`` holding only the parts leading to ``roots``."""
        parent_nodes = self._parent_nodes(parent_tree)
        children: dict[bytes, list[bytes]] = {}
        for root in roots:
            rel = root[len(prefix):].lstrip(b"/") if root != prefix else b""
            head = rel.split(b"/", 1)[0]
            children.setdefault(head, []).append(root)
        nodes = []
        for name, under in sorted(children.items()):
            path = os.path.join(prefix, name)
            old = parent_nodes.get(name)
            if path in under:   # this child is itself a backed-up root
                node = self._node(path, name, old)
            else:
                try:
                    st = os.lstat(path)
                except OSError as exc:
                    self._error(path, exc)
                    continue
                node = node_from_stat(name, st, self.names)
                sub = bytes.fromhex(old["subtree"]) if old and old.get("subtree") else None
                node["subtree"] = self._virtual_dir(path, under, sub).hex()
            if node is not None:
                nodes.append(node)
        return self._store_tree(nodes)

    def _node(self, path: bytes, name: bytes, old: dict | None) -> dict | None:
        try:
            st = os.lstat(path)
        except OSError as exc:
            self._error(path, exc)
            return None
        return self._node_from(path, name, st, old)

    def _node_from(self, path: bytes, name: bytes, st, old: dict | None) -> dict | None:
        mode = st.st_mode
        if statmod.S_ISREG(mode):
            node = node_from_stat(name, st, self.names)
            return self._file(path, st, node, old)
        if statmod.S_ISDIR(mode):
            node = node_from_stat(name, st, self.names)
            sub = bytes.fromhex(old["subtree"]) if old and old.get("type") == TYPE_DIR else None
            tree_id = self._dir(path, sub)
            if tree_id is None:
                return None
            node["subtree"] = tree_id.hex()
            self.stats.dirs += 1
            return node
        if statmod.S_ISLNK(mode):
            node = node_from_stat(name, st, self.names)
            try:
                encode_name(node, "target", os.readlink(path))
            except OSError as exc:
                self._error(path, exc)
                return None
            return node
        return None  # sockets, fifos, devices: not backed up

    def _dir(self, path: bytes, parent_tree: bytes | None) -> bytes | None:
        parent_nodes = self._parent_nodes(parent_tree)
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            self._error(path, exc)
            return None
        nodes = []
        for entry in entries:
            child = entry.path
            if self.excluded(child):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                self._error(child, exc)
                continue
            node = self._node_from(child, entry.name, st, parent_nodes.get(entry.name))
            if node is not None:
                nodes.append(node)
        return self._store_tree(nodes)

    def _file(self, path: bytes, st, node: dict, old: dict | None) -> dict | None:
        stats = self.stats
        if not self.full and unchanged(old, st):
            node["content"] = old["content"]
            stats.files += 1
            stats.files_unmodified += 1
            stats.bytes += st.st_size
            self.progress.bytes_read(st.st_size)
            self.progress.file_done(path, st.st_size)
            return node
        try:
            content, size = self._read_content(path)
        except OSError as exc:
            self._error(path, exc)
            return None
        node["content"] = content
        node["size"] = size
        stats.files += 1
        stats.bytes += size
        if old is None:
            stats.files_new += 1
        elif old.get("content") != content:
            stats.files_changed += 1
        else:
            stats.files_unmodified += 1
        self.progress.file_done(path, size)
        return node

    def _read_content(self, path: bytes) -> tuple[list[str], int]:
        id_key = self.repo.keys.id_key
        lo, avg, hi = self._chunk
        ids: list[str] = []
        size = 0
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOATIME", 0)
        try:
            fd = os.open(path, flags)
        except PermissionError:
            fd = os.open(path, flags & ~getattr(os, "O_NOATIME", 0))
        with os.fdopen(fd, "rb", buffering=0) as fh:
            first = fh.read(lo + 1)
            if len(first) <= lo:          # small file: one blob, no chunker needed
                chunks = [first] if first else []
            else:
                chunks = chunk_stream(fh, lo, avg, hi, first=first)
            for chunk in chunks:
                bid = crypto.blob_id(id_key, chunk)
                self.writer.add(BLOB_DATA, bid, chunk)
                ids.append(bid.hex())
                size += len(chunk)
                self.progress.bytes_read(len(chunk))
        return ids, size
