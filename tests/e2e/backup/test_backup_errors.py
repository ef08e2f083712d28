"""What a user sees when something is wrong: wrong passphrase, no repository,
a passphrase file others can read, unreadable source files, held and stale locks."""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess

import pytest

from opskit.backup.locks import RepoLock
from tests.harness.backup import (PASSPHRASE, BackupCli, assert_same_tree, open_repo,
                                  restored_path, run_opskit_without_dac, write)
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(tmp_path):
    return BackupCli(tmp_path)


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "src"
    path.mkdir()
    write(path / "f", b"data")
    return path


def _clean_error(run, code: int) -> None:
    assert run.exit_code == code, run.output
    assert "Traceback" not in run.output and "internal error" not in run.output, run.output
    assert run.stderr.startswith("opskit: error: "), run.stderr


COMMANDS = {
    "run": lambda src, t: ["run", src],
    "snapshots": lambda src, t: ["snapshots"],
    "ls": lambda src, t: ["ls", "latest"],
    "restore": lambda src, t: ["restore", "latest", "--target", t],
    "check": lambda src, t: ["check", "--read-data"],
    "diff": lambda src, t: ["diff", "latest", "latest"],
    "unlock": lambda src, t: ["unlock"],
}


@pytest.fixture(scope="module")
def one_snapshot(tmp_path_factory):
    base = tmp_path_factory.mktemp("wrong-passphrase")
    cli = BackupCli(base)
    src = base / "src"
    src.mkdir()
    write(src / "f", b"data")
    cli.backup(src, env={"OPSKIT_HOME": str(base / "home")})
    return cli, src


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_wrong_passphrase_is_exit_3_without_traceback(one_snapshot, tmp_path, command):
    cli, src = one_snapshot
    target = tmp_path / "t"
    run = cli(*COMMANDS[command](src, target), passphrase="Tr0ub4dor&3")
    _clean_error(run, 3)
    assert "wrong passphrase" in run.stderr
    assert run.stdout == "" and "Tr0ub4dor" not in run.output
    assert not target.exists()
    # nothing was added or left behind by the failed attempt
    assert len(os.listdir(os.path.join(cli.repo, "snapshots"))) == 1
    assert os.listdir(os.path.join(cli.repo, "locks")) == []


@pytest.mark.parametrize("command", ["run", "snapshots", "ls", "restore", "check", "diff", "unlock"])
def test_missing_repository_says_how_to_create_one(tmp_path, src, command):
    missing = tmp_path / "no-repo-here"
    args = COMMANDS[command](src, tmp_path / "t")
    run = run_opskit("backup", *args, "--repo", missing, env={"OPSKIT_PASSPHRASE": PASSPHRASE})
    _clean_error(run, 3)
    assert f"no repository at {missing}" in run.stderr
    assert f"opskit backup init --repo {missing}" in run.stderr
    assert not missing.exists()


def test_missing_configured_repository_is_not_created_by_run(tmp_path, src):
    cli = BackupCli(tmp_path, init=False)
    run = cli("run", src)
    _clean_error(run, 3)
    assert "opskit backup init" in run.stderr
    assert not os.path.exists(cli.repo)


def test_passphrase_file_must_be_private(cli, src, tmp_path):
    pw = tmp_path / "pass"
    pw.write_text(PASSPHRASE + "\n")
    for mode in (0o644, 0o640, 0o604):
        os.chmod(pw, mode)
        run = cli("run", src, "--passphrase-file", pw, passphrase=None)
        _clean_error(run, 2)
        assert "readable by others" in run.stderr and f"chmod 600 {pw}" in run.stderr
        run = cli("snapshots", passphrase=None, env={"OPSKIT_PASSPHRASE_FILE": str(pw)})
        _clean_error(run, 2)
    assert cli.json("snapshots") == []
    os.chmod(pw, 0o600)
    pw.write_text(PASSPHRASE + "\nonly the first line counts\n")
    # --passphrase-file wins over $OPSKIT_PASSPHRASE (docs/backup.md: first match wins)
    run = cli("run", src, "--passphrase-file", pw, passphrase="not the passphrase")
    assert run.exit_code == 0, run.output
    assert len(cli.json("snapshots", "--passphrase-file", pw, passphrase=None)) == 1
    write(tmp_path / "wrong", b"not the passphrase\n", 0o600)
    run = cli("snapshots", "--passphrase-file", tmp_path / "wrong", passphrase=None)
    _clean_error(run, 3)
    assert "wrong passphrase" in run.stderr


def test_missing_source_path_is_a_usage_error(cli, tmp_path):
    run = cli("run", tmp_path / "nope")
    _clean_error(run, 2)
    assert "does not exist" in run.stderr


def test_unusable_restore_target_is_a_clean_error(cli, src, tmp_path):
    """Regression: an unusable --target escaped as 'internal error: NotADirectoryError'."""
    cli.backup(src)
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    run = run_opskit("--config", cli.config, "backup", "restore", "latest",
                     "--target", blocker / "sub", env={"OPSKIT_PASSPHRASE": PASSPHRASE})
    assert run.exit_code == 3, run.output
    assert "internal error" not in run.output and str(blocker / "sub") in run.stderr


def test_unreadable_files_are_listed_and_the_rest_is_backed_up(cli, tmp_path):
    src = tmp_path / "src"
    (src / "locked-dir").mkdir(parents=True)
    (src / "open-dir").mkdir()
    write(src / "ok-1", b"readable one")
    write(src / "open-dir" / "ok-2", os.urandom(200_000))
    write(src / "locked-dir" / "hidden", b"cannot even list me")
    write(src / "secret.db", b"no read permission", 0o000)
    os.chmod(src / "locked-dir", 0o000)
    try:
        run = run_opskit_without_dac("--config", cli.config, "backup", "run", src, "--json",
                                     env={"OPSKIT_PASSPHRASE": PASSPHRASE})
        assert "Traceback" not in run.output
        assert run.exit_code == 1, run.output
        data = json.loads(run.stdout)
        assert sorted(e["path"] for e in data["errors"]) == [str(src / "locked-dir"),
                                                             str(src / "secret.db")]
        assert all("ermission denied" in e["error"] for e in data["errors"])
        assert data["stats"]["errors"] == 2 and data["stats"]["files"] == 2

        run = run_opskit_without_dac("--config", cli.config, "backup", "run", src,
                                     env={"OPSKIT_PASSPHRASE": PASSPHRASE})
        assert run.exit_code == 1, run.output
        assert "2 errors" in run.stdout
        assert f"error: {src / 'secret.db'}: Permission denied" in run.stdout
    finally:
        os.chmod(src / "locked-dir", 0o755)
    snaps = cli.json("snapshots")
    assert len(snaps) == 2 and snaps[0]["stats"]["errors"] == 2
    target = tmp_path / "t"
    assert cli("restore", data["snapshot"], "--target", target).exit_code == 0
    base = restored_path(target, src)
    assert sorted(os.listdir(base)) == [b"ok-1", b"open-dir"]
    assert_same_tree(src / "open-dir", base + b"/open-dir")


# --- locks ------------------------------------------------------------------------------------
def _lock(repo_dir, *, exclusive: bool, pid: int, host: str | None = None, age_s: float = 0) -> str:
    repo = open_repo(repo_dir, index=False)
    t = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return repo.save_file("locks", "lock", {"exclusive": exclusive, "host": host or socket.gethostname(),
                                            "pid": pid, "user": "tester", "time": t, "refreshed": t})


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_backup_lock_is_shared(cli, src):
    repo = open_repo(cli.repo, index=False)
    with RepoLock(repo) as mine:            # another backup is running
        res = cli.backup(src)
        assert cli("check").exit_code == 0
        assert cli("restore", res["snapshot"], "--target", src.parent / "t").exit_code == 0
        assert os.listdir(os.path.join(cli.repo, "locks")) == [mine.lock_id]
    assert os.listdir(os.path.join(cli.repo, "locks")) == []


def test_exclusive_lock_held_by_a_live_process_blocks(cli, src, tmp_path):
    lock = _lock(cli.repo, exclusive=True, pid=os.getpid())
    for args in (["run", src], ["restore", "latest", "--target", tmp_path / "t"], ["check"]):
        run = cli(*args)
        _clean_error(run, 3)
        assert "is locked: exclusive lock by tester@" in run.stderr and f"pid {os.getpid()}" in run.stderr
        assert "opskit backup unlock" in run.stderr
    unlock = cli.json("unlock")                 # a live holder is not stale: kept
    assert unlock["removed"] == [] and [l["id"] for l in unlock["remaining"]] == [lock]
    assert os.listdir(os.path.join(cli.repo, "locks")) == [lock]
    assert cli.json("snapshots") == []


def test_stale_locks_are_ignored_and_unlock_removes_them(cli, src):
    dead = _lock(cli.repo, exclusive=True, pid=_dead_pid())
    old = _lock(cli.repo, exclusive=True, pid=1, host="gone.example", age_s=3 * 3600)
    other = _lock(cli.repo, exclusive=False, pid=1, host="busy.example")
    res = cli.backup(src)                      # stale exclusive locks do not block
    assert res["stats"]["files"] == 1
    data = cli.json("unlock")
    assert sorted(l["id"] for l in data["removed"]) == sorted([dead, old])
    assert {l["id"]: l["why_stale"] for l in data["removed"]}[dead].startswith("process")
    assert [l["id"] for l in data["remaining"]] == [other]
    table = cli("unlock")
    assert table.exit_code == 0 and "removed 0 lock(s), 1 remain" in table.stdout
    data = cli.json("unlock", "--all")
    assert [l["id"] for l in data["removed"]] == [other]
    assert os.listdir(os.path.join(cli.repo, "locks")) == []


def test_a_lock_not_refreshed_in_time_is_stale_per_config(tmp_path, src):
    cli = BackupCli(tmp_path, extra="  lock_stale_minutes: 5\n")
    lock = _lock(cli.repo, exclusive=True, pid=1, host="far.example", age_s=10 * 60)
    assert cli.backup(src)["stats"]["files"] == 1
    assert [l["id"] for l in cli.json("unlock")["removed"]] == [lock]
    fresh = _lock(cli.repo, exclusive=True, pid=1, host="far.example", age_s=60)
    _clean_error(cli("run", src), 3)
    assert [l["id"] for l in cli.json("unlock")["remaining"]] == [fresh]
