"""Restore a snapshot (or part of it) into a target directory.

Restores content, mode, mtime, symlinks, empty directories, owner/group when
running as root, and names that are not valid UTF-8. Every blob's keyed id is
recomputed, so a damaged repository cannot restore wrong bytes silently.
Names that could escape the target are refused (format doc, Trees).

The parent walks the trees and makes directories and symlinks; file contents
are written by forked worker processes (forkpool.py), which inherit the open
repository and index.
"""
from __future__ import annotations

import os
import signal
import stat as statmod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Iterator

from . import crypto, unnamed
from .cores import available_cores
from .backends import BackendError
from .forkpool import ForkPool
from .backends.base import ObjectNotFound
from .repository import CorruptObject, Repository
from . import workers
from .fsmeta import SPECIAL_TYPES, make_special, write_xattrs
from .tree import TYPE_DIR, TYPE_FILE, TYPE_SYMLINK, UnsafeName, decode_name, safe_name

TEMP_PREFIX = b".opskit-restore-"     # files being written; renamed when complete
# A big file's written pages are handed to writeback and dropped every this
# many bytes: a restore then never piles up GiBs of dirty page cache for the
# kernel to flush (and reclaim) in bursts. 512 MiB of 64 MiB files on this
# VM's disk, restore + sync, median of 3, alternating: 2.0 s wall / 1.1 s
# system without, 1.0 / 0.4 with (benchmarks/micro_restore.py; issue 23).
DROP_STEP = 8 << 20
SPARSE_MIN = 4096                     # all-zero chunks at least this long become holes


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0      # names linked to a file restored under another name
    special: int = 0        # FIFOs, sockets, device nodes
    bytes: int = 0
    errors: list = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def apply_metadata(dest: bytes | int, node: dict, *, as_root: bool, symlink: bool = False,
                   owner_set: bool = False, mode_set: bool = False) -> str | None:
    """Owner (as root), mode and mtime from ``node``; returns an error text or None.

    ``dest`` is an open fd where we have one (files), so a symlink swapped in
    at that path meanwhile can never redirect a chmod/chown to another file;
    otherwise a path, never followed if it is a symlink. ``owner_set`` /
    ``mode_set``: the caller created the file with exactly these already.
    Extended attributes (ACLs among them) go after chown and chmod, which
    would clear or rewrite them, and before the mtime.
    """
    xattrs = node.get("xattrs")
    try:
        mode = statmod.S_IMODE(int(node["mode"]))
        mtime = int(node["mtime_ns"])
        if isinstance(dest, int):
            if as_root and not owner_set and node.get("uid") is not None:
                os.fchown(dest, int(node["uid"]), int(node["gid"]))
            if not mode_set:
                os.fchmod(dest, mode)
            problem = write_xattrs(dest, xattrs) if xattrs else None
            os.utime(dest, ns=(mtime, mtime))
            return problem
        if as_root and node.get("uid") is not None:
            os.lchown(dest, int(node["uid"]), int(node["gid"]))
        if symlink:
            problem = None
        else:
            if _LCHMOD:
                os.chmod(dest, mode, follow_symlinks=False)
            elif node.get("type") in SPECIAL_TYPES:
                os.chmod(dest, mode)    # just made by mknod in our own 0700 directory
            else:
                _chmod_dir(dest, mode)
            problem = write_xattrs(dest, xattrs) if xattrs else None
        os.utime(dest, ns=(mtime, mtime), follow_symlinks=False)
    except (OSError, KeyError, ValueError, NotImplementedError) as exc:
        return f"metadata not restored: {exc}"
    return problem


_LCHMOD = os.chmod in os.supports_follow_symlinks


def _chmod_dir(path: bytes, mode: int) -> None:
    """chmod a directory through an O_NOFOLLOW|O_DIRECTORY fd (Linux has no lchmod)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _drop_written(fd: int, start: int, end: int) -> None:
    """Start writeback of ``[start, end)`` and drop the pages of it already
    written back (the previous step's: dirty ones are skipped by the kernel)."""
    try:
        os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
    except OSError:     # advice only: a file system may refuse it
        pass


class _FileWriter:
    """Runs in a worker process: writes whole files from their chunk ids.

    A file is written without a name (O_TMPFILE, unnamed.py) and linked in
    when complete, or where that is not offered under a temporary name and
    renamed, so a failed or interrupted restore never leaves a partial file
    under the final name (issue 27)."""

    def __init__(self, repo: Repository, as_root: bool):
        self.repo = repo
        self.as_root = as_root
        self.id_key = repo.keys.id_key
        self.umask = os.umask(0)
        os.umask(self.umask)
        self.uid, self.gid = os.geteuid(), os.getegid()
        self._count = 0
        self._zero_chunks: dict[str, int] = {}     # all-zero chunk id -> length
        self._pending: bytes | None = None      # named temporary file being written
        self._unnamed = unnamed.AVAILABLE       # O_TMPFILE here (unnamed.py)
        self._threads: ThreadPoolExecutor | None = None     # made for the first big file
        self._ahead = 0
        # the pool terminates workers when the restore stops: take the partial file along
        signal.signal(signal.SIGTERM, self._terminated)

    def _terminated(self, _signum, _frame) -> None:
        self._discard()
        os._exit(1)

    def _discard(self) -> None:
        tmp, self._pending = self._pending, None
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _temp_name(self, dest: bytes) -> bytes:
        self._count += 1
        return os.path.join(os.path.dirname(dest), b"%s%d.%d" % (TEMP_PREFIX, os.getpid(), self._count))

    def _mode(self, node: dict) -> tuple[int, bool]:
        """(mode to create the file with, whether that is already its final mode).

        The file is born with its final mode when the umask leaves it intact:
        one syscall fewer per file, much of a small-file restore's metadata cost."""
        mode = statmod.S_IMODE(int(node.get("mode") or 0))
        born = bool(mode) and not mode & 0o7000 and not mode & self.umask
        return (mode if born else 0o600), born

    def _create(self, tmp: bytes, mode: int) -> int:
        """Create the named temporary file ``tmp`` (where O_TMPFILE is not offered)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        self._pending = tmp
        try:
            return os.open(tmp, flags, mode)
        except FileExistsError:     # left by a killed restore of a process with our pid
            os.unlink(tmp)
            return os.open(tmp, flags, mode)

    def _open(self, dest: bytes, mode: int) -> tuple[int, bool]:
        """(fd to write, whether it is nameless until ``_name``)."""
        if self._unnamed:
            try:
                return unnamed.open_unnamed(os.path.dirname(dest), mode), True
            except OSError as exc:
                if exc.errno not in unnamed.UNSUPPORTED:
                    raise
                self._unnamed = False   # this file system: named temp files from now on
        return self._create(self._temp_name(dest), mode), False

    def _name(self, fd: int, nameless: bool, dest: bytes) -> None:
        """Give the written file its final name, replacing what is there (never
        following a symlink): a nameless file is linked in, or linked under a
        temporary name and renamed over an existing ``dest``."""
        if nameless:
            try:
                unnamed.link_in(fd, dest)
                return
            except FileExistsError:
                tmp = self._temp_name(dest)
                unnamed.link_in(fd, tmp)
                self._pending = tmp
        os.rename(self._pending, dest)
        self._pending = None

    def _write(self, fd: int, node: dict) -> int:
        """Write the node's chunks to ``fd``, each verified against its id; returns
        the file's size. All-zero chunks become holes: a sparse file comes back
        sparse (and one of zeros does too: same content, less disk)."""
        written, hole, mark = 0, False, 0
        for hex_id, data in self._blobs(node):
            zeros = self._zero_chunks.get(hex_id)
            if zeros is None and len(data) >= SPARSE_MIN and not data[0] and not data[-1] \
                    and data.count(0) == len(data):
                zeros = self._zero_chunks[hex_id] = len(data)
            if zeros is not None:
                os.lseek(fd, zeros, os.SEEK_CUR)
                written, hole = written + zeros, True
                continue
            view = memoryview(data)
            while view:     # bare fd writes: no file object per restored file
                view = view[os.write(fd, view):]
            written, hole = written + len(data), False
            if written - mark >= DROP_STEP:
                _drop_written(fd, max(0, mark - DROP_STEP), written)
                mark = written
        if hole:            # a hole at the end: the size comes from truncate
            os.ftruncate(fd, written)
        return written

    def _verified(self, hex_id: str) -> bytes:
        """A chunk's plaintext, checked against its keyed id."""
        bid = bytes.fromhex(hex_id)
        data = self.repo.read_blob(bid)
        if crypto.blob_id(self.id_key, data) != bid:
            raise CorruptObject(f"blob {hex_id[:16]}", "content does not match its id")
        return data

    def _blobs(self, node: dict) -> Iterator[tuple[str, bytes | None]]:
        """(chunk id, plaintext) in order; None for a chunk known to be all zeros.
        A big file's chunks are read, decrypted, decompressed and checked on
        threads ahead of the writes (all of that releases the GIL), so one big
        file does not hold a restore to one core (#23)."""
        ids, zeros = node.get("content", ()), self._zero_chunks
        if int(node.get("size") or 0) < workers.PARALLEL_FILE_MIN:
            for hex_id in ids:
                yield hex_id, None if hex_id in zeros else self._verified(hex_id)
            return
        if self._threads is None:
            self._ahead = 2 * available_cores()
            self._threads = ThreadPoolExecutor(max_workers=available_cores(),
                                               thread_name_prefix="opskit-decode")
        ahead = self._ahead
        pending: deque = deque()
        try:
            for hex_id in ids:
                pending.append((hex_id, None if hex_id in zeros
                                else self._threads.submit(self._verified, hex_id)))
                if len(pending) > ahead:
                    got, future = pending.popleft()
                    yield got, future and future.result()
            while pending:
                got, future = pending.popleft()
                yield got, future and future.result()
        finally:
            for _hex_id, future in pending:     # a damaged chunk ends the file: drop the rest
                if future is not None:
                    future.cancel()

    def restore(self, dest: bytes, node: dict, plain_dir: bool = False
                ) -> tuple[bytes, int, str | None]:
        """Write one file; returns (dest, bytes written, error text or None).
        Owner is already right when we created it, it is ours and the
        directory is not setgid (one syscall fewer per file)."""
        fd, written = -1, 0
        try:
            mode, mode_set = self._mode(node)
            fd, nameless = self._open(dest, mode)
            written = self._write(fd, node)
            owner_set = (mode_set and plain_dir and node.get("uid") == self.uid
                         and node.get("gid") == self.gid)
            problem = apply_metadata(fd, node, as_root=self.as_root,
                                     owner_set=owner_set, mode_set=mode_set)
            self._name(fd, nameless, dest)
            return dest, written, problem
        except OSError as exc:
            return dest, written, exc.strerror or str(exc)
        except (CorruptObject, BackendError) as exc:   # damaged or missing pack: this file fails
            return dest, written, str(exc)
        finally:
            if fd >= 0:
                os.close(fd)
            self._discard()


def _restore_batch(writer: _FileWriter, batch: list) -> list:
    return [writer.restore(dest, node, plain_dir) for dest, node, plain_dir in batch]


# trees kept in memory between totalling and restoring (about 1 KiB a node);
# beyond this a large snapshot's trees are read a second time instead
_KEEP_TREE_NODES = 20_000


def _inode_key(node: dict) -> tuple | None:
    """The inode a hard-linked node shares with its other paths; None when it
    has one path (or comes from before link counts were kept: separate files)."""
    if int(node.get("nlink") or 1) < 2 or node.get("inode") is None:
        return None
    return node.get("dev"), node["inode"]


def _first_link(node: dict, inodes: set) -> bool:
    """Whether ``node`` is the first path of its inode met (see _second_link)."""
    key = _inode_key(node)
    if key is None:
        return True
    if key in inodes:
        return False
    inodes.add(key)
    return True


class Restorer:
    def __init__(self, repo: Repository, target: str, *, includes: list[str] | None = None,
                 files: set[bytes] | None = None, workers: int | None = None, progress=None,
                 excludes: set[bytes] | None = None):
        """``includes``: snapshot paths (and everything under them) to restore.
        ``files``: an exact set of snapshot file paths (a drill's sample).
        ``excludes``: exact snapshot paths never written (protected files held back)."""
        self.repo = repo
        self.excludes = excludes or set()
        self.target = os.fsencode(os.path.abspath(target))
        self.includes = [os.fsencode(os.path.normpath("/" + p.strip("/"))) for p in includes or []]
        self.files = files
        self._file_dirs: set[bytes] = set()
        for f in files or ():
            parent = os.path.dirname(f)
            while parent not in self._file_dirs and parent != b"/":
                self._file_dirs.add(parent)
                parent = os.path.dirname(parent)
        self.workers = max(1, workers or available_cores())
        self.progress = progress
        self.stats = RestoreStats()
        self.as_root = os.geteuid() == 0
        self._dirs: list[tuple[bytes, dict]] = []
        self._first_link: dict[tuple, bytes] = {}      # (dev, inode) -> first restored path
        self._links: list[tuple[bytes, bytes]] = []     # (path, first path of its inode)
        self._trees: dict[bytes, dict] = {}             # loaded while totalling, for the walk
        self._kept_nodes = 0

    # --- selection -----------------------------------------------------------------
    def _selected(self, path: bytes) -> bool:
        if self.files is not None:
            return path in self.files
        if not self.includes:
            return True
        return any(path == inc or path.startswith(inc.rstrip(b"/") + b"/") for inc in self.includes)

    def _leads_to_include(self, path: bytes) -> bool:
        if self.files is not None:
            return path in self._file_dirs
        prefix = path.rstrip(b"/") + b"/"
        return any(inc.startswith(prefix) for inc in self.includes)

    # --- run -------------------------------------------------------------------------
    def run(self, snapshot: dict) -> RestoreStats:
        from .workers import tune_gc, tune_malloc
        tune_malloc()
        tune_gc()
        try:
            os.makedirs(self.target, exist_ok=True)
        except OSError as exc:
            from opskit.core.errors import OperationalError
            raise OperationalError(f"restore target {os.fsdecode(self.target)}: "
                                   f"{exc.strerror or exc}") from None
        try:
            plain = not os.lstat(self.target).st_mode & statmod.S_ISGID
        except OSError:
            plain = False
        if self.progress is not None and getattr(self.progress, "wants_total", False):
            self.progress.total(*self._totals(bytes.fromhex(snapshot["tree"]), b"/", set()))
        as_root, repo = self.as_root, self.repo
        self.pool = ForkPool(self.workers, init=lambda: _FileWriter(repo, as_root),
                             handle=_restore_batch, name="opskit-restore",
                             batch_items=32, batch_bytes=16 << 20)
        self.pool.on_batch = self._files_done
        try:
            self._walk(bytes.fromhex(snapshot["tree"]), b"/", plain)
            self.pool.drain()
        except BaseException:
            self.pool.close()
            raise
        self._make_links()      # before directory mtimes: a link changes its directory
        # directories last, deepest first, so writing files does not disturb their mtime
        for path, node in reversed(self._dirs):
            problem = apply_metadata(path, node, as_root=self.as_root)
            if problem:
                self._error(path, problem)
        if self.includes and not (self.stats.files or self.stats.dirs or self.stats.symlinks
                                  or self.stats.special):
            self.stats.errors.append({"path": ", ".join(os.fsdecode(i) for i in self.includes),
                                      "error": "no such path in the snapshot"})
        return self.stats

    def _files_done(self, results: list) -> None:
        for dest, written, error in results:
            self.stats.bytes += written
            if error:
                self._error(dest, error)
                continue
            self.stats.files += 1
            if self.progress:
                self.progress.bytes_read(written)
                self.progress.file_done(dest, written)

    # --- the progress total ----------------------------------------------------------
    def _tree(self, tree_id: bytes) -> dict:
        """A tree, from those kept while totalling if it is there (read once)."""
        kept = self._trees.pop(tree_id, None)
        return kept if kept is not None else self.repo.load_tree(tree_id)

    def _totals(self, tree_id: bytes, snap_dir: bytes, inodes: set) -> tuple[int, int]:
        """Files and bytes the walk will hand to the writers, by the walk's own
        selection (includes, excludes, second hard links): the progress line's
        total (issue #22 item 8). Trees are kept for the walk up to a bound; a
        damaged one counts nothing here and is reported by the walk."""
        try:
            tree = self._trees.get(tree_id) or self.repo.load_tree(tree_id)
        except (CorruptObject, ObjectNotFound):
            return 0, 0
        nodes = tree.get("nodes", [])
        if tree_id not in self._trees and self._kept_nodes + len(nodes) <= _KEEP_TREE_NODES:
            self._kept_nodes += len(nodes)
            self._trees[tree_id] = tree
        files = size = 0
        for node in nodes:
            try:
                snap_path = snap_dir.rstrip(b"/") + b"/" + safe_name(node)
            except UnsafeName:
                continue            # the walk refuses the whole tree
            selected = self._selected(snap_path) and snap_path not in self.excludes
            if node.get("type") == TYPE_DIR and (selected or self._leads_to_include(snap_path)):
                sub = self._totals(bytes.fromhex(node["subtree"]), snap_path, inodes)
                files, size = files + sub[0], size + sub[1]
            elif selected and node.get("type") == TYPE_FILE and _first_link(node, inodes):
                files, size = files + 1, size + int(node.get("size") or 0)
        return files, size

    def _dest(self, snap_path: bytes) -> bytes:
        return self.target + snap_path  # snap_path is absolute and built from safe names

    def _walk(self, tree_id: bytes, snap_dir: bytes, plain: bool) -> None:
        """Restore one tree. ``plain``: its directory is not setgid (new files get our gid)."""
        try:
            tree = self._tree(tree_id)
        except (CorruptObject, ObjectNotFound) as exc:
            # a damaged or missing tree costs its directory, not the restore (issue 27);
            # what was in it is unknown, so the directory is what we name
            self._error(self._dest(snap_dir).rstrip(b"/") or b"/", f"not restored, nor anything in it: {exc}")
            return
        seen: set[bytes] = set()
        for node in tree.get("nodes", []):
            try:
                name = safe_name(node)
            except UnsafeName as exc:
                raise CorruptObject(f"tree {tree_id.hex()[:16]}", str(exc)) from None
            if name in seen:   # a real directory never has two; a forged tree might
                raise CorruptObject(f"tree {tree_id.hex()[:16]}",
                                    f"name {name!r} appears twice in one directory")
            seen.add(name)
            snap_path = snap_dir.rstrip(b"/") + b"/" + name
            selected = self._selected(snap_path) and snap_path not in self.excludes
            kind = node.get("type")
            if kind == TYPE_DIR:
                if not (selected or self._leads_to_include(snap_path)):
                    continue
                dest = self._dest(snap_path)
                made = self._mkdir(dest, plain)
                if made is None:
                    continue
                if selected:
                    self.stats.dirs += 1
                    self._dirs.append((dest, node))
                self._walk(bytes.fromhex(node["subtree"]), snap_path, made)
            elif not selected:
                continue
            elif self._second_link(self._dest(snap_path), node):
                continue
            elif kind == TYPE_FILE:
                self.pool.submit((self._dest(snap_path), node, plain), int(node.get("size") or 0))
            elif kind == TYPE_SYMLINK:
                self._restore_symlink(self._dest(snap_path), node)
            elif kind in SPECIAL_TYPES:
                self._restore_special(self._dest(snap_path), node)
        self.pool.poll(block=False)

    def _error(self, path: bytes, exc) -> None:
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.stats.errors.append({"path": os.fsdecode(path), "error": msg})

    def _mkdir(self, dest: bytes, parent_plain: bool) -> bool | None:
        """Make (or reuse) a directory. None: unusable; else whether it is plain
        (not setgid, so files created in it get our own group). A new directory
        inherits setgid from its parent, so it is plain when the parent is."""
        try:
            st = os.lstat(dest)
            if not statmod.S_ISDIR(st.st_mode):
                self._error(dest, "exists and is not a directory (refusing to follow or replace it)")
                return None
            return not st.st_mode & statmod.S_ISGID
        except FileNotFoundError:
            pass
        try:
            os.mkdir(dest, 0o700)   # final mode comes last (directories are restored deepest first)
            return parent_plain
        except OSError as exc:
            self._error(dest, exc)
            return None

    # --- hard links and special files ---------------------------------------------------
    def _second_link(self, dest: bytes, node: dict) -> bool:
        """True when ``node`` is an inode already restored under another path in
        this run: ``dest`` is then linked to that path once all files are written."""
        key = _inode_key(node)
        if key is None:
            return False
        first = self._first_link.setdefault(key, dest)
        if first == dest:
            return False
        self._links.append((dest, first))
        return True

    def _make_links(self) -> None:
        for dest, first in self._links:
            try:
                if os.path.lexists(dest) and not os.path.isdir(dest):
                    os.unlink(dest)
                os.link(first, dest, follow_symlinks=False)
            except FileNotFoundError:
                self._error(dest, f"hard link not made: {os.fsdecode(first)} was not restored")
                continue
            except OSError as exc:
                self._error(dest, exc)
                continue
            self.stats.hardlinks += 1

    def _restore_special(self, dest: bytes, node: dict) -> None:
        """A FIFO, socket or device node (devices need root: else listed as an error)."""
        try:
            if os.path.lexists(dest) and not os.path.isdir(dest):
                os.unlink(dest)
            make_special(dest, node)
        except OSError as exc:
            self._error(dest, f"{node['type']} not restored: {exc.strerror or exc}")
            return
        problem = apply_metadata(dest, node, as_root=self.as_root)
        if problem:
            self._error(dest, problem)
        self.stats.special += 1

    def _restore_symlink(self, dest: bytes, node: dict) -> None:
        try:
            target = decode_name(node, "target")
            if os.path.lexists(dest):
                os.unlink(dest)
            os.symlink(target, dest)
        except (OSError, UnsafeName) as exc:
            self._error(dest, exc)
            return
        problem = apply_metadata(dest, node, as_root=self.as_root, symlink=True)
        if problem:
            self._error(dest, problem)
        self.stats.symlinks += 1
