"""SIGKILL at any moment of a backup leaves a repository that passes `check`; the
next run succeeds, reuses what was written, and restores byte-identically
(format doc, Write order)."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from opskit.backup import crypto
from opskit.backup.pack import BLOB_DATA
from tests.harness.backup import (ENV, FAST_KDF_N, PASSPHRASE, BackupCli, assert_same_tree,
                                  files_under, open_repo, restored_path, write)
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e

SEED = 20261122


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    """~75 MiB in 96 files: random (incompressible) and repetitive (compressible, self-deduping)."""
    root = tmp_path_factory.mktemp("crash") / "big"
    rng = random.Random(SEED)
    for d in range(8):
        os.makedirs(root / f"d{d}")
        for i in range(12):
            n = rng.choice([50_000, 300_000, 900_000, 2_000_000])
            data = (rng.randbytes(n) if (d + i) % 3
                    else (b"compressible %d %d\n" % (d, i)) * (n // 20))
            write(root / f"d{d}" / f"f{i}", data)
    os.symlink("d0/f0", root / "link")
    os.mkdir(root / "empty")
    return root


def _entries(folder) -> list[str]:
    """Every file under folder, tmp-* included (a write in progress)."""
    out = []
    for _dirpath, _dirs, files in os.walk(folder):
        out.extend(files)
    return out


TRIGGERS = {
    # kill as soon as ...
    "lock": lambda repo: _entries(os.path.join(repo, "locks")),
    "pack-being-written": lambda repo: [f for f in _entries(os.path.join(repo, "data"))
                                        if f.startswith("tmp-")],
    "several-packs": lambda repo: len(files_under(os.path.join(repo, "data"))) >= 6,
    "index": lambda repo: _entries(os.path.join(repo, "index")),
    "snapshot": lambda repo: files_under(os.path.join(repo, "snapshots")),
}
_rng = random.Random(SEED)
DELAYS = [round(_rng.uniform(0.0, 0.45), 3) for _ in range(2)]
CASES = [(name, None) for name in TRIGGERS] + [("lock", d) for d in DELAYS]


def _backup_and_kill(cli: BackupCli, src, trigger: str, delay: float | None) -> str:
    """Start `backup run`, SIGKILL its whole process group at the chosen moment."""
    env = dict(os.environ, **ENV)
    proc = subprocess.Popen([sys.executable, "-m", "opskit", "--config", cli.config, "backup",
                             "run", str(src), "--json"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    fired = TRIGGERS[trigger]
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and not fired(cli.repo):
            assert time.monotonic() < deadline, "backup neither progressed nor finished"
            time.sleep(0.0005)
        if delay:
            time.sleep(delay)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)      # the run and its content workers
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    return "finished" if proc.returncode == 0 else "killed"


def _stored_data(repo_dir) -> int:
    """Plaintext bytes of the distinct data blobs in the packs present now."""
    repo = open_repo(repo_dir, index=False)
    blobs = {}
    for path in files_under(os.path.join(repo_dir, "data")):
        for e in repo.read_pack_header(os.path.basename(path)):
            if e.type == BLOB_DATA:
                blobs[e.id] = e.raw_length
    return sum(blobs.values())


@pytest.mark.parametrize("trigger,delay", CASES,
                         ids=[f"{t}" if d is None else f"{t}+{d}s" for t, d in CASES])
def test_sigkill_during_backup_leaves_a_usable_repository(tmp_path, big_tree, trigger, delay):
    cli = BackupCli(tmp_path, pack_size_mib=2)
    outcome = _backup_and_kill(cli, big_tree, trigger, delay)

    # 1. the repository passes check (unindexed packs are warnings, not errors)
    report = cli.json("check")
    assert report["ok"] is True and report["errors"] == [], report
    packs_before = files_under(os.path.join(cli.repo, "data"))
    locks_before = files_under(os.path.join(cli.repo, "locks"))
    reused = _stored_data(cli.repo)
    print(f"{trigger} {delay}: {outcome}, {len(packs_before)} packs ({reused} B) left, "
          f"{len(locks_before)} lock(s)")   # shown when the test fails

    # 2. the next run succeeds despite the dead run's lock, and reuses its packs
    rerun = cli.backup(big_tree)
    st = rerun["stats"]
    assert st["errors"] == 0 and st["files"] == 96
    if packs_before:
        assert reused > 0
        assert st["bytes_added"] <= st["bytes"] - reused + (256 << 10), (outcome, reused, st)
    assert set(packs_before) <= set(files_under(os.path.join(cli.repo, "data")))

    # 3. the dead process's lock is stale: unlock removes exactly it
    removed = cli.json("unlock")["removed"]
    assert sorted(l["id"] for l in removed) == sorted(os.path.basename(l) for l in locks_before)
    assert all("is gone" in l["why_stale"] for l in removed)

    # 4. restore is byte-identical, and a full data check is clean (leftovers re-indexed)
    target = tmp_path / "restore"
    run = cli("restore", rerun["snapshot"], "--target", target)
    assert run.exit_code == 0, run.output
    assert_same_tree(big_tree, restored_path(target, big_tree))
    if delay is None:
        report = cli.json("check", "--read-data")
        assert report["ok"] and report["warnings"] == [], report
    shutil.rmtree(target)


def _slot_sorting_first(passphrase: str) -> tuple[str, bytes]:
    """A key slot for some other master key set whose id sorts before any other."""
    slot = json.loads(crypto.make_key_slot(crypto.MasterKeys.generate(), passphrase.encode(),
                                           n=FAST_KDF_N))
    for pad in range(10_000_000):
        slot["pad"] = pad
        raw = json.dumps(slot).encode()
        oid = crypto.object_id(raw)
        if oid.startswith("0000"):
            return oid, raw
    raise AssertionError("no slot id found")


def test_kill_during_first_run_init_does_not_brick_the_repository(tmp_path):
    """Regression: a leftover key slot (init killed between keys/<id> and config) was
    tried first on open and locked everyone out of the new repository."""
    home = os.environ["OPSKIT_HOME"]
    repo = os.path.join(home, "repo")
    # the state a SIGKILL leaves between `put keys/<id>` and `put config` in Repository.init
    for d in ("data", "index", "snapshots", "keys", "locks"):
        os.makedirs(os.path.join(repo, d), mode=0o700)
    oid, raw = _slot_sorting_first(PASSPHRASE)
    write(os.path.join(repo, "keys", oid), raw, 0o600)
    src = tmp_path / "src"
    src.mkdir()
    write(src / "f", b"data")
    run = run_opskit("backup", "run", src, env=ENV)
    assert run.exit_code == 0, run.output
    run = run_opskit("backup", "snapshots", "--json", env=ENV)
    assert run.exit_code == 0, run.output
    assert len(json.loads(run.stdout)) == 1


def test_old_temporary_files_are_removed_by_the_next_backup(tmp_path):
    """Regression: tmp-* files of killed writers were never removed."""
    cli = BackupCli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    write(src / "f", b"x")
    leftover = os.path.join(cli.repo, "data", "ab", "tmp-99999-1-ab" + "0" * 62)
    os.makedirs(os.path.dirname(leftover), exist_ok=True)
    write(leftover, b"half a pack", mtime_ns=(time.time_ns() - 3 * 3600 * 10**9))
    cli.backup(src)
    assert cli.json("check")["ok"]
    assert not os.path.exists(leftover)


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.update(int(x) for x in fh.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids


def _running(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(pid)
        except FileNotFoundError:
            pass
    return out


def test_sigterm_to_a_backup_leaves_no_worker_processes(tmp_path, big_tree):
    """Regression: workers outlived a SIGTERMed backup, blocked on the task queue forever."""
    cli = BackupCli(tmp_path, pack_size_mib=2)
    proc = subprocess.Popen([sys.executable, "-m", "opskit", "--config", cli.config, "backup",
                             "run", str(big_tree)], env=dict(os.environ, **ENV),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        kids: set[int] = set()
        deadline = time.monotonic() + 60
        while not kids and proc.poll() is None and time.monotonic() < deadline:
            kids = _children(proc.pid)
            time.sleep(0.001)
        assert kids, "the backup ended before its workers were seen"
        proc.send_signal(signal.SIGTERM)        # the main process only, as `kill PID` does
        proc.wait(timeout=30)
        deadline = time.monotonic() + 3
        while _running(kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _running(kids) == [], "worker processes outlived the backup"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # never leave orphans behind
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    assert cli.json("check")["ok"]
