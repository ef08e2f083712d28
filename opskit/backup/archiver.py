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

from opskit import __version__

from . import crypto
from .cores import available_cores
from .pack import BLOB_TREE
from .backends import BackendError
from .repository import CorruptObject, Repository, utcnow_iso
from .tree import (TYPE_DIR, IdNames, add_xattrs, decode_name, encode_name, encode_tree,
                   join_tree, node_from_stat, special_node, unchanged)


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
    """Callbacks the CLI implements to show progress; the default does nothing.
    ``enabled`` False lets the engine skip the per-file calls altogether."""

    enabled = False

    def start(self, paths: list[str], excluded) -> None: ...

    def file_done(self, path: bytes, size: int) -> None: ...

    def bytes_read(self, n: int) -> None: ...

    def files_done(self, directory: bytes, count: int, size: int) -> None:
        """``count`` files of ``directory`` done at once (a worker did it whole)."""
        for _ in range(count):
            self.file_done(directory, 0)


def excluded_by(patterns: list[str], path: bytes) -> bool:
    """True when a glob of ``patterns`` matches the full path or the name
    (``backup.exclude``, ``--exclude``; also what ``backup run --dry-run`` skips)."""
    if not patterns:
        return False
    text = fsdecode(path)
    base = os.path.basename(text)
    return any(fnmatch.fnmatchcase(text, pat) or fnmatch.fnmatchcase(base, pat)
               for pat in patterns)


def fsdecode(path: bytes) -> str:
    return os.fsdecode(path)


class _Dir:
    """A directory being backed up: its tree is stored once it is walked and
    every file and subdirectory under it has its content."""

    __slots__ = ("nodes", "pending", "walked", "finished", "parent", "node", "old_id",
                 "old_nodes")

    def __init__(self, parent: "_Dir | None", node: dict | None, old_id: bytes | None,
                 old_nodes: list | None):
        self.nodes: list[dict] = []
        self.pending = 0
        self.walked = False
        self.finished = False     # tree stored: must happen exactly once
        self.parent = parent
        self.node = node          # this directory's node in the parent's tree
        self.old_id = old_id      # the parent snapshot's tree for this directory
        self.old_nodes = old_nodes


class _Split:
    """A leaf directory whose entries went to the workers in parts: the tree is
    joined from their encoded nodes once ``left`` reaches 0."""

    __slots__ = ("d", "node", "path", "encoded", "left")

    def __init__(self, d: _Dir, node: dict, path: bytes, parts: int):
        self.d = d                # the directory holding this one
        self.node = node          # this directory's node there
        self.path = path
        self.encoded: list[tuple[bytes, bytes]] = []    # tree.encode_node pairs
        self.left = parts


class Archiver:
    """One backup run into an open repository (caller holds a shared lock).

    The walk (stat, trees) runs here; file contents go to worker processes
    (see workers.py) and trees are stored as soon as all their files are in.
    A directory without subdirectories goes to one worker whole (its walk,
    contents and tree): no round trip per file, and the walk itself then
    runs on every core. A worker hands back one that would read too much
    split in parts, so big files are still spread over all workers; they
    send the parts' nodes encoded and this process only joins the tree.
    """

    def __init__(self, repo: Repository, *, excludes: list[str] | None = None, full: bool = False,
                 workers: int | None = None, progress: Progress | None = None):
        self.repo = repo
        self.excludes = list(excludes or [])
        self.full = full
        self.workers = max(1, workers or available_cores())
        self.progress = progress or Progress()
        self.stats = BackupStats()
        self.names = IdNames()
        # token -> (directory, node, parent's node or tree id, path) awaiting a worker
        self._waiting: dict[int, tuple] = {}
        self._declined: list[tuple[bytes, _Dir]] = []     # leaf jobs a worker handed back
        self._splits: list[tuple] = []      # leaf jobs split: (d, node, old id, path, parts)
        self._token = 0
        self._content = None
        self._show = bool(getattr(self.progress, "enabled", True))
        self.root_id: bytes | None = None

    # --- selection -----------------------------------------------------------------
    def excluded(self, path: bytes) -> bool:
        return excluded_by(self.excludes, path)

    def _error(self, path: bytes, exc: OSError | str) -> None:
        msg = exc if isinstance(exc, str) else (exc.strerror or str(exc))
        self.stats.errors.append({"path": fsdecode(path), "error": msg})

    # --- main entry -------------------------------------------------------------------
    def run(self, paths: list[str], *, tags: list[str] | None = None,
            parent: dict | None = None) -> tuple[str, dict]:
        """Back up ``paths``; returns (snapshot id, snapshot)."""
        start = time.monotonic()
        roots = sorted({os.path.abspath(p) for p in paths})
        from .workers import tune_gc, tune_malloc
        tune_malloc()
        tune_gc()
        cleanup = getattr(self.repo.backend, "remove_temp_files", None)
        if cleanup:
            cleanup()               # tmp-* left by killed writers (format doc, Write order)
        self._ensure_index()        # parent trees are found through it
        # trees are stored from this thread (no thread pool): content workers may be
        # forked at any point later, and a fork must not happen beside running threads
        self.writer = self.repo.blob_writer(0)
        self.progress.start(roots, self.excluded)
        try:
            parent_root = bytes.fromhex(parent["tree"]) if parent else None
            root = self._new_dir(None, None, parent_root)
            self._virtual_dir(b"/", [os.fsencode(r) for r in roots], root)
            self._settle()
            if self.root_id is None:
                raise RuntimeError("backup walk ended with directories still pending")
            self.writer.finish()
        except BaseException:
            if self._content is not None:
                self._content.close()
            self.writer.abort()
            raise
        content = self._content
        self.stats.blobs_new = self.writer.blobs_new + (content.blobs_new if content else 0)
        self.stats.bytes_added = self.writer.bytes_new_raw + (content.bytes_new if content else 0)
        self.stats.bytes_stored = self.writer.bytes_stored + (content.bytes_stored if content else 0)
        self.stats.duration_s = round(time.monotonic() - start, 3)
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.geteuid())
        snap = {
            "version": 1, "time": utcnow_iso(), "host": socket.gethostname(), "user": user,
            "paths": roots, "tree": self.root_id.hex(), "parent": parent["id"] if parent else None,
            "tags": sorted(set(tags or [])), "excludes": self.excludes, "full": self.full,
            "program": f"opskit {__version__}", "stats": self.stats.to_json(),
        }
        sid = self.repo.save_snapshot(snap)
        snap["id"] = sid
        return sid, snap

    # --- lazily started machinery -------------------------------------------------------
    def _ensure_index(self) -> None:
        """Load the index, re-indexing packs a crashed run left behind."""
        if not self.repo.index_loaded:
            self.repo.load_index()

    @property
    def content(self):
        """Content worker processes, forked on first use (after the index is
        loaded, so they inherit it)."""
        if self._content is None:
            from .workers import ContentWorkers, WalkOptions
            self._ensure_index()
            walk = WalkOptions(self.full, self.excluded if self.excludes else None)
            self._content = ContentWorkers(self.repo, self.workers, walk)
        return self._content

    # --- directory bookkeeping ---------------------------------------------------------
    def _new_dir(self, parent: _Dir | None, node: dict | None, old_id: bytes | None) -> _Dir:
        old_nodes = None
        if old_id is not None:
            try:
                old_nodes = self.repo.load_tree(old_id).get("nodes", [])
            except (CorruptObject, BackendError):
                old_id = None  # a damaged parent tree only costs re-reading
        d = _Dir(parent, node, old_id, old_nodes)
        if parent is not None:
            parent.pending += 1
        return d

    @staticmethod
    def _old_map(d: _Dir) -> dict[bytes, dict]:
        return {decode_name(n): n for n in d.old_nodes} if d.old_nodes else {}

    def _maybe_finish(self, d: _Dir) -> None:
        while d is not None and d.walked and d.pending == 0 and not d.finished:
            d.finished = True
            nodes = [n for n in d.nodes if not n.get("_drop")]
            nodes.sort(key=decode_name)
            if d.old_id is not None and nodes == d.old_nodes:
                tree_id = d.old_id          # unchanged directory: reuse, skip encoding
            else:
                raw = encode_tree(nodes)
                tree_id = crypto.blob_id(self.repo.keys.id_key, raw)
                self.writer.add(BLOB_TREE, tree_id, raw)
            parent = d.parent
            if parent is None:
                self.root_id = tree_id
                return
            d.node["subtree"] = tree_id.hex()
            parent.pending -= 1
            d = parent

    def _settle(self) -> None:
        """Wait for the workers; walk here the directories they declined (which
        may hand out more work), then stop them."""
        content = self._content
        while content is not None:
            self._walk_declined()
            self._submit_splits()
            content.flush(self._on_result)
            if not content.outstanding:
                break
            content.poll(self._on_result, block=True)
        if content is not None:
            content.drain(self._on_result)

    def _walk_declined(self) -> None:
        while self._declined:
            path, sub = self._declined.pop()
            self._walk(path, sub)

    def _dir_result(self, res) -> None:
        if res.nodes is not None:
            self._part_result(res)
            return
        d, node, old_id, path = self._waiting.pop(res.token)
        if res.tree_id is None and res.parts:
            # handed out from the walk or _settle, not from inside this callback:
            # submitting may wait for (and so handle) more results, without bound
            self._splits.append((d, node, old_id, path, res.parts))
            for epath, error in res.errors:
                self._error(epath, error)
            return
        if res.tree_id is None:
            # declined: walk it here, file by file (not from inside this callback)
            self._declined.append((path, self._new_dir(d, node, old_id)))
            d.pending -= 1
            return
        node["subtree"] = res.tree_id.hex()
        self._tally(res, path)
        d.pending -= 1
        self._maybe_finish(d)

    def _submit_splits(self) -> None:
        """Leaf directories too big for one worker: their parts go to every
        worker, which send back encoded nodes; the directory holding each
        waits (its pending count still holds it) until ``_part_result``
        joins the tree."""
        content = self._content
        while self._splits:
            d, node, old_id, path, parts = self._splits.pop()
            split = _Split(d, node, path, len(parts))
            for names, size in parts:
                self._token += 1
                self._waiting[self._token] = (split, None, None, path)
                content.submit_part(self._token, path, names, old_id, size, self._on_result)

    def _part_result(self, res) -> None:
        split = self._waiting.pop(res.token)[0]
        self._tally(res, split.path)
        split.encoded.extend(res.nodes)
        split.left -= 1
        if split.left:
            return
        # the tree's bytes are the ones encode_tree gives: an unchanged directory
        # gets its old id back, and the writer finds that in the index
        raw = join_tree(split.encoded)
        tree_id = crypto.blob_id(self.repo.keys.id_key, raw)
        self.writer.add(BLOB_TREE, tree_id, raw)
        split.node["subtree"] = tree_id.hex()
        split.d.pending -= 1
        self._maybe_finish(split.d)

    def _tally(self, res, path: bytes) -> None:
        """Add a worker's counts for (part of) directory ``path`` to the stats."""
        stats = self.stats
        stats.files += res.files
        stats.bytes += res.size
        stats.files_new += res.new
        stats.files_changed += res.changed
        stats.files_unmodified += res.unmodified
        for epath, error in res.errors:
            self._error(epath, error)
        if self._show:
            self.progress.bytes_read(res.size)
            self.progress.files_done(path, res.files, res.size)

    def _on_result(self, kind: str, payload) -> None:
        from .workers import DirResult      # loaded already: results come from there
        if kind == "packs":
            # a worker's last word: it wrote the index file naming these packs
            # itself; merged into the in-memory index only if read later
            for pack_id, encoded in payload:
                self.repo.index.add_pack_deferred(pack_id, encoded)
            return
        for res in payload:
            if isinstance(res, DirResult):
                self._dir_result(res)
                continue
            d, node, old, path = self._waiting.pop(res.token)
            if res.error is not None:
                self._error(path, res.error)
                node["_drop"] = True
            else:
                ids = res.ids
                content = [ids[i:i + 32].hex() for i in range(0, len(ids), 32)]
                node["content"] = content
                node["size"] = res.size
                if res.xattrs:
                    node["xattrs"] = res.xattrs
                self.stats.files += 1
                self.stats.bytes += res.size
                if old is None:
                    self.stats.files_new += 1
                elif old.get("content") != content:
                    self.stats.files_changed += 1
                else:
                    self.stats.files_unmodified += 1
                if self._show:
                    self.progress.bytes_read(res.size)
                    self.progress.file_done(path, res.size)
            d.pending -= 1
            self._maybe_finish(d)

    # --- walking ---------------------------------------------------------------------
    def _virtual_dir(self, prefix: bytes, roots: list[bytes], d: _Dir) -> None:
        """Directory ``prefix`` holding only the parts leading to ``roots``."""
        old = self._old_map(d)
        children: dict[bytes, list[bytes]] = {}
        for root in roots:
            rel = root[len(prefix):].lstrip(b"/")
            children.setdefault(rel.split(b"/", 1)[0], []).append(root)
        for name, under in sorted(children.items()):
            path = os.path.join(prefix, name)
            if path in under:   # this child is itself a backed-up root
                try:
                    st = os.lstat(path)
                except OSError as exc:
                    self._error(path, exc)
                    continue
                self._entry(d, path, name, st, old.get(name))
                continue
            try:
                st = os.lstat(path)
            except OSError as exc:
                self._error(path, exc)
                continue
            node = add_xattrs(node_from_stat(name, st, self.names), path)
            d.nodes.append(node)
            prev = old.get(name)
            sub = self._new_dir(d, node, bytes.fromhex(prev["subtree"])
                                if prev and prev.get("subtree") else None)
            self._virtual_dir(path, under, sub)
        d.walked = True
        self._maybe_finish(d)

    def _entry(self, d: _Dir, path: bytes, name: bytes, st, old: dict | None) -> None:
        mode = st.st_mode
        if statmod.S_ISREG(mode):
            if not self.full and unchanged(old, st):
                # same size, mtime, ctime (so mode and owner too) and inode: the
                # parent's node is still true; reusing it keeps the tree identical
                d.nodes.append(old)
                self.stats.files += 1
                self.stats.files_unmodified += 1
                self.stats.bytes += st.st_size
                if self._show:
                    self.progress.bytes_read(st.st_size)
                    self.progress.file_done(path, st.st_size)
                return
            node = node_from_stat(name, st, self.names)
            d.nodes.append(node)
            self._token += 1
            self._waiting[self._token] = (d, node, old, path)
            d.pending += 1
            self.content.submit(self._token, path, st.st_size, self._on_result)
        elif statmod.S_ISDIR(mode):
            node = add_xattrs(node_from_stat(name, st, self.names), path)
            d.nodes.append(node)
            old_id = (bytes.fromhex(old["subtree"])
                      if old and old.get("type") == TYPE_DIR and old.get("subtree") else None)
            self.stats.dirs += 1
            if st.st_nlink == 2:
                # no subdirectories (POSIX link count; filesystems that report 1
                # take the general path): one worker does the whole directory
                self._token += 1
                self._waiting[self._token] = (d, node, old_id, path)
                d.pending += 1
                self.content.submit_dir(self._token, path, old_id, self._on_result)
                return
            sub = self._new_dir(d, node, old_id)
            self._walk(path, sub)
        elif statmod.S_ISLNK(mode):
            node = node_from_stat(name, st, self.names)
            try:
                encode_name(node, "target", os.readlink(path))
            except OSError as exc:
                self._error(path, exc)
                return
            d.nodes.append(node)
        else:                                   # FIFO, socket, device node
            d.nodes.append(special_node(name, st, self.names, path))

    def _walk(self, path: bytes, d: _Dir) -> None:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self._error(path, exc)
            d.node["_drop"] = True
            d.walked = True
            self._maybe_finish(d)
            return
        old = self._old_map(d)
        excludes, incremental, show, stats = self.excludes, not self.full, self._show, self.stats
        is_reg = statmod.S_ISREG
        stated = []
        for entry in entries:
            child = entry.path
            if excludes and self.excluded(child):
                continue
            try:
                stated.append((entry, entry.stat(follow_symlinks=False)))
            except OSError as exc:
                self._error(child, exc)
        # Files first, biggest first, then subdirectories: a big file handed out
        # late keeps one worker busy while the other has run out of work (tree
        # nodes are sorted by name when the directory is finished, so order here
        # changes nothing in the snapshot).
        stated.sort(key=lambda es: (not is_reg(es[1].st_mode), -es[1].st_size))
        for entry, st in stated:
            child = entry.path
            prev = old.get(entry.name)
            # hot path of an incremental run: an unchanged file keeps its node as is
            if incremental and prev is not None and is_reg(st.st_mode) and unchanged(prev, st):
                d.nodes.append(prev)
                stats.files += 1
                stats.files_unmodified += 1
                stats.bytes += st.st_size
                if show:
                    self.progress.bytes_read(st.st_size)
                    self.progress.file_done(child, st.st_size)
                continue
            self._entry(d, child, entry.name, st, prev)
        d.walked = True
        if self._content is not None:
            self._content.poll(self._on_result, block=False)
            self._submit_splits()
        self._maybe_finish(d)
