"""Every directory's tree is stored once, after all its entries are known.

Regression: a directory finished from a worker callback and then again at
the end of its walk decremented its parent twice, so the parent tree was
stored before a sibling subdirectory had its subtree id (R-BAK-2: a backup
that cannot be restored is no backup).
"""
import os
import time

import pytest

from opskit.backup.archiver import Archiver
from opskit.backup.backends import LocalBackend
from opskit.backup.checker import Checker
from opskit.backup.repository import Repository
from opskit.backup.restorer import Restorer
from opskit.backup.workers import ContentWorkers


def _make_tree(root, dirs=40, files=60):
    for d in range(dirs):
        sub = os.path.join(root, f"d{d:03d}", "inner")
        os.makedirs(sub)
        for f in range(files):
            with open(os.path.join(root, f"d{d:03d}", f"f{f:03d}.txt"), "wb") as fh:
                fh.write(os.urandom(512 + f))
        with open(os.path.join(sub, "x"), "wb") as fh:
            fh.write(b"x" * d)


def _walk_nodes(repo, tree_id):
    for node in repo.load_tree(tree_id)["nodes"]:
        yield node
        if node["type"] == "dir":
            yield from _walk_nodes(repo, bytes.fromhex(node["subtree"]))


@pytest.fixture
def eager_workers(monkeypatch):
    """Make every non-blocking poll wait for all submitted files, so a directory's
    last results always arrive during its own walk: the case that broke."""
    original = ContentWorkers.poll
    busy = []

    def eager_poll(self, on_result, *, block):
        if busy or block:            # re-entered from a full queue, or a real wait
            return original(self, on_result, block=block)
        busy.append(True)
        try:
            self.flush(on_result)
            deadline = time.monotonic() + 30
            while self.outstanding:
                assert time.monotonic() < deadline, "content workers did not answer in 30 s"
                original(self, on_result, block=False)
                time.sleep(0.001)
        finally:
            busy.clear()

    monkeypatch.setattr(ContentWorkers, "poll", eager_poll)


@pytest.mark.parametrize("eager", [False, True])
def test_every_directory_node_has_its_subtree_and_restores(tmp_path, request, eager):
    if eager:
        request.getfixturevalue("eager_workers")
    src = tmp_path / "src"
    src.mkdir()
    _make_tree(str(src))
    repo = Repository.init(LocalBackend(str(tmp_path / "repo")), b"pw", chunk_avg=64 << 10,
                           kdf_n=2**10)
    repo.load_index()
    sid, snap = Archiver(repo, workers=2).run([str(src)])
    reopened = Repository.open(LocalBackend(str(tmp_path / "repo")), b"pw")
    reopened.load_index()
    nodes = list(_walk_nodes(reopened, bytes.fromhex(snap["tree"])))
    dirs = [n for n in nodes if n["type"] == "dir"]
    assert dirs and all("subtree" in n for n in dirs)
    assert sum(1 for n in nodes if n["type"] == "file") == 40 * 61
    report = Checker(reopened).run(read_data_fraction=1.0)
    assert report.ok, report.errors
    Restorer(reopened, str(tmp_path / "out")).run(reopened.load_snapshot(sid))
    restored = tmp_path / "out" / str(src).lstrip("/")
    for d in range(40):
        for f in (0, 59):
            rel = os.path.join(f"d{d:03d}", f"f{f:03d}.txt")
            assert (restored / rel).read_bytes() == (src / rel).read_bytes()


def test_second_run_reuses_parent_and_reads_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _make_tree(str(src), dirs=5, files=10)
    repo = Repository.init(LocalBackend(str(tmp_path / "repo")), b"pw", chunk_avg=64 << 10,
                           kdf_n=2**10)
    _sid, first = Archiver(repo).run([str(src)])
    first["id"] = _sid
    second_archiver = Archiver(repo)
    _sid2, second = second_archiver.run([str(src)], parent=first)
    assert second["tree"] == first["tree"]
    assert second_archiver.stats.files_unmodified == 5 * 11
    assert second_archiver.stats.bytes_added == 0
    assert second_archiver.stats.files_new == second_archiver.stats.files_changed == 0
    content = second_archiver._content      # leaf directories went to the workers whole
    assert content is None or (content.blobs_new, content.bytes_new) == (0, 0)
