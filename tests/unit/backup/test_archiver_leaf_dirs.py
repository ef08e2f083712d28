"""Directories without subdirectories are backed up whole by one worker
(walk, contents, tree); the ones that would read too much are handed back
split in parts, which every worker takes, and the parent joins the tree from
their encoded nodes (#23). Either way the snapshot is the one the per-file
walk makes (R-BAK-2: what is restored is what was there; R-BAK-4:
incremental runs reuse what did not change)."""
import os

import pytest

from opskit.backup import workers
from opskit.backup.archiver import Archiver
from opskit.backup.backends import LocalBackend
from opskit.backup.repository import Repository
from opskit.backup.restorer import Restorer


def _write(path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    small, big = src / "small", src / "big"
    small.mkdir(parents=True)
    big.mkdir()
    for i in range(30):
        _write(small / f"f{i:02d}.yaml", f"key: {i}\n".encode() * 50)
    _write(small / "skip.tmp", b"excluded")
    os.symlink("f00.yaml", small / "link")
    _write(big / "a.bin", os.urandom(300_000))
    _write(big / "b.bin", os.urandom(300_000))
    return src


@pytest.fixture
def repo(tmp_path):
    return Repository.init(LocalBackend(str(tmp_path / "repo")), b"pw", chunk_avg=64 << 10,
                           kdf_n=2**10)


def _files(root):
    out = {}
    for d, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            out[rel] = os.readlink(p) if os.path.islink(p) else open(p, "rb").read()
    return out


def test_leaf_dirs_done_by_workers_or_handed_back_restore_identically(tmp_path, tree, repo,
                                                                      monkeypatch):
    # "big" (600 kB to read) is over the limit: handed back and walked here
    monkeypatch.setattr(workers, "LEAF_DIR_MAX_BYTES", 500_000)
    walked_here = []
    real_walk = Archiver._walk

    def walk(self, path, d):
        walked_here.append(os.fsdecode(path))
        return real_walk(self, path, d)

    monkeypatch.setattr(Archiver, "_walk", walk)
    parts = []
    real_part = workers.ContentWorkers.submit_part

    def submit_part(self, token, path, names, old_id, size, on_result):
        parts.append((os.fsdecode(path), names, size))
        return real_part(self, token, path, names, old_id, size, on_result)

    monkeypatch.setattr(workers.ContentWorkers, "submit_part", submit_part)
    arch = Archiver(repo, excludes=["*.tmp"])
    sid, snap = arch.run([str(tree)])
    # "small" went whole to a worker; "big" came back split, one file per part
    # (each is over the limit), and was not walked here either (#23)
    assert walked_here == [str(tree)]
    assert sorted(parts) == [(str(tree / "big"), (b"a.bin",), 300_000),
                             (str(tree / "big"), (b"b.bin",), 300_000)]
    assert arch.stats.files == 32 and arch.stats.files_new == 32 and not arch.stats.errors
    Restorer(repo, str(tmp_path / "out")).run(repo.load_snapshot(sid))
    restored = _files(str(tmp_path / "out" / str(tree).lstrip("/")))
    expected = _files(str(tree))
    del expected[os.path.join("small", "skip.tmp")]
    assert restored == expected
    assert os.readlink(tmp_path / "out" / str(tree).lstrip("/") / "small" / "link") == "f00.yaml"


def test_incremental_run_in_a_worker_reuses_unchanged_files(tmp_path, tree, repo):
    sid, first = Archiver(repo).run([str(tree)])
    first["id"] = sid
    _write(tree / "small" / "f05.yaml", b"changed: yes\n")
    _write(tree / "small" / "new.yaml", b"new: yes\n")
    arch = Archiver(repo)
    sid2, second = arch.run([str(tree)], parent=first)
    s = arch.stats
    assert (s.files_new, s.files_changed, s.files_unmodified) == (1, 1, 32)
    assert second["tree"] != first["tree"]
    out = tmp_path / "out"
    Restorer(repo, str(out)).run(repo.load_snapshot(sid2))
    assert (out / str(tree).lstrip("/") / "small" / "f05.yaml").read_bytes() == b"changed: yes\n"
    third = Archiver(repo)
    _sid3, snap3 = third.run([str(tree)], parent=dict(second, id=sid2))
    assert third.stats.files_unmodified == 34 and third.stats.bytes_added < 10_000  # trees only


def test_unreadable_entry_in_a_leaf_dir_is_listed_and_the_rest_is_kept(tmp_path, tree, repo,
                                                                       monkeypatch):
    real_open = workers._Worker._open

    def refuse(self, path, dir_fd=None):
        if path.endswith(b"f07.yaml"):
            raise PermissionError(13, "Permission denied")
        return real_open(self, path, dir_fd)

    monkeypatch.setattr(workers._Worker, "_open", refuse)     # inherited by the forks
    arch = Archiver(repo)
    sid, _snap = arch.run([str(tree)])
    assert [e["path"] for e in arch.stats.errors] == [str(tree / "small" / "f07.yaml")]
    assert arch.stats.errors[0]["error"] == "Permission denied"
    Restorer(repo, str(tmp_path / "out")).run(repo.load_snapshot(sid))
    small = tmp_path / "out" / str(tree).lstrip("/") / "small"
    assert not (small / "f07.yaml").exists() and (small / "f08.yaml").exists()


def test_a_leaf_dir_done_by_a_worker_gives_the_tree_the_file_by_file_walk_gives(
        tmp_path, tree, monkeypatch):
    """Same nodes, field for field, whichever path a directory takes."""
    os.symlink(b"target-\xff", tree / "small" / b"odd-\xfe-name".decode("utf-8", "surrogateescape"))

    repo = Repository.init(LocalBackend(str(tmp_path / "repo")), b"pw", chunk_avg=64 << 10,
                           kdf_n=2**10)

    def tree_of_small(limit):
        monkeypatch.setattr(workers, "LEAF_DIR_MAX_BYTES", limit)
        _sid, snap = Archiver(repo).run([str(tree / "small")])       # no parent: all read
        node = repo.load_tree(bytes.fromhex(snap["tree"]))
        for part in str(tree / "small").strip("/").split("/"):
            sub = next(n for n in node["nodes"] if n.get("name") == part)
            node = repo.load_tree(bytes.fromhex(sub["subtree"]))
        return node["nodes"]

    by_worker, in_parts = tree_of_small(8 << 20), tree_of_small(-1)   # -1: always split
    # and walked here, file by file (what a worker's plain "no" leads to)
    monkeypatch.setattr(workers._Worker, "directory",
                        lambda self, token, path, old_id: workers.DirResult(token, None))
    file_by_file = tree_of_small(8 << 20)
    assert len(by_worker) == 33 and by_worker == in_parts == file_by_file


def _tree_id_of(repo, snap, path) -> str:
    node = repo.load_tree(bytes.fromhex(snap["tree"]))
    for part in str(path).strip("/").split("/"):
        sub = next(n for n in node["nodes"] if n.get("name") == part)
        node = repo.load_tree(bytes.fromhex(sub["subtree"]))
    return sub["subtree"]


def test_a_split_directory_in_an_incremental_run_reads_only_what_changed(tmp_path, tree, repo,
                                                                         monkeypatch):
    monkeypatch.setattr(workers, "LEAF_DIR_MAX_BYTES", 4_000)   # "small" (~25 kB) is split
    sid, first = Archiver(repo).run([str(tree)])
    first["id"] = sid
    arch = Archiver(repo)
    sid2, second = arch.run([str(tree)], parent=first)
    s = arch.stats
    assert (s.files_new, s.files_changed, s.files_unmodified) == (0, 0, 33)
    # joined parts give the very same tree (the root's may differ: /tmp's mtime moves
    # while other processes work there, so only trees from "src" down are compared)
    assert _tree_id_of(repo, second, tree) == _tree_id_of(repo, first, tree)
    assert s.bytes_added < 2_000                      # no content, at most the root's trees
    _write(tree / "small" / "f05.yaml", os.urandom(6_000))    # changed, and over the limit
    arch = Archiver(repo)
    sid3, third = arch.run([str(tree)], parent=dict(second, id=sid2))
    s = arch.stats
    assert (s.files_new, s.files_changed, s.files_unmodified) == (0, 1, 32)
    assert _tree_id_of(repo, third, tree / "small") != _tree_id_of(repo, first, tree / "small")
    out = tmp_path / "out"
    Restorer(repo, str(out)).run(repo.load_snapshot(sid3))
    assert _files(str(out / str(tree).lstrip("/"))) == _files(str(tree))


def test_a_file_gone_before_its_part_is_read_is_listed_and_the_rest_kept(tmp_path, tree, repo,
                                                                         monkeypatch):
    monkeypatch.setattr(workers, "LEAF_DIR_MAX_BYTES", 4_000)
    real_part = workers._Worker.part

    def part(self, token, path, names, old_id):
        if b"f03.yaml" in names:
            os.unlink(os.path.join(path, b"f03.yaml"))     # between the split and the part
        return real_part(self, token, path, names, old_id)

    monkeypatch.setattr(workers._Worker, "part", part)     # inherited by the forks
    arch = Archiver(repo)
    sid, _snap = arch.run([str(tree)])
    assert [e["path"] for e in arch.stats.errors] == [str(tree / "small" / "f03.yaml")]
    assert arch.stats.files == 32               # 31 in "small" (no excludes) + 2 in "big", less one
    out = tmp_path / "out" / str(tree).lstrip("/")
    Restorer(repo, str(tmp_path / "out")).run(repo.load_snapshot(sid))
    assert not (out / "small" / "f03.yaml").exists()
    assert _files(str(out)) == _files(str(tree))


def test_a_file_gone_before_a_split_directory_is_stated_is_listed(tmp_path, tree, repo,
                                                                  monkeypatch):
    """The worker that splits a directory stats it first; what fails there is in
    no part, so it must be listed with the split (not silently left out)."""
    monkeypatch.setattr(workers, "LEAF_DIR_MAX_BYTES", 4_000)
    real_excluded = Archiver.excluded

    def excluded(self, path):           # asked just before the entry's stat
        if path.endswith(b"small/f04.yaml") and os.path.exists(path):
            os.unlink(path)
        return real_excluded(self, path)

    monkeypatch.setattr(Archiver, "excluded", excluded)     # inherited by the forks
    arch = Archiver(repo, excludes=["*.nothing"])
    sid, _snap = arch.run([str(tree)])
    assert [e["path"] for e in arch.stats.errors] == [str(tree / "small" / "f04.yaml")]
    assert arch.stats.files == 32
    Restorer(repo, str(tmp_path / "out")).run(repo.load_snapshot(sid))
    assert _files(str(tmp_path / "out" / str(tree).lstrip("/"))) == _files(str(tree))


def test_split_parts_stay_under_the_limit_biggest_first():
    stated = [(b"a", None), (b"b", None), (b"c", None), (b"d", None), (b"e", None)]
    parts = workers.split_parts(stated, [3, 20 << 20, 5 << 20, 4 << 20, 0])
    assert parts == (((b"b",), 20 << 20), ((b"c",), 5 << 20), ((b"d", b"a", b"e"), (4 << 20) + 3))
    assert workers.split_parts([], []) == ()
