"""A damaged object ends a restore promptly with exit 1, names what could not be
restored and leaves no partial file under a final name (issue 27)."""
from __future__ import annotations

import json
import os
import random
import time

import pytest

from tests.harness.backup import BackupCli, find_node, flip_byte, open_repo, restored_path, write

pytestmark = pytest.mark.e2e


@pytest.fixture
def setup(tmp_path):
    """Many files ahead of the damaged parts, so plenty of work is queued when
    the restore meets them: ``a/`` (600 files), ``m/big`` (multi-chunk) and ``z/``."""
    cli = BackupCli(tmp_path, extra="  workers: 1\n")
    src = tmp_path / "src"
    rng = random.Random(7)
    blob = rng.randbytes(40_000)
    for d in ("a", "m", "z"):
        (src / d).mkdir(parents=True)
    for i in range(600):
        write(src / "a" / f"f{i:04d}", blob + i.to_bytes(4, "big"))
    write(src / "m" / "big", rng.randbytes(1_500_000))
    write(src / "z" / "one", b"one")
    write(src / "z" / "two", b"two")
    snap = cli.backup(src, env={"OPSKIT_HOME": str(tmp_path / "home")})["snapshot"]
    return cli, src, snap


def _flip_blob(cli, snap_id, blob_hex):
    """Flip one bit inside one blob (not its pack's header): only that blob is damaged."""
    repo = open_repo(cli.repo)
    loc = repo.index.lookup(bytes.fromhex(blob_hex))
    flip_byte(os.path.join(cli.repo, "data", loc.pack[:2], loc.pack), loc.offset + loc.length // 2)


def _node(cli, snap_id, path):
    repo = open_repo(cli.repo)
    snap = next(s for s in repo.snapshots() if s["id"] == snap_id)
    return find_node(repo, snap, os.fsencode(path))


def _restore(cli, snap, target):
    started = time.monotonic()
    run = cli("restore", snap, "--target", target, "--json", timeout=60)
    return run, time.monotonic() - started


def _leftovers(target) -> list[str]:
    return [os.path.join(d, f) for d, _dirs, files in os.walk(target) for f in files
            if f.startswith(".opskit-restore-")]


def test_damaged_tree_blob_ends_promptly_and_names_the_directory(setup, tmp_path):
    cli, src, snap = setup
    _flip_blob(cli, snap, _node(cli, snap, src / "z")["subtree"])
    target = tmp_path / "t"
    run, took = _restore(cli, snap, target)
    assert run.exit_code == 1, run.output
    assert took < 10, f"restore took {took:.1f} s"
    data = json.loads(run.stdout)
    assert [e["path"] for e in data["errors"]] == [os.fsdecode(restored_path(target, src / "z"))]
    assert "damaged" in data["errors"][0]["error"]
    assert os.listdir(restored_path(target, src / "z")) == []
    # everything else came back whole
    assert data["files"] == 601
    big = restored_path(target, src / "m" / "big")
    assert open(big, "rb").read() == (src / "m" / "big").read_bytes()
    assert _leftovers(target) == []


def test_damaged_data_blob_leaves_no_partial_file(setup, tmp_path):
    cli, src, snap = setup
    content = _node(cli, snap, src / "m" / "big")["content"]
    assert len(content) > 2
    _flip_blob(cli, snap, content[-1])           # the last chunk: the first ones were written
    target = tmp_path / "t"
    run, took = _restore(cli, snap, target)
    assert run.exit_code == 1, run.output
    assert took < 10, f"restore took {took:.1f} s"
    data = json.loads(run.stdout)
    big = restored_path(target, src / "m" / "big")
    assert [e["path"] for e in data["errors"]] == [os.fsdecode(big)]
    assert not os.path.lexists(big)              # never half a file under the real name
    assert _leftovers(target) == []
    assert data["files"] == 602
    assert open(restored_path(target, src / "z" / "two"), "rb").read() == b"two"


def test_damaged_root_tree_is_named_too(setup, tmp_path):
    cli, src, snap = setup
    repo = open_repo(cli.repo)
    root = next(s for s in repo.snapshots() if s["id"] == snap)["tree"]
    _flip_blob(cli, snap, root)
    target = tmp_path / "t"
    run, took = _restore(cli, snap, target)
    assert run.exit_code == 1, run.output
    assert [e["path"] for e in json.loads(run.stdout)["errors"]] == [str(target)]


def test_intact_repository_restores_without_errors(setup, tmp_path):
    """Control: the same restore without damage passes, leaving no temporary files."""
    cli, src, snap = setup
    target = tmp_path / "t"
    run, _took = _restore(cli, snap, target)
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["files"] == 603
    assert _leftovers(target) == []
