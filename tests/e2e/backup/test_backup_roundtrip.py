"""`opskit backup` round trips as a user runs them: restore is byte-identical with
metadata, incremental runs trust unchanged files, --full re-reads, dedup works
across files and runs, and ls / snapshots / diff / restore --include behave."""
from __future__ import annotations

import json
import os
import random
import shutil

import pytest

from tests.harness.backup import (ENV, PASSPHRASE, BackupCli, assert_same_tree, find_node, fs,
                                  make_tree, manifest, open_repo, restored_path, rewrite_snapshot,
                                  run_opskit_bytes, set_mtime, write)
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(tmp_path):
    return BackupCli(tmp_path)


def test_round_trip_is_byte_identical_with_metadata(cli, tmp_path):
    src = make_tree(tmp_path / "src", big_bytes=3 << 20)
    want = manifest(src)
    res = cli.backup(src)
    st = res["stats"]
    n_files = sum(1 for e in want.values() if e.type == "file")
    assert st["files"] == st["files_new"] == n_files
    assert st["bytes"] == sum(e.size for e in want.values() if e.type == "file")
    assert st["errors"] == 0 and res["errors"] == [] and res["parent"] is None

    target = tmp_path / "restore"
    run = cli("restore", "latest", "--target", target)
    assert run.exit_code == 0, run.output
    assert f"{n_files} files" in run.stdout
    assert_same_tree(src, restored_path(target, src))

    # restoring again over the first restore converges to the same tree
    run = cli("restore", res["snapshot"][:8], "--target", target)
    assert run.exit_code == 0, run.output
    assert_same_tree(src, restored_path(target, src))

    # the big file really spans many chunks, the 0-byte file none
    repo = open_repo(cli.repo)
    snap = repo.resolve_snapshot("latest")
    assert len(find_node(repo, snap, src + b"/big.bin")["content"]) >= 12
    assert find_node(repo, snap, src + b"/empty")["content"] == []
    assert find_node(repo, snap, src + b"/\xff\xfe latin-1 \xe9t\xe9")["name_b64"]

    run = cli("check", "--read-data")
    assert run.exit_code == 0, run.output
    assert "no errors found" in run.stdout


def test_backup_of_single_files_and_several_roots(cli, tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b" / "deeper"
    a.mkdir()
    b.mkdir(parents=True)
    write(a / "one", b"one" * 1000, 0o640, 1_500_000_000_000_000_001)
    write(b / "two", os.urandom(700_000), 0o600, 1_500_000_000_000_000_002)
    write(tmp_path / "lonely-file", b"just me", 0o604, 1_500_000_000_000_000_003)
    res = cli.backup(a, b, tmp_path / "lonely-file")
    assert sorted(res["paths"]) == sorted(map(str, (a, b, tmp_path / "lonely-file")))
    assert res["stats"]["files"] == 3
    target = tmp_path / "t"
    assert cli("restore", "latest", "--target", target).exit_code == 0
    assert_same_tree(a, restored_path(target, a))
    assert_same_tree(b, restored_path(target, b))
    restored = restored_path(target, tmp_path / "lonely-file")
    assert open(restored, "rb").read() == b"just me"
    assert os.stat(restored).st_mtime_ns == 1_500_000_000_000_000_003
    # only the chosen paths: siblings of the roots were not backed up
    assert not os.path.exists(restored_path(target, tmp_path / "opskit.yaml"))


def test_excludes_and_nested_roots(tmp_path):
    cli = BackupCli(tmp_path, extra="  exclude: ['*.log']\n")
    src = tmp_path / "src"
    (src / "cache" / "deep").mkdir(parents=True)
    (src / "sub").mkdir()
    write(src / "keep.txt", b"keep")
    write(src / "scratch.tmp", b"tmp")
    write(src / "sub" / "debug.log", b"log")
    write(src / "sub" / "data", b"data")
    write(src / "cache" / "deep" / "blob", b"cache")
    res = cli.backup(src, src / "sub", "--exclude", "*.tmp", "--exclude", str(src / "cache"))
    assert res["stats"]["files"] == 2
    snap = cli.json("snapshots")[-1]
    assert snap["excludes"] == ["*.log", "*.tmp", str(src / "cache")]
    target = tmp_path / "t"
    assert cli("restore", "latest", "--target", target).exit_code == 0
    base = restored_path(target, src)
    assert sorted(os.listdir(base)) == [b"keep.txt", b"sub"]
    assert os.listdir(base + b"/sub") == [b"data"]


def test_concurrent_backups_share_the_repository(cli, tmp_path):
    import subprocess
    import sys
    rng = random.Random(77)
    shared = rng.randbytes(1 << 20)
    roots = []
    for name in ("left", "right"):
        root = tmp_path / name
        root.mkdir()
        write(root / "shared", shared)
        for i in range(20):
            write(root / f"own{i}", rng.randbytes(100_000))
        roots.append(root)
    env = dict(os.environ, OPSKIT_PASSPHRASE=PASSPHRASE)
    procs = [subprocess.Popen([sys.executable, "-m", "opskit", "--config", cli.config, "backup",
                               "run", str(r), "--json"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in roots]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    report = cli.json("check", "--read-data")
    assert report["ok"] and report["snapshots"] == 2, report
    for root, (out, _err) in zip(roots, outs):
        target = tmp_path / f"t-{root.name}"
        assert cli("restore", json.loads(out)["snapshot"], "--target", target).exit_code == 0
        assert_same_tree(root, restored_path(target, root))


def test_ls_lists_the_snapshot(cli, tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "inner").mkdir(parents=True)
    write(src / "top file", b"x" * 10, 0o640)
    write(src / "sub" / "caf\u00e9", b"y" * 20, 0o600)
    write(src / "sub" / "inner" / "z", b"", 0o644)
    os.symlink("top file", src / "link")
    sid = cli.backup(src)["snapshot"]
    rows = cli.json("ls", sid[:6])
    by_path = {r["path"]: r for r in rows}
    s = str(src)
    assert {p for p in by_path if p.startswith(s + "/")} == {
        f"{s}/top file", f"{s}/sub", f"{s}/sub/caf\u00e9", f"{s}/sub/inner", f"{s}/sub/inner/z",
        f"{s}/link"}
    assert by_path[f"{s}/top file"]["size"] == 10 and by_path[f"{s}/top file"]["mode"] == 0o640
    assert by_path[f"{s}/sub/caf\u00e9"]["type"] == "file"
    assert by_path[f"{s}/link"]["type"] == "symlink"
    assert by_path[f"{s}/sub"]["type"] == "dir"
    sub = cli.json("ls", "latest", f"{s}/sub")
    assert sorted(r["path"] for r in sub) == [f"{s}/sub", f"{s}/sub/caf\u00e9", f"{s}/sub/inner",
                                              f"{s}/sub/inner/z"]
    run = cli("ls", "latest", f"{s}/no-such-thing")
    assert run.exit_code == 2 and "not in snapshot" in run.stderr


def test_snapshots_json_tags_and_parents(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write(src / "f", b"v1")
    first = cli.backup(src, "--tag", "daily")
    write(src / "f", b"v2")
    second = cli.backup(src, "--tag", "weekly", "--tag", "daily")
    assert second["parent"] == first["snapshot"]
    snaps = cli.json("snapshots")
    assert [s["id"] for s in snaps] == [first["snapshot"], second["snapshot"]]
    assert snaps[0]["tags"] == ["daily"] and snaps[1]["tags"] == ["daily", "weekly"]
    assert snaps[1]["parent"] == first["snapshot"] and snaps[0]["parent"] is None
    assert snaps[0]["paths"] == [str(src)] and snaps[0]["stats"]["files"] == 1
    assert [s["id"] for s in cli.json("snapshots", "--tag", "weekly")] == [second["snapshot"]]
    assert cli.json("snapshots", "--host", "no-such-host") == []
    table = cli("snapshots")
    assert table.exit_code == 0 and first["snapshot"][:8] in table.stdout


def test_incremental_trusts_unchanged_files_and_full_rereads(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(5)
    a, b = rng.randbytes(600_000), rng.randbytes(600_000)
    write(src / "a.bin", a)
    write(src / "b.bin", b)
    write(src / "c.txt", b"c" * 5000)
    write(src / "d.txt", b"d" * 5000)
    first = cli.backup(src)
    assert first["stats"]["files_new"] == 4

    second = cli.backup(src)
    st = second["stats"]
    assert (st["files_unmodified"], st["files_new"], st["files_changed"]) == (4, 0, 0)
    assert st["bytes_added"] < 64 << 10

    # Prove the incremental run does not read unchanged files: doctor the newest snapshot so
    # a.bin's node keeps its metadata but points at b.bin's chunks. A run that trusts the
    # metadata copies the doctored content; a --full run reads the file and corrects it.
    repo = open_repo(cli.repo)
    snap = repo.resolve_snapshot("latest")
    b_content = find_node(repo, snap, fs(src) + b"/b.bin")["content"]

    def doctor(nodes):
        for n in nodes:
            if n.get("name") == "a.bin":
                n["content"] = b_content
        return nodes

    rewrite_snapshot(repo, snap, src, doctor)
    third = cli.backup(src)
    assert third["stats"]["files_unmodified"] == 4 and third["stats"]["files_changed"] == 0
    out = tmp_path / "out3"
    assert cli("restore", third["snapshot"], "--target", out, "--include", src / "a.bin").exit_code == 0
    assert open(restored_path(out, src / "a.bin"), "rb").read() == b   # a.bin was not read

    full = cli.backup(src, "--full")
    st = full["stats"]
    assert full["full"] is True
    assert st["files"] == 4 and st["files_changed"] == 1 and st["files_unmodified"] == 3
    assert st["bytes_added"] < 64 << 10, "a full run must deduplicate against what is stored"
    out = tmp_path / "out4"
    assert cli("restore", "latest", "--target", out).exit_code == 0
    assert_same_tree(src, restored_path(out, src))

    # a content change that keeps size and mtime is still seen (ctime changed)
    st_c = os.stat(src / "c.txt")
    write(src / "c.txt", b"C" * 5000)
    set_mtime(src / "c.txt", st_c.st_mtime_ns)
    fifth = cli.backup(src)
    assert fifth["stats"]["files_changed"] == 1 and fifth["stats"]["files_unmodified"] == 3
    out = tmp_path / "out5"
    assert cli("restore", "latest", "--target", out).exit_code == 0
    assert open(restored_path(out, src / "c.txt"), "rb").read() == b"C" * 5000


def _data_bytes(repo_dir) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(os.path.join(repo_dir, "data")):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def test_dedup_across_files_and_runs(tmp_path):
    cli = BackupCli(tmp_path, extra="  workers: 1\n")
    x = random.Random(9).randbytes(4 << 20)
    one = tmp_path / "one"
    (one / "sub" / "deeper").mkdir(parents=True)
    for i, path in enumerate((one / "x1", one / "sub" / "x2", one / "sub" / "deeper" / "x3",
                              one / "x4")):
        write(path, x, 0o600 + i, 1_700_000_000_000_000_000 + i)
    first = cli.backup(one)
    assert first["stats"]["bytes"] == 4 * len(x)
    assert first["stats"]["bytes_added"] < len(x) + (64 << 10)
    assert _data_bytes(cli.repo) < len(x) * 1.05

    # another path set (no parent): renamed, shifted and truncated copies
    two = tmp_path / "two"
    two.mkdir()
    write(two / "renamed", x)
    write(two / "inserted", x[:1_000_000] + b"a few new bytes" + x[1_000_000:])
    write(two / "prefix", x[:2_500_000])
    second = cli.backup(two)
    assert second["parent"] is None and second["stats"]["files_new"] == 3
    assert second["stats"]["bytes_added"] < 1_300_000, second["stats"]   # vs 10.5 MB read
    assert _data_bytes(cli.repo) < len(x) * 1.35

    # parallel workers: every copy after the first per worker is deduplicated
    par = BackupCli(tmp_path, init=False, repo=cli.repo, name="parallel.yaml", extra="  workers: 2\n")
    y = random.Random(10).randbytes(2 << 20)
    three = tmp_path / "three"
    three.mkdir()
    for i in range(6):
        write(three / f"y{i}", y)
    third = par.backup(three)
    assert third["stats"]["bytes_added"] <= 2 * len(y) + (64 << 10), third["stats"]

    target = tmp_path / "t"
    for ref, src in ((first["snapshot"], one), (second["snapshot"], two), ("latest", three)):
        assert cli("restore", ref, "--target", target).exit_code == 0
        assert_same_tree(src, restored_path(target, src))


def test_restore_include(cli, tmp_path):
    src = make_tree(tmp_path / "src")
    cli.backup(src)
    target = tmp_path / "t"
    run = cli("restore", "latest", "--target", target, "--include", os.fsdecode(src) + "/deep",
              "--include", os.fsdecode(src) + "/exec.sh")
    assert run.exit_code == 0, run.output
    base = restored_path(target, src)
    assert sorted(os.listdir(base)) == [b"deep", b"exec.sh"]
    assert_same_tree(src + b"/deep", base + b"/deep")
    assert open(base + b"/exec.sh", "rb").read() == open(src + b"/exec.sh", "rb").read()
    run = cli("restore", "latest", "--target", tmp_path / "t2", "--include", "/no/such/path")
    assert run.exit_code == 1 and "no such path" in run.output


def _diff_set(data) -> set[tuple[str, str]]:
    return {(c["change"], c["path"]) for c in data["changes"]}


def test_diff_reports_each_kind_of_change(cli, tmp_path):
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    write(src / "keep" / "same", b"same")
    write(src / "modified", b"before")
    write(src / "removed", b"bye")
    write(src / "chmodded", b"mode", 0o644)
    write(src / "becomes-dir", b"file now")
    os.symlink("same", src / "keep" / "link")
    first = cli.backup(src)["snapshot"]

    write(src / "modified", b"after!")
    os.unlink(src / "removed")
    os.chmod(src / "chmodded", 0o600)
    os.unlink(src / "becomes-dir")
    (src / "becomes-dir").mkdir()
    (src / "new-dir").mkdir()
    write(src / "new-dir" / "inner", b"new")
    write(src / "added", b"hello")
    os.unlink(src / "keep" / "link")
    os.symlink("elsewhere", src / "keep" / "link")
    second = cli.backup(src)["snapshot"]

    data = cli.json("diff", first[:10], "latest")
    assert (data["from"], data["to"]) == (first, second)
    s = str(src)
    assert _diff_set(data) == {
        ("M", f"{s}/modified"), ("-", f"{s}/removed"), ("U", f"{s}/chmodded"),
        ("T", f"{s}/becomes-dir/"), ("+", f"{s}/new-dir/"), ("+", f"{s}/new-dir/inner"),
        ("+", f"{s}/added"), ("M", f"{s}/keep/link")}
    assert (data["added"], data["removed"], data["modified"], data["metadata"]) == (3, 1, 3, 1)
    assert cli.json("diff", second[:8], second[:8])["changes"] == []
    back = cli.json("diff", second, first)
    assert ("-", f"{s}/added") in _diff_set(back) and ("+", f"{s}/removed") in _diff_set(back)


def test_diff_sees_a_changed_non_utf8_symlink_target(cli, tmp_path):
    """Regression: Differ compared only node["target"], missing target_b64 changes."""
    src = tmp_path / "src"
    src.mkdir()
    link = fs(src) + b"/link"
    os.symlink(b"target-\xff-one", link)
    set_mtime(link, 1_000_000_000_000_000_000, symlink=True)
    first = cli.backup(src)["snapshot"]
    os.unlink(link)
    os.symlink(b"target-\xfe-two", link)
    set_mtime(link, 1_000_000_000_000_000_000, symlink=True)
    second = cli.backup(src)["snapshot"]
    data = cli.json("diff", first, second)
    assert ("M", f"{src}/link") in _diff_set(data)


@pytest.mark.parametrize("command", ["ls", "diff"])
def test_json_output_is_valid_utf8_with_non_utf8_names(cli, tmp_path, command):
    """Regression: fsdecode()d names (lone surrogates) made --json output invalid UTF-8."""
    src = tmp_path / "src"
    src.mkdir()
    first = cli.backup(src)["snapshot"]
    write(fs(src) + b"/bad-\xff-name", b"x")
    second = cli.backup(src)["snapshot"]
    args = ["ls", "latest"] if command == "ls" else ["diff", first, second]
    proc = run_opskit_bytes("--config", cli.config, "backup", *args, "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.decode("utf-8"))        # RFC 8259: JSON text is UTF-8
    assert "bad-" in json.dumps(data)


def test_first_run_without_config_creates_the_default_repository(tmp_path):
    home = os.environ["OPSKIT_HOME"]
    src = tmp_path / "src"
    src.mkdir()
    write(src / "f", b"first run")

    run = run_opskit("backup", "run", src)            # no passphrase anywhere, no terminal
    assert run.exit_code == 3 and "Traceback" not in run.output     # a missing key: operational
    assert "OPSKIT_PASSPHRASE_FILE" in run.stderr and run.stderr.count("\n") == 1
    assert not os.path.exists(os.path.join(home, "repo", "config"))

    # a short passphrase is refused for a new repository unless asked for (restic's rule)
    run = run_opskit("backup", "run", src, env={"OPSKIT_PASSPHRASE": "short"})
    assert run.exit_code == 2 and "at least 8" in run.stderr and "--insecure-passphrase" in run.stderr
    assert not os.path.exists(os.path.join(home, "repo", "config"))

    run = run_opskit("backup", "run", src, env=ENV)
    assert run.exit_code == 0, run.output
    assert "created repository" in run.stderr
    assert "losing it means the backups cannot be restored" in run.stderr
    assert os.path.isfile(os.path.join(home, "repo", "config"))
    run = run_opskit("backup", "run", src, env=ENV)
    assert run.exit_code == 0 and "created repository" not in run.output
    snaps = json.loads(run_opskit("backup", "snapshots", "--json", env=ENV).stdout)
    assert len(snaps) == 2 and snaps[1]["stats"]["files_unmodified"] == 1
    target = tmp_path / "t"
    assert run_opskit("backup", "restore", "latest", "--target", target, env=ENV).exit_code == 0
    assert_same_tree(src, restored_path(target, src))


def test_init_command(tmp_path):
    repo = tmp_path / "explicit-repo"
    run = run_opskit("backup", "init", "--repo", repo, env=ENV)
    assert run.exit_code == 0, run.output
    assert os.path.isfile(repo / "config") and len(os.listdir(repo / "keys")) == 1
    again = run_opskit("backup", "init", "--repo", repo, env=ENV)
    assert again.exit_code == 2 and "already exists" in again.stderr
    other = run_opskit("backup", "snapshots", "--repo", repo, "--json",
                       env={"OPSKIT_PASSPHRASE": PASSPHRASE + "x"})
    assert other.exit_code == 3 and "wrong passphrase" in other.stderr
    assert json.loads(run_opskit("backup", "snapshots", "--repo", repo, "--json", env=ENV).stdout) == []
    shutil.rmtree(repo)
