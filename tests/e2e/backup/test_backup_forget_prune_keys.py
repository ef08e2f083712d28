"""forget, prune and key slots through the CLI (R-BAK-2, R-BAK-4)."""
import functools
import json
import os
import random

import pytest

pytestmark = pytest.mark.e2e

PW = {"OPSKIT_PASSPHRASE": "correct horse"}


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def repo_with_history(tmp_path, opskit):
    """Three snapshots, in a repo with small packs and chunks."""
    cfg = tmp_path / "opskit.yaml"
    cfg.write_text("backup:\n  chunk_avg_kib: 64\n  pack_size_mib: 1\n"
                   "  retention:\n    floor_days: 0\n"
                   # retention is tested here; two-person review in test_incidents_cli
                   "incidents:\n  high_risk_operations: []\n")
    src = tmp_path / "src"
    rng = random.Random(7)
    # each generation rewrites some files, so old packs end up part live, part garbage
    for gen, rewrite in enumerate([range(6), (0, 2, 4), (0, 1)]):
        for i in rewrite:
            _write(src / f"f{i}.bin", rng.randbytes(400_000))
        run = opskit("--config", cfg, "backup", "run", src, "--json", env=PW)
        assert run.exit_code == 0, run.output
    return cfg, src


def _repo_bytes(home):
    total = 0
    for dirpath, _dirs, files in os.walk(home / "repo"):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def _snapshot_ids(opskit, cfg):
    run = opskit("--config", cfg, "backup", "snapshots", "--json", env=PW)
    assert run.exit_code == 0, run.output
    return [s["id"] for s in json.loads(run.stdout)]


def test_forget_then_prune_frees_space_and_check_passes(repo_with_history, opskit,
                                                        _isolated_opskit_home, tmp_path):
    cfg, src = repo_with_history
    dry = opskit("--config", cfg, "backup", "forget", "--keep-last", "1", "--dry-run", "--json",
                 env=PW)
    assert dry.exit_code == 0, dry.output
    assert len(json.loads(dry.stdout)["forgotten"]) == 2
    assert len(_snapshot_ids(opskit, cfg)) == 3            # dry run changed nothing
    run = opskit("--config", cfg, "backup", "forget", "--keep-last", "1", env=PW)
    assert run.exit_code == 0, run.output
    assert len(_snapshot_ids(opskit, cfg)) == 1
    before = _repo_bytes(_isolated_opskit_home)
    plan = opskit("--config", cfg, "backup", "prune", "--dry-run", "--json", env=PW)
    assert json.loads(plan.stdout)["plan"]["bytes_freed"] > 1_500_000
    assert _repo_bytes(_isolated_opskit_home) == before      # a dry run deletes nothing
    run = opskit("--config", cfg, "backup", "prune", env=PW)
    assert run.exit_code == 0, run.output
    after = _repo_bytes(_isolated_opskit_home)
    assert after < before * 0.7
    check = opskit("--config", cfg, "backup", "check", "--read-data", env=PW)
    assert check.exit_code == 0, check.output
    out = tmp_path / "out"
    run = opskit("--config", cfg, "backup", "restore", "latest", "--target", out, env=PW)
    assert run.exit_code == 0, run.output
    for f in src.iterdir():
        assert (out / str(f).lstrip("/")).read_bytes() == f.read_bytes()


def test_floor_refuses_to_forget_young_snapshots(tmp_path, opskit):
    src = tmp_path / "src"
    _write(src / "a", b"a")
    for _ in range(3):
        assert opskit("backup", "run", src, env=PW).exit_code == 0
    run = opskit("backup", "forget", "--keep-last", "1", env=PW)
    assert run.exit_code == 0, run.output
    assert "floor: younger than 30 days" in run.stdout
    assert len(json.loads(opskit("backup", "snapshots", "--json", env=PW).stdout)) == 3


def test_forget_without_any_rule_is_refused(tmp_path, opskit):
    src = tmp_path / "src"
    _write(src / "a", b"a")
    assert opskit("backup", "run", src, env=PW).exit_code == 0
    run = opskit("backup", "forget", env=PW)
    assert run.exit_code == 2 and "no keep rule" in run.stderr and "Traceback" not in run.output


PRUNE_STEPS = ["prune.after-repack-pack", "prune.after-index-write",
               "prune.after-index-delete", "prune.after-pack-delete"]


def test_prune_killed_at_every_step_leaves_a_checkable_repo(repo_with_history, opskit):
    """SIGKILL (via failpoints) after each step of prune's write order: every time
    the repository passes check --read-data and still restores; a final prune
    finishes the job."""
    cfg, src = repo_with_history
    assert opskit("--config", cfg, "backup", "forget", "--keep-last", "1", env=PW).exit_code == 0
    for step in PRUNE_STEPS:
        killed = opskit("--config", cfg, "backup", "prune", env={**PW, "OPSKIT_FAILPOINT": step})
        assert killed.exit_code == -9, f"{step} was not reached: {killed.output}"
        unlock = opskit("--config", cfg, "backup", "unlock", env=PW)
        assert unlock.exit_code == 0, unlock.output
        check = opskit("--config", cfg, "backup", "check", "--read-data", env=PW)
        assert check.exit_code == 0, f"after kill at {step}: {check.output}"
    rerun = opskit("--config", cfg, "backup", "prune", env=PW)
    assert rerun.exit_code == 0, rerun.output
    again = opskit("--config", cfg, "backup", "prune", "--dry-run", "--json", env=PW)
    plan = json.loads(again.stdout)["plan"]
    assert (plan["packs_delete"], plan["unindexed_delete"], plan["packs_repack"]) == (0, 0, 0)
    assert opskit("--config", cfg, "backup", "check", "--read-data", env=PW).exit_code == 0


def test_key_add_passwd_remove_and_last_key_refused(tmp_path, opskit):
    # key remove is high-risk (R-SEC-2): its review is tested in test_incidents_cli
    cfg = tmp_path / "opskit.yaml"
    cfg.write_text("incidents:\n  high_risk_operations: []\n")
    opskit = functools.partial(opskit, "--config", cfg)
    src = tmp_path / "src"
    _write(src / "a", b"content")
    assert opskit("backup", "run", src, env=PW).exit_code == 0
    add = opskit("backup", "key", "add", "--json",
                 env={**PW, "OPSKIT_NEW_PASSPHRASE": "second"})
    assert add.exit_code == 0, add.output
    second_id = json.loads(add.stdout)["added"]
    assert opskit("backup", "snapshots", env={"OPSKIT_PASSPHRASE": "second"}).exit_code == 0
    # passwd replaces the slot in use; the old passphrase stops working
    pw = opskit("backup", "key", "passwd", env={**PW, "OPSKIT_NEW_PASSPHRASE": "third"})
    assert pw.exit_code == 0, pw.output
    old = opskit("backup", "snapshots", env=PW)
    assert old.exit_code == 3 and "wrong passphrase" in old.stderr
    listed = json.loads(opskit("backup", "key", "list", "--json",
                               env={"OPSKIT_PASSPHRASE": "third"}).stdout)
    assert len(listed) == 2
    rm = opskit("backup", "key", "remove", second_id[:8], env={"OPSKIT_PASSPHRASE": "third"})
    assert rm.exit_code == 0, rm.output
    assert opskit("backup", "snapshots", env={"OPSKIT_PASSPHRASE": "second"}).exit_code == 3
    last = json.loads(opskit("backup", "key", "list", "--json",
                             env={"OPSKIT_PASSPHRASE": "third"}).stdout)[0]["id"]
    refused = opskit("backup", "key", "remove", last[:8], env={"OPSKIT_PASSPHRASE": "third"})
    assert refused.exit_code == 2 and "last one" in refused.stderr


def test_paper_export_import_round_trip(tmp_path, opskit):
    src = tmp_path / "src"
    _write(src / "a", b"paper")
    assert opskit("backup", "run", src, env=PW).exit_code == 0
    sheet = opskit("backup", "key", "export", "--paper", env=PW)
    assert sheet.exit_code == 0 and "sheet checksum" in sheet.stdout
    sheet_file = tmp_path / "sheet.txt"
    sheet_file.write_text(sheet.stdout)
    # the passphrase is lost: the sheet gives access back under a new one
    imp = opskit("backup", "key", "import", "--sheet", sheet_file,
                 env={"OPSKIT_NEW_PASSPHRASE": "from paper"})
    assert imp.exit_code == 0, imp.output
    out = tmp_path / "out"
    run = opskit("backup", "restore", "latest", "--target", out,
                 env={"OPSKIT_PASSPHRASE": "from paper"})
    assert run.exit_code == 0, run.output
    assert (out / str(src / "a").lstrip("/")).read_bytes() == b"paper"
    # one mistyped character is caught by that line's checksum, naming the line
    lines = sheet.stdout.splitlines()
    idx = next(i for i, l in enumerate(lines) if l.startswith("02:"))
    body = lines[idx]
    pos = 4
    lines[idx] = body[:pos] + ("A" if body[pos] != "A" else "B") + body[pos + 1:]
    sheet_file.write_text("\n".join(lines) + "\n")
    bad = opskit("backup", "key", "import", "--sheet", sheet_file,
                 env={"OPSKIT_NEW_PASSPHRASE": "x"})
    assert bad.exit_code == 2 and "line" in bad.stderr and "checksum" in bad.stderr
