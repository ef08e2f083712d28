"""A snapshot whose tree holds names like "..", "../x", "/abs" or "a/b" (a hostile or
damaged repository) is refused by `opskit backup restore`; nothing is ever
written outside the target."""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

from tests.harness.backup import (BackupCli, dir_node, file_node, open_repo, put_data, put_tree,
                                  rewrite_snapshot, symlink_node, write)

pytestmark = pytest.mark.e2e

ABS = f"/opskit-test-evil-{uuid.uuid4().hex[:12]}"


def _listing(root) -> set[str]:
    out = set()
    for dirpath, dirs, files in os.walk(root):
        out.update(os.path.join(dirpath, n) for n in dirs + files)
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("traversal")
    cli = BackupCli(base)
    src = base / "src"
    (src / "sub").mkdir(parents=True)
    write(src / "good", b"good file")
    write(src / "sub" / "inner", b"inner file")
    cli.backup(src, env={"OPSKIT_HOME": str(base / "home")})
    return cli.repo, src


@pytest.fixture
def setup(pristine, tmp_path):
    """A private copy of a repository holding one honest snapshot of ``src``."""
    repo, src = pristine
    shutil.copytree(repo, tmp_path / "repo")
    cli = BackupCli(tmp_path, init=False, repo=tmp_path / "repo")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cli, src, cwd


def _plant(cli, src, where: str, make):
    """Add hostile nodes (``make(repo, writer)``) to a copy of the latest snapshot."""
    repo = open_repo(cli.repo)
    snap = repo.resolve_snapshot("latest")
    holder = {}

    def edit(nodes):
        writer = repo.blob_writer(1)
        holder["nodes"] = make(repo, writer)
        writer.finish()
        return nodes + holder["nodes"]

    return rewrite_snapshot(repo, snap, src if where == "top" else src / "sub", edit)


def _hostile(repo, writer, name, kind: str) -> list[dict]:
    """Nodes named ``name``: a file, a directory holding one, a symlink, or a file twice."""
    data = put_data(repo, writer, b"EVIL PAYLOAD")
    if kind == "twice":
        return [file_node(name, [data], 12), file_node(name, [data], 12)]
    if kind == "file":
        return [file_node(name, [data], 12)]
    if kind == "dir":
        return [dir_node(name, put_tree(repo, writer, [file_node("evil-inside", [data], 12)]))]
    return [symlink_node(name, b"/etc/shadow")]


# (name, node type, where) -- the full cross product runs in tests/unit/backup/test_backup_restorer.py
CASES = [
    ("..", "dir", "top"),
    ("../evil", "file", "nested"),
    ("ESCAPE", "dir", "top"),          # exactly enough ".." to land beside the target
    ("ESCAPE", "file", "nested"),
    (ABS, "file", "top"),
    (ABS, "dir", "nested"),
    ("sub/../../evil", "file", "top"),
    ("a/b", "dir", "nested"),
    (b"../\xffevil", "file", "top"),
    ("../evil-link", "symlink", "nested"),
    (".", "dir", "nested"),
]


@pytest.mark.parametrize("name,kind,where", CASES, ids=[f"{k}-{w}-{n!r}" for n, k, w in CASES])
def test_restore_refuses_names_that_leave_the_target(setup, tmp_path, name, kind, where):
    cli, src, cwd = setup
    if name == "ESCAPE":
        # TARGET + /tmp/.../src[/sub] + /<name>: climb out of the mirrored path, target and box
        ups = (len(src.parts) - 1) + (where == "nested") + 2
        name = "../" * ups + "evil-escaped"

    sid = _plant(cli, src, where, lambda repo, writer: _hostile(repo, writer, name, kind))
    box = tmp_path / "box"
    target = box / "target"
    home = tmp_path / "opskit-home"       # the audit log lives here
    before = _listing(tmp_path) - _listing(home) - {str(home)}
    run = cli("restore", sid[:12], "--target", target, cwd=cwd)
    assert run.exit_code != 0, run.output
    assert "unsafe file name" in run.stderr and run.stderr.startswith("opskit: error: ")
    after = _listing(tmp_path) - _listing(home) - {str(home)}
    new = {p for p in after - before if not p.startswith(str(target) + "/")}
    assert new <= {str(box), str(target)}, sorted(new)
    assert not any("evil" in p or "EVIL" in p for p in _listing(tmp_path)
                   if not p.startswith(str(target) + "/"))
    assert not os.path.lexists(ABS) and os.listdir(cwd) == []


def test_symlink_then_directory_of_the_same_name_cannot_redirect_the_restore(setup, tmp_path):
    cli, src, _cwd = setup
    outside = tmp_path / "outside"
    outside.mkdir()

    def make(repo, writer):
        data = put_data(repo, writer, b"PWNED")
        sub = put_tree(repo, writer, [file_node("pwned", [data], 5)])
        return [symlink_node("escape", os.fsencode(outside)), dir_node("escape", sub)]

    sid = _plant(cli, src, "top", make)
    run = cli("restore", sid, "--target", tmp_path / "target")
    assert run.exit_code in (1, 3), run.output          # refused: listed error or whole restore
    assert "not a directory" in run.output or "appears twice" in run.output
    assert os.listdir(outside) == []


def test_file_through_a_planted_symlink_is_refused(setup, tmp_path):
    cli, src, _cwd = setup
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")

    def make(repo, writer):
        data = put_data(repo, writer, b"overwritten!")
        return [symlink_node("good2", os.fsencode(victim)), file_node("good2", [data], 12)]

    sid = _plant(cli, src, "top", make)
    run = cli("restore", sid, "--target", tmp_path / "target")
    assert run.exit_code in (1, 3), run.output
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("name,kind,where", [c for c in CASES if c[0] != "ESCAPE"] + [
    ("twice", "twice", "nested")], ids=lambda v: repr(v))
def test_check_applies_the_restore_name_rules(setup, name, kind, where):
    """#28 item 8: `check --read-data` said "no errors" about snapshots restore refuses."""
    cli, src, _cwd = setup

    sid = _plant(cli, src, where, lambda repo, writer: _hostile(repo, writer, name, kind))
    report = cli.json("check", "--read-data", expect=1)
    (err,) = report["errors"]
    assert err["object"].startswith("tree ") and err["snapshots"] == [sid[:12]]
    assert ("unsafe file name" in err["problem"] or "appears twice" in err["problem"])


def test_check_of_honest_odd_names_finds_nothing(setup, tmp_path):
    """The rule must not flag names that are odd but safe (the NOT case)."""
    cli, _src, _cwd = setup
    from tests.harness.backup import make_tree
    cli.backup(make_tree(tmp_path / "odd"))
    report = cli.json("check", "--read-data")
    assert report["ok"] is True
