"""The restorer against hostile trees: nothing may be written outside the target."""
from __future__ import annotations

import os
import stat

import pytest

from opskit.backup.repository import CorruptObject
from opskit.backup.restorer import Restorer
from tests.harness.backup import (dir_node, engine_repo, file_node, open_repo, put_data, put_tree,
                                  symlink_node)

UNSAFE = ["..", ".", "", "../evil", "../../evil", "/evil-abs", "sub/../../evil", "a/b", "x\0y",
          b"..", b"../\xffevil", b"/\xff"]


@pytest.fixture(autouse=True, params=["unnamed", "named"])
def file_naming(request, monkeypatch):
    """Every test twice: files written nameless and linked in (O_TMPFILE), and
    under a named temporary file renamed (where O_TMPFILE is not offered)."""
    from opskit.backup import unnamed
    if request.param == "named":
        monkeypatch.setattr(unnamed, "AVAILABLE", False)
    else:
        assert unnamed.AVAILABLE, "O_TMPFILE and /proc are there on the CI machine"
    return request.param


@pytest.fixture
def repo(tmp_path):
    engine_repo(tmp_path / "repo")
    return open_repo(tmp_path / "repo")


def _outside_entries(tmp_path, target) -> list[str]:
    """Everything under tmp_path that is not the repository or inside the target."""
    out = []
    for dirpath, dirs, files in os.walk(tmp_path):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            if path.startswith((str(target) + "/", str(tmp_path / "repo"), str(tmp_path / "opskit-home"))):
                continue
            out.append(path)
    return sorted(out)


def _snapshot(repo, nodes, *, sort=False) -> dict:
    writer = repo.blob_writer(1)
    tree = put_tree(repo, writer, nodes(writer) if callable(nodes) else nodes, sort=sort)
    writer.finish()
    return {"id": "00" * 32, "tree": tree}


@pytest.mark.parametrize("name", UNSAFE, ids=repr)
@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "nested"])
def test_unsafe_names_are_refused(tmp_path, repo, name, kind):
    outside = tmp_path / "box"
    target = outside / "target"
    target.mkdir(parents=True)

    def nodes(writer):
        data = put_data(repo, writer, b"EVIL")
        empty = put_tree(repo, writer, [file_node("payload", [data], 4)])
        if kind == "file":
            return [file_node(name, [data], 4)]
        if kind == "dir":
            return [dir_node(name, empty)]
        if kind == "symlink":
            return [symlink_node(name, b"/etc/passwd")]
        inner = put_tree(repo, writer, [file_node("fine", [data], 4), file_node(name, [data], 4)],
                         sort=False)
        return [dir_node("ok", put_tree(repo, writer, [dir_node("deeper", inner)]))]

    snap = _snapshot(repo, nodes)
    with pytest.raises(CorruptObject, match="unsafe"):
        Restorer(repo, str(target), workers=1).run(snap)
    assert _outside_entries(tmp_path, target) == [str(outside), str(target)]
    assert not os.path.lexists("/evil-abs") and not os.path.lexists(b"/\xff")


def _refusal(repo, target, snap) -> str:
    """Restore a hostile snapshot; it must be refused, by an exception or listed errors."""
    try:
        stats = Restorer(repo, str(target), workers=2).run(snap)
    except CorruptObject as exc:
        return str(exc)
    return "; ".join(e["error"] for e in stats.errors)


@pytest.mark.parametrize("order", ["symlink-first", "dir-first"])
def test_a_symlink_and_a_directory_of_the_same_name_cannot_redirect_writes(tmp_path, repo, order):
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def nodes(writer):
        data = put_data(repo, writer, b"PWNED")
        sub = put_tree(repo, writer, [file_node("pwned", [data], 5)])
        pair = [symlink_node("d", os.fsencode(outside)), dir_node("d", sub)]
        return pair if order == "symlink-first" else pair[::-1]

    assert _refusal(repo, tmp_path / "target", _snapshot(repo, nodes))
    assert os.listdir(outside) == []


@pytest.mark.parametrize("order", ["symlink-first", "file-first"])
def test_a_file_and_a_symlink_of_the_same_name_never_touch_the_symlink_target(tmp_path, repo, order):
    """file-first is the racy order: the file may be written and closed, then replaced by the
    symlink before its mode and mtime are applied; they must never reach the victim."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"original")
    os.chmod(victim, 0o600)
    os.utime(victim, ns=(5_000_000_000, 5_000_000_000))

    def nodes(writer):
        data = put_data(repo, writer, b"OVERWRITTEN")
        pair = [symlink_node("f", os.fsencode(victim)),
                file_node("f", [data], 11, mode=0o104777, mtime_ns=1)]
        return pair if order == "symlink-first" else pair[::-1]

    for attempt in range(5):
        assert _refusal(repo, tmp_path / f"target{attempt}", _snapshot(repo, nodes))
        st = os.stat(victim)
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o600, 5_000_000_000)
        assert victim.read_bytes() == b"original"


def test_file_metadata_goes_through_the_open_fd_not_the_path(tmp_path):
    """The fix for the race above: a path swapped for a symlink after the file was
    written cannot redirect chmod/chown/utime (restorer.apply_metadata with an fd)."""
    from opskit.backup.restorer import apply_metadata
    victim = tmp_path / "victim"
    victim.write_bytes(b"v")
    os.chmod(victim, 0o600)
    os.utime(victim, ns=(5_000_000_000, 5_000_000_000))
    path = tmp_path / "restored"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.unlink(path)
        os.symlink(victim, path)               # swapped in by someone else meanwhile
        node = {"mode": 0o100777, "mtime_ns": 1, "uid": os.geteuid(), "gid": os.getegid()}
        assert apply_metadata(fd, node, as_root=os.geteuid() == 0) is None
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o777 and os.fstat(fd).st_mtime_ns == 1
    finally:
        os.close(fd)
    st = os.stat(victim)
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (0o600, 5_000_000_000)


def test_restore_include_selects_subtrees(tmp_path, repo):
    def nodes(writer):
        a = put_data(repo, writer, b"A")
        b = put_data(repo, writer, b"B")
        inner = put_tree(repo, writer, [file_node("a", [a], 1), file_node("b", [b], 1)])
        other = put_tree(repo, writer, [file_node("c", [b], 1)])
        return [dir_node("keep", inner), dir_node("skip", other), file_node("top", [a], 1)]

    snap = _snapshot(repo, nodes, sort=True)
    target = tmp_path / "t"
    stats = Restorer(repo, str(target), includes=["keep/a", "/top"]).run(snap)
    assert stats.errors == [] and stats.files == 2
    assert sorted(os.listdir(target)) == ["keep", "top"]
    assert os.listdir(target / "keep") == ["a"]
    stats = Restorer(repo, str(tmp_path / "t2"), includes=["/nope"]).run(snap)
    assert stats.errors and "no such path" in stats.errors[0]["error"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_born_with_final_mode_and_owner_even_in_setgid_dirs(tmp_path, repo, umask):
    """New files are created with their final mode when the umask allows and skip
    chown when the owner is already right; a setgid target (new files inherit its
    group) or a restrictive umask must still end with the snapshot's metadata."""
    if os.geteuid() != 0:
        pytest.fail("runs as root in CI: needs chown to test owner restore")
    target = tmp_path / "target"
    target.mkdir()
    os.chown(target, 0, 4)                       # group adm
    os.chmod(target, 0o2775)                     # setgid: files would be born gid 4

    def nodes(writer):
        data = put_data(repo, writer, b"A")
        sub = put_tree(repo, writer, [file_node("inner", [data], 1, mode=0o100640)])
        return [file_node("top", [data], 1, mode=0o100644),
                file_node("odd", [data], 1, mode=0o104755),     # setuid: never via open()
                dir_node("sub", sub)]
    old = os.umask(umask)
    try:
        stats = Restorer(repo, str(target), workers=1).run(_snapshot(repo, nodes))
    finally:
        os.umask(old)
    assert stats.errors == [] and stats.files == 3
    for rel, mode in [("top", 0o644), ("odd", 0o4755), ("sub/inner", 0o640)]:
        st = os.lstat(target / rel)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, 0), rel


def test_a_file_spanning_many_page_drop_steps_comes_back_whole_and_sparse(tmp_path, repo):
    """Big files are handed to writeback and dropped from the page cache as they
    are written (DROP_STEP, issue 23): content, holes and mtime must not suffer."""
    from opskit.backup.restorer import DROP_STEP
    step = 3 << 20
    parts = [os.urandom(step), os.urandom(step), bytes(step), os.urandom(step), os.urandom(step),
             os.urandom(step), bytes(step)]
    assert len(parts) * step > 2 * DROP_STEP

    def nodes(writer):
        ids = [put_data(repo, writer, p) for p in parts]
        return [file_node("big", ids, len(parts) * step)]

    stats = Restorer(repo, str(tmp_path / "t"), workers=1).run(_snapshot(repo, nodes))
    assert stats.errors == [] and stats.files == 1
    big = tmp_path / "t" / "big"
    assert big.read_bytes() == b"".join(parts)
    st = os.stat(big)
    assert st.st_blocks * 512 <= 5 * step + (1 << 20)      # both zero chunks are holes
    assert st.st_mtime_ns == 1_600_000_000_000_000_000


def test_restoring_over_existing_files_replaces_them_and_leaves_no_temporary_names(tmp_path, repo):
    """An existing file, a symlink to outside and a read-only file at the
    restored names are replaced (the symlink's target untouched); nothing with
    the temporary prefix is left behind."""
    target = tmp_path / "t"
    target.mkdir()
    (target / "plain").write_bytes(b"old content, longer than the new")
    outside = tmp_path / "outside"
    outside.write_bytes(b"must stay")
    os.symlink(outside, target / "link")
    (target / "ro").write_bytes(b"ro")
    os.chmod(target / "ro", 0o400)

    def nodes(writer):
        data = put_data(repo, writer, b"new")
        return [file_node(name, [data], 3) for name in ("plain", "link", "ro", "fresh")]

    stats = Restorer(repo, str(target), workers=1).run(_snapshot(repo, nodes, sort=True))
    assert stats.errors == [] and stats.files == 4
    for name in ("plain", "link", "ro", "fresh"):
        assert not os.path.islink(target / name)
        assert (target / name).read_bytes() == b"new", name
    assert outside.read_bytes() == b"must stay"
    assert sorted(os.listdir(target)) == ["fresh", "link", "plain", "ro"]
