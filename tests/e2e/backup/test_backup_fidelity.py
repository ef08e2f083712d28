"""What a backup keeps beyond content, mode, owner and mtime (issue 27): hard
links, extended attributes, POSIX ACLs, sparse files, FIFOs, sockets and device
nodes, each checked the way getfattr / getfacl / stat / du would."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.harness.backup import AS_ROOT, BackupCli, assert_same_tree, restored_path, write

pytestmark = pytest.mark.e2e

GIB = 1 << 30


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory):
    """One source tree with every kind of metadata, backed up and restored by the CLI."""
    base = tmp_path_factory.mktemp("fidelity")
    src = base / "src"
    (src / "sub").mkdir(parents=True)
    (src / "acl-dir").mkdir()
    # hard links: a group of three across directories, a pair, and a lone file
    write(src / "gunzip", b"#!/bin/sh\nexec gzip -d \"$@\"\n", 0o755)
    os.link(src / "gunzip", src / "uncompress")
    os.link(src / "gunzip", src / "sub" / "zcat-link")
    write(src / "perl", b"perl" * 5000, 0o755)
    os.link(src / "perl", src / "sub" / "perl5.36.0")
    write(src / "alone", b"alone")
    # extended attributes, user and (as root) security namespaces
    write(src / "tagged", b"tagged")
    os.setxattr(src / "tagged", "user.origin", b"claims-import")
    os.setxattr(src / "tagged", "user.binary", bytes(range(256)))
    os.setxattr(src / "sub", "user.dir-note", b"on a directory")
    if AS_ROOT:
        os.setxattr(src / "tagged", "security.opskit-test", b"security label")
    # POSIX ACLs: an access ACL on a file, access + default ACLs on a directory
    write(src / "acl-file", b"acl", 0o640)
    subprocess.run(["setfacl", "-m", "u:1234:r--,g:2345:rw-", src / "acl-file"], check=True)
    subprocess.run(["setfacl", "-m", "u:1234:rwx", "-d", "-m", "g:2345:r-x", src / "acl-dir"],
                   check=True)
    # a 4 GiB sparse file with data at its start, in the middle and at its end
    with open(src / "sparse.img", "wb") as fh:
        fh.write(b"head" * 1024)
        fh.seek(GIB + 12345)
        fh.write(b"middle")
        fh.truncate(4 * GIB)
    # special files
    os.mkfifo(src / "fifo", 0o620)
    os.mknod(src / "socket", stat.S_IFSOCK | 0o755)
    if AS_ROOT:
        os.mknod(src / "null-dev", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(src / "loop-dev", stat.S_IFBLK | 0o660, os.makedev(7, 200))
    for path in sorted(src.rglob("*"), key=lambda p: -len(p.parts)):   # stable mtimes
        os.utime(path, ns=(1_700_000_000_123_456_789,) * 2, follow_symlinks=False)
    os.utime(src, ns=(1_700_000_000_123_456_789,) * 2)

    cli = BackupCli(base)
    env = {"OPSKIT_HOME": str(base / "home")}
    snap = cli.backup(src, env=env)["snapshot"]
    target = base / "restore"
    run = cli("restore", snap, "--target", target, "--json", env=env, timeout=300)
    return {"cli": cli, "src": src, "dst": Path(os.fsdecode(restored_path(target, src))),
            "run": run, "env": env,
            "snap": snap, "base": base}


def test_restore_reports_no_errors(round_trip):
    run = round_trip["run"]
    assert run.exit_code == 0, run.output


def test_content_modes_and_times_are_identical(round_trip):
    assert_same_tree(round_trip["src"], round_trip["dst"])


def _groups(root) -> set[frozenset]:
    """Hard-link groups: sets of relative paths sharing one inode."""
    by_inode: dict[int, set] = {}
    for path in root.rglob("*"):
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            by_inode.setdefault(st.st_ino, set()).add(str(path.relative_to(root)))
    return {frozenset(g) for g in by_inode.values()}


def test_hard_links_come_back_linked(round_trip):
    src, dst = round_trip["src"], round_trip["dst"]
    groups = _groups(dst)
    assert groups == _groups(src)
    assert frozenset({"gunzip", "uncompress", "sub/zcat-link"}) in groups
    assert frozenset({"perl", "sub/perl5.36.0"}) in groups
    assert os.stat(dst / "gunzip").st_nlink == 3 and os.stat(dst / "alone").st_nlink == 1


def _xattrs(path) -> dict:
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in os.listxattr(path, follow_symlinks=False)}


def test_extended_attributes_are_identical(round_trip):
    src, dst = round_trip["src"], round_trip["dst"]
    for rel in ("tagged", "sub", "acl-file", "acl-dir", "gunzip"):
        assert _xattrs(dst / rel) == _xattrs(src / rel), rel
    assert _xattrs(dst / "tagged")["user.binary"] == bytes(range(256))
    if AS_ROOT:
        assert _xattrs(dst / "tagged")["security.opskit-test"] == b"security label"


def _getfacl(root) -> str:
    return subprocess.run(["getfacl", "-R", "-p", "-n", "."], cwd=root, check=True,
                          capture_output=True, text=True).stdout


def test_acls_are_identical(round_trip):
    src, dst = round_trip["src"], round_trip["dst"]
    assert "user:1234:r--" in _getfacl(src)            # the control: ACLs are there to lose
    assert _getfacl(dst) == _getfacl(src)
    facl = subprocess.run(["getfacl", "-n", "acl-dir"], cwd=dst, check=True,
                          capture_output=True, text=True).stdout
    assert "default:group:2345:r-x" in facl


def test_sparse_file_stays_sparse(round_trip):
    src, dst = round_trip["src"], round_trip["dst"]
    st = os.stat(dst / "sparse.img")
    assert st.st_size == 4 * GIB
    assert st.st_blocks * 512 < 16 << 20, f"restored sparse file uses {st.st_blocks * 512} bytes"
    with open(dst / "sparse.img", "rb") as fh:
        assert fh.read(4096) == b"head" * 1024
        fh.seek(GIB + 12345)
        assert fh.read(6) == b"middle"
        fh.seek(4 * GIB - 10)
        assert fh.read() == bytes(10)


def test_special_files_are_recreated(round_trip):
    src, dst = round_trip["src"], round_trip["dst"]
    names = ["fifo", "socket"] + (["null-dev", "loop-dev"] if AS_ROOT else [])
    for name in names:
        a, b = os.lstat(src / name), os.lstat(dst / name)
        assert (stat.S_IFMT(b.st_mode), stat.S_IMODE(b.st_mode), b.st_rdev, b.st_mtime_ns) == \
            (stat.S_IFMT(a.st_mode), stat.S_IMODE(a.st_mode), a.st_rdev, a.st_mtime_ns), name
    assert stat.S_ISFIFO(os.lstat(dst / "fifo").st_mode)
    assert stat.S_ISSOCK(os.lstat(dst / "socket").st_mode)
    if AS_ROOT:
        assert os.lstat(dst / "null-dev").st_rdev == os.makedev(1, 3)


def test_snapshots_without_link_counts_still_restore(round_trip, tmp_path):
    """Trees written before ``nlink`` was recorded: files restore as separate
    copies (no links invented), nothing fails."""
    from tests.harness.backup import open_repo, rewrite_snapshot
    cli, src = round_trip["cli"], round_trip["src"]
    repo = open_repo(cli.repo)
    snap = next(s for s in repo.snapshots() if s["id"] == round_trip["snap"])

    def legacy(nodes):
        return [{k: v for k, v in n.items() if k not in ("nlink", "xattrs")} for n in nodes]
    old_id = rewrite_snapshot(repo, snap, os.fspath(src), legacy)
    target = tmp_path / "t"
    run = cli("restore", old_id, "--target", target, "--include", os.fspath(src / "gunzip"),
              "--include", os.fspath(src / "uncompress"), env=round_trip["env"])
    assert run.exit_code == 0, run.output
    dst = Path(os.fsdecode(restored_path(target, src)))
    assert (dst / "gunzip").read_bytes() == (src / "gunzip").read_bytes()
    assert os.stat(dst / "gunzip").st_ino != os.stat(dst / "uncompress").st_ino
    assert _xattrs(dst / "gunzip") == {}
