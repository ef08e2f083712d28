"""Restore a snapshot (or part of it) into a target directory.

Restores content, mode, mtime, symlinks, empty directories, owner/group when
running as root, and names that are not valid UTF-8. Every blob's keyed id is
recomputed, so a damaged repository cannot restore wrong bytes silently.
Names that could escape the target are refused (format doc, Trees).
"""
from __future__ import annotations

import os
import stat as statmod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from . import crypto
from .repository import CorruptObject, Repository
from .tree import TYPE_DIR, TYPE_FILE, TYPE_SYMLINK, UnsafeName, decode_name, safe_name


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    errors: list = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


class Restorer:
    def __init__(self, repo: Repository, target: str, *, includes: list[str] | None = None,
                 workers: int | None = None, progress=None):
        self.repo = repo
        self.target = os.fsencode(os.path.abspath(target))
        self.includes = [os.fsencode(os.path.normpath("/" + p.strip("/"))) for p in includes or []]
        self.workers = workers or (os.cpu_count() or 2)
        self.progress = progress
        self.stats = RestoreStats()
        self.as_root = os.geteuid() == 0
        self._dirs: list[tuple[bytes, dict]] = []

    # --- selection -----------------------------------------------------------------
    def _selected(self, path: bytes) -> bool:
        if not self.includes:
            return True
        return any(path == inc or path.startswith(inc.rstrip(b"/") + b"/") for inc in self.includes)

    def _leads_to_include(self, path: bytes) -> bool:
        prefix = path.rstrip(b"/") + b"/"
        return any(inc.startswith(prefix) for inc in self.includes)

    # --- run -------------------------------------------------------------------------
    def run(self, snapshot: dict) -> RestoreStats:
        from .workers import tune_malloc
        tune_malloc()
        os.makedirs(self.target, exist_ok=True)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="opskit-restore") as pool:
            self._futures = []
            self._walk(bytes.fromhex(snapshot["tree"]), b"/", pool)
            for fut in self._futures:
                fut.result()
        # directories last, deepest first, so writing files does not disturb their mtime
        for path, node in reversed(self._dirs):
            self._apply_meta(path, node)
        if self.includes and not (self.stats.files or self.stats.dirs or self.stats.symlinks):
            self.stats.errors.append({"path": ", ".join(os.fsdecode(i) for i in self.includes),
                                      "error": "no such path in the snapshot"})
        return self.stats

    def _dest(self, snap_path: bytes) -> bytes:
        return self.target + snap_path  # snap_path is absolute and built from safe names

    def _walk(self, tree_id: bytes, snap_dir: bytes, pool) -> None:
        tree = self.repo.load_tree(tree_id)
        for node in tree.get("nodes", []):
            try:
                name = safe_name(node)
            except UnsafeName as exc:
                raise CorruptObject(f"tree {tree_id.hex()[:16]}", str(exc)) from None
            snap_path = snap_dir.rstrip(b"/") + b"/" + name
            selected = self._selected(snap_path)
            kind = node.get("type")
            if kind == TYPE_DIR:
                if not (selected or self._leads_to_include(snap_path)):
                    continue
                dest = self._dest(snap_path)
                if not self._mkdir(dest):
                    continue
                if selected:
                    self.stats.dirs += 1
                    self._dirs.append((dest, node))
                self._walk(bytes.fromhex(node["subtree"]), snap_path, pool)
            elif not selected:
                continue
            elif kind == TYPE_FILE:
                self._futures.append(pool.submit(self._restore_file, self._dest(snap_path), node))
            elif kind == TYPE_SYMLINK:
                self._restore_symlink(self._dest(snap_path), node)

    def _error(self, path: bytes, exc) -> None:
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.stats.errors.append({"path": os.fsdecode(path), "error": msg})

    def _mkdir(self, dest: bytes) -> bool:
        try:
            st = os.lstat(dest)
            if not statmod.S_ISDIR(st.st_mode):
                self._error(dest, "exists and is not a directory (refusing to follow or replace it)")
                return False
            return True
        except FileNotFoundError:
            pass
        try:
            os.mkdir(dest, 0o700)
            return True
        except OSError as exc:
            self._error(dest, exc)
            return False

    def _restore_file(self, dest: bytes, node: dict) -> None:
        id_key = self.repo.keys.id_key
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            self._error(dest, exc)
            return
        written = 0
        try:
            with os.fdopen(fd, "wb", buffering=0) as fh:
                for hex_id in node.get("content", []):
                    bid = bytes.fromhex(hex_id)
                    data = self.repo.read_blob(bid)
                    if crypto.blob_id(id_key, data) != bid:
                        raise CorruptObject(f"blob {hex_id[:16]}", "content does not match its id")
                    view = memoryview(data)
                    while view:
                        n = fh.write(view)
                        view = view[n:]
                    written += len(data)
                    if self.progress:
                        self.progress.bytes_read(len(data))
        except (OSError, CorruptObject) as exc:
            self._error(dest, exc)
            return
        self._apply_meta(dest, node)
        self.stats.files += 1
        self.stats.bytes += written
        if self.progress:
            self.progress.file_done(dest, written)

    def _restore_symlink(self, dest: bytes, node: dict) -> None:
        try:
            target = decode_name(node, "target")
            if os.path.lexists(dest):
                os.unlink(dest)
            os.symlink(target, dest)
        except (OSError, UnsafeName) as exc:
            self._error(dest, exc)
            return
        self._apply_meta(dest, node, symlink=True)
        self.stats.symlinks += 1

    def _apply_meta(self, dest: bytes, node: dict, symlink: bool = False) -> None:
        try:
            if self.as_root and node.get("uid") is not None:
                os.lchown(dest, int(node["uid"]), int(node["gid"]))
            if not symlink:
                os.chmod(dest, statmod.S_IMODE(int(node["mode"])))
            mtime = int(node["mtime_ns"])
            os.utime(dest, ns=(mtime, mtime), follow_symlinks=not symlink)
        except (OSError, KeyError, ValueError) as exc:
            self._error(dest, f"metadata not restored: {exc}")
