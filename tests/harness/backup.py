"""Helpers for the backup tests: odd source trees, byte-exact tree comparison,
fast engine-level repositories and a thin CLI wrapper.

Paths are handled as bytes throughout so names that are not valid UTF-8
survive (``os.fsencode``).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import random
import stat
import subprocess
import sys
from dataclasses import dataclass

from tests.harness.cli import CliRun, run_opskit

PASSPHRASE = "correct horse battery staple"
ENV = {"OPSKIT_PASSPHRASE": PASSPHRASE}
FAST_KDF_N = 2 ** 10          # scrypt cost for engine-made repositories (the default is slow)
CHUNK_AVG = 64 << 10          # smallest average the config allows: min 16 KiB, max 256 KiB

AS_ROOT = os.geteuid() == 0
ODD_UID, ODD_GID = 1234, 2345
LINK_UID, LINK_GID = 4321, 5432

# names that must survive a round trip (bytes: some are not valid UTF-8)
ODD_NAMES = [
    b"\xff\xfe latin-1 \xe9t\xe9",          # not UTF-8
    b"new\nline",
    b"tab\there",
    b" leading and trailing space ",
    b"-rf",
    b"--help",
    b"back\\slash",
    b"glob*?[x]",
    "caf\u00e9 composed".encode(),          # NFC
    "cafe\u0301 decomposed".encode(),       # NFD: a different name with the same look
    "\u65e5\u672c\u8a9e \U0001f600".encode(),
    b"...",
    b"..hidden",
    b".hidden",
    b"x" * 255,                               # longest name most file systems allow
    b"quote\"'`$(echo)",
    b"\r carriage",
    b"%s%n",
]


def fs(path) -> bytes:
    return os.fsencode(path)


def write(path, data: bytes, mode: int | None = None, mtime_ns: int | None = None) -> None:
    with open(fs(path), "wb") as fh:
        fh.write(data)
    if mode is not None:
        os.chmod(fs(path), mode)
    if mtime_ns is not None:
        os.utime(fs(path), ns=(mtime_ns, mtime_ns))


def set_mtime(path, mtime_ns: int, *, symlink: bool = False) -> None:
    os.utime(fs(path), ns=(mtime_ns, mtime_ns), follow_symlinks=not symlink)


def make_tree(root, *, seed: int = 1, big_bytes: int = 0) -> bytes:
    """A directory full of edge cases; returns its path as bytes.

    Odd names (incl. non-UTF-8), 0-byte files, empty dirs, nested dirs,
    symlinks (relative, absolute, dangling, to a dir, non-UTF-8 target), modes
    0640/0755/0600/0444/0000/setuid/setgid-dir/sticky-dir, nanosecond mtimes in
    the past and future, and (as root) foreign owners. ``big_bytes`` adds a
    random file that spans many chunks.
    """
    rng = random.Random(seed)
    root = fs(root)
    os.makedirs(root, exist_ok=True)
    j = lambda *p: os.path.join(root, *p)  # noqa: E731
    mt = [1_000_000_000_123_456_789 + i * 86_400_000_000_123 for i in range(64)]

    for i, name in enumerate(ODD_NAMES):
        write(j(name), b"content of " + name + bytes([i]) * i, 0o644, mt[i])
    write(j(b"empty"), b"", 0o600, mt[20])
    write(j(b"one-byte"), b"\0", 0o640, mt[21])
    write(j(b"exec.sh"), b"#!/bin/sh\necho hi\n", 0o755, mt[22])
    write(j(b"readonly"), b"ro", 0o444, mt[23])
    write(j(b"no-perms"), b"nobody may read this (but root)", 0o000, mt[24])
    write(j(b"setuid"), b"suid", 0o4755, mt[25])
    write(j(b"compressible.txt"), b"the same line over and over\n" * 20000, 0o644, mt[26])
    write(j(b"random.bin"), rng.randbytes(300_000), 0o644, 4_102_444_800_000_000_001)  # 2100
    write(j(b"ancient"), b"old", 0o644, 1)   # 1 ns after the epoch
    write(j(b"pre-epoch"), b"1969", 0o644, -123_456_789_000)
    if big_bytes:
        write(j(b"big.bin"), rng.randbytes(big_bytes), 0o644, mt[27])

    # directories
    os.makedirs(j(b"deep", b"a", b"b", b"c", b"d"))
    write(j(b"deep", b"a", b"b", b"c", b"d", b"leaf"), b"leaf", 0o644, mt[28])
    os.mkdir(j(b"empty-dir"))
    os.mkdir(j(b"empty \xff dir"))
    os.mkdir(j(b"setgid-dir"))
    write(j(b"setgid-dir", b"inside"), b"in setgid dir", 0o664, mt[29])
    os.mkdir(j(b"setgid-dir", b"sub"))
    os.mkdir(j(b"sticky-dir"))
    os.mkdir(j(b"private-dir"))
    write(j(b"private-dir", b"secret"), b"s3cret", 0o600, mt[30])
    os.mkdir(j(ODD_NAMES[0] + b" dir"))
    write(j(ODD_NAMES[0] + b" dir", ODD_NAMES[1]), b"odd in odd", 0o644, mt[31])

    # symlinks
    links = {
        b"link-rel": b"exec.sh",
        b"link-abs": b"/etc/hostname",
        b"link-dangling": b"does/not/exist",
        b"link-dir": b"deep/a",
        b"link-odd-target": b"\xff\xfe latin-1 \xe9t\xe9",
        b"link-\xfe-name": b"empty",
        b"link-newline": b"new\nline",
        b"link-up": b"../outside-is-fine-for-a-symlink-target",
    }
    for i, (name, target) in enumerate(sorted(links.items())):
        os.symlink(target, j(name))
        set_mtime(j(name), mt[40 + i], symlink=True)

    if AS_ROOT:
        os.chown(j(b"one-byte"), ODD_UID, ODD_GID)
        os.chown(j(b"private-dir"), ODD_UID, ODD_GID)
        os.chown(j(b"private-dir", b"secret"), ODD_UID, ODD_GID)
        os.lchown(j(b"link-rel"), LINK_UID, LINK_GID)
        os.chown(j(b"setgid-dir"), 0, ODD_GID)
        os.chmod(j(b"setuid"), 0o4755)      # chown clears set-id bits: set it again

    # directory modes and mtimes last, deepest first (adding entries changes a dir's mtime)
    os.chmod(j(b"setgid-dir"), 0o2775)
    os.chmod(j(b"sticky-dir"), 0o1777)
    os.chmod(j(b"private-dir"), 0o700)
    os.chmod(j(b"empty-dir"), 0o750)
    dirs = []
    for dirpath, dirnames, _files in os.walk(root):
        dirs.extend(os.path.join(dirpath, d) for d in dirnames)
    for k, d in enumerate(sorted(dirs, key=len, reverse=True)):
        set_mtime(d, mt[50 + k % 10] + k)
    set_mtime(root, mt[63])
    return root


@dataclass(frozen=True)
class Entry:
    type: str
    mode: int | None
    uid: int
    gid: int
    mtime_ns: int
    size: int | None
    digest: str | None
    target: bytes | None


BLOCK = 1 << 20
ZERO_BLOCK = bytes(BLOCK)


def content_digest(path, size: int) -> str:
    """SHA-256 of a file's content, equal for equal content whatever the hole layout:
    all-zero blocks are skipped, and holes (SEEK_DATA) are never read, so a 4 GiB
    sparse file costs only its data."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        pos = 0
        while pos < size:
            try:
                pos = os.lseek(fh.fileno(), pos, os.SEEK_DATA) // BLOCK * BLOCK
            except OSError:          # ENXIO: only a hole is left
                break
            fh.seek(pos)
            block = fh.read(BLOCK)
            if block != ZERO_BLOCK[:len(block)]:
                h.update(pos.to_bytes(8, "big") + block)
            pos += BLOCK
    return h.hexdigest()


def manifest(root, *, owners: bool = AS_ROOT) -> dict[bytes, Entry]:
    """Everything a restore must reproduce, keyed by path relative to ``root``
    (``b"."`` is ``root`` itself). Symlinks are never followed."""
    root = fs(root)
    out: dict[bytes, Entry] = {}

    def add(path: bytes, rel: bytes) -> None:
        st = os.lstat(path)
        uid, gid = (st.st_uid, st.st_gid) if owners else (-1, -1)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = Entry("symlink", None, uid, gid, st.st_mtime_ns, None, None, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = Entry("dir", stat.S_IMODE(st.st_mode), uid, gid, st.st_mtime_ns, None, None, None)
        elif stat.S_ISREG(st.st_mode):
            out[rel] = Entry("file", stat.S_IMODE(st.st_mode), uid, gid, st.st_mtime_ns,
                             st.st_size, content_digest(path, st.st_size), None)
        else:
            out[rel] = Entry("other", stat.S_IMODE(st.st_mode), uid, gid, st.st_mtime_ns,
                             None, None, None)

    add(root, b".")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            add(path, os.path.relpath(path, root))
    return out


def assert_same_tree(src, restored, *, owners: bool = AS_ROOT) -> None:
    """Byte-for-byte content and metadata equality of two trees, with a readable diff."""
    a, b = manifest(src, owners=owners), manifest(restored, owners=owners)
    problems = []
    for rel in sorted(set(a) | set(b)):
        if rel not in b:
            problems.append(f"missing in restore: {rel!r}")
        elif rel not in a:
            problems.append(f"extra in restore: {rel!r}")
        elif a[rel] != b[rel]:
            diffs = {k: (getattr(a[rel], k), getattr(b[rel], k)) for k in Entry.__dataclass_fields__
                     if getattr(a[rel], k) != getattr(b[rel], k)}
            problems.append(f"differs: {rel!r}: {diffs}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:40])


def restored_path(target, src) -> bytes:
    """Where ``src`` lands under a restore target (the snapshot mirrors absolute paths)."""
    return fs(target) + os.path.abspath(fs(src))


def flip_byte(path, offset: int) -> int:
    """Flip one bit of the byte at ``offset`` (negative counts from the end); returns it."""
    path = fs(path)
    data = bytearray(open(path, "rb").read())
    offset %= len(data)
    data[offset] ^= 0x01
    os.chmod(path, 0o600)
    with open(path, "wb") as fh:
        fh.write(data)
    return offset


def files_under(folder) -> list[str]:
    """Real object files under a repository folder (no ``tmp-*``), as paths."""
    out = []
    for dirpath, _dirs, files in os.walk(os.fsdecode(folder)):
        out.extend(os.path.join(dirpath, f) for f in files if not f.startswith("tmp-"))
    return sorted(out)


# --- engine-level repositories -------------------------------------------------------
def engine_repo(path, *, chunk_avg: int = CHUNK_AVG, passphrase: str = PASSPHRASE):
    """A repository made through the engine with a cheap KDF (opens fast in the CLI too)."""
    from opskit.backup.backends import LocalBackend
    from opskit.backup.repository import Repository
    return Repository.init(LocalBackend(os.fsdecode(path)), passphrase.encode(),
                           chunk_avg=chunk_avg, kdf_n=FAST_KDF_N)


def largest_pack(repo) -> str:
    """The path of a repository's biggest pack file (data blobs, not just trees)."""
    packs = [os.path.join(dp, f) for dp, _d, fs in os.walk(os.path.join(os.fspath(repo), "data"))
             for f in fs]
    return max(packs, key=os.path.getsize)


def open_repo(path, passphrase: str = PASSPHRASE, *, index: bool = True):
    from opskit.backup.backends import LocalBackend
    from opskit.backup.repository import Repository
    repo = Repository.open(LocalBackend(os.fsdecode(path)), passphrase.encode())
    if index:
        repo.load_index(repair=False)
    return repo


# --- the CLI -------------------------------------------------------------------------
class BackupCli:
    """``opskit --config CFG backup ...`` against one repository, as a user runs it.

    The repository is made by the engine with a cheap KDF unless ``init=False``.
    Every call asserts that no traceback was printed.
    """

    def __init__(self, tmp_path, *, init: bool = True, pack_size_mib: int = 1,
                 chunk_avg_kib: int = 64, extra: str = "", repo=None, name: str = "opskit.yaml"):
        self.repo = os.fspath(repo) if repo else os.path.join(os.fspath(tmp_path), "repo")
        self.config = os.path.join(os.fspath(tmp_path), name)
        with open(self.config, "w") as fh:
            fh.write(f"backup:\n  repo: {self.repo}\n  chunk_avg_kib: {chunk_avg_kib}\n"
                     f"  pack_size_mib: {pack_size_mib}\n{extra}")
        if init:
            engine_repo(self.repo, chunk_avg=chunk_avg_kib << 10)

    def __call__(self, *args, env: dict | None = None, passphrase: str | None = PASSPHRASE,
                 timeout: float = 120, cwd=None) -> CliRun:
        full_env = {} if passphrase is None else {"OPSKIT_PASSPHRASE": passphrase}
        full_env.update(env or {})
        run = run_opskit("--config", self.config, "backup", *args, env=full_env, timeout=timeout,
                         cwd=None if cwd is None else os.fspath(cwd))
        assert "Traceback" not in run.output, run.output
        assert "internal error" not in run.output, run.output
        return run

    def json(self, *args, expect: int = 0, **kw):
        run = self(*args, "--json", **kw)
        assert run.exit_code == expect, run.output
        return json.loads(run.stdout)

    def backup(self, *paths, expect: int = 0, **kw) -> dict:
        """``backup run --json``: the result data (snapshot, stats, errors)."""
        return self.json("run", *map(os.fsdecode, paths), expect=expect, **kw)


# --- a process that cannot bypass file permissions -----------------------------------
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_dac_caps() -> None:
    """preexec_fn: root loses the capabilities that ignore file modes (at exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_opskit_bytes(*args, env: dict | None = None, timeout: float = 120):
    """``python -m opskit ARGS`` with raw (undecoded) stdout/stderr."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "opskit", *map(os.fsencode, args)], env=full_env,
                          capture_output=True, timeout=timeout)


def run_opskit_without_dac(*args, env: dict | None = None, timeout: float = 120) -> CliRun:
    """Like ``run_opskit``, but a mode-000 file is really unreadable even for root."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "opskit", *map(str, args)], env=full_env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_drop_dac_caps if AS_ROOT else None)
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


# --- crafting repository content by hand (malicious or doctored snapshots) ----------------
def put_tree(repo, writer, nodes: list[dict], *, sort: bool = True) -> str:
    """Store a tree blob; ``sort=False`` keeps the given node order (a hostile writer's)."""
    from opskit.backup import crypto
    from opskit.backup.pack import BLOB_TREE
    from opskit.backup.tree import encode_tree
    raw = (encode_tree(list(nodes)) if sort
           else json.dumps({"nodes": nodes}, separators=(",", ":")).encode())
    bid = crypto.blob_id(repo.keys.id_key, raw)
    writer.add(BLOB_TREE, bid, raw)
    return bid.hex()


def put_data(repo, writer, data: bytes) -> str:
    from opskit.backup import crypto
    from opskit.backup.pack import BLOB_DATA
    bid = crypto.blob_id(repo.keys.id_key, data)
    writer.add(BLOB_DATA, bid, data)
    return bid.hex()


def _named(name, node: dict) -> dict:
    from opskit.backup.tree import encode_name
    if isinstance(name, str):
        node["name"] = name
    else:
        encode_name(node, "name", name)
    return node


def file_node(name, content: list[str], size: int, *, mode: int = 0o100644,
              mtime_ns: int = 1_600_000_000_000_000_000) -> dict:
    return _named(name, {"type": "file", "mode": mode, "uid": os.geteuid(), "gid": os.getegid(),
                         "size": size, "mtime_ns": mtime_ns, "ctime_ns": mtime_ns, "content": content})


def dir_node(name, subtree: str, *, mode: int = 0o40755,
             mtime_ns: int = 1_600_000_000_000_000_000) -> dict:
    return _named(name, {"type": "dir", "mode": mode, "uid": os.geteuid(), "gid": os.getegid(),
                         "mtime_ns": mtime_ns, "ctime_ns": mtime_ns, "subtree": subtree})


def symlink_node(name, target: bytes, *, mtime_ns: int = 1_600_000_000_000_000_000) -> dict:
    from opskit.backup.tree import encode_name
    node = _named(name, {"type": "symlink", "mode": 0o120777, "uid": os.geteuid(),
                         "gid": os.getegid(), "mtime_ns": mtime_ns, "ctime_ns": mtime_ns})
    encode_name(node, "target", target)
    return node


def save_crafted_snapshot(repo, tree_hex: str, *, paths=("/crafted",), parent=None,
                          host: str | None = None) -> str:
    import socket
    from opskit.backup.repository import utcnow_iso
    return repo.save_snapshot({
        "version": 1, "time": utcnow_iso(), "host": host or socket.gethostname(), "user": "root",
        "paths": list(paths), "tree": tree_hex, "parent": parent, "tags": ["crafted"],
        "excludes": [], "full": False, "program": "tests", "stats": {}})


def find_node(repo, snap: dict, path) -> dict:
    """The tree node of absolute ``path`` in snapshot ``snap``."""
    from opskit.backup.tree import decode_name
    parts = [p for p in fs(path).split(b"/") if p]
    nodes = repo.load_tree(bytes.fromhex(snap["tree"]))["nodes"]
    node = None
    for i, part in enumerate(parts):
        node = next(n for n in nodes if decode_name(n) == part)
        if i < len(parts) - 1:
            nodes = repo.load_tree(bytes.fromhex(node["subtree"]))["nodes"]
    return node


def rewrite_snapshot(repo, snap: dict, dir_path, edit) -> str:
    """Save a copy of ``snap`` in which the node list of directory ``dir_path`` (absolute)
    is replaced by ``edit(nodes)``; ancestors are re-stored. Returns the new snapshot id
    (newest, same host and paths, so it becomes the next run's parent)."""
    from opskit.backup.tree import decode_name
    parts = [p for p in fs(dir_path).split(b"/") if p]
    writer = repo.blob_writer(1)
    chain = [repo.load_tree(bytes.fromhex(snap["tree"]))["nodes"]]
    for part in parts:
        node = next(n for n in chain[-1] if decode_name(n) == part)
        chain.append(repo.load_tree(bytes.fromhex(node["subtree"]))["nodes"])
    new_id = put_tree(repo, writer, edit(chain[-1]))
    for depth in range(len(parts) - 1, -1, -1):
        nodes = [dict(n) for n in chain[depth]]
        for n in nodes:
            if decode_name(n) == parts[depth]:
                n["subtree"] = new_id
        new_id = put_tree(repo, writer, nodes)
    writer.finish()
    return save_crafted_snapshot(repo, new_id, paths=snap["paths"], parent=snap["id"],
                                 host=snap["host"])


def error_lines(stderr: str) -> list[str]:
    """stderr without the automatic-incident notice a stopped replication adds
    (#25 item 1): what is left must be the one error line."""
    notices = ("opened incident ", "incident still open ")
    lines = stderr.strip().splitlines()
    assert any(line.startswith(notices) for line in lines), stderr
    return [line for line in lines if not line.startswith(notices)]
