"""Write-only key slots: a backup host can add deduplicated snapshots but
decrypt nothing, old or new (docs/write-only-keys.md; R-BAK-1, R-BAK-2)."""
import json
import os

import pytest

from opskit.backup.backends import LocalBackend
from opskit.backup.repository import CorruptObject, Repository

pytestmark = pytest.mark.e2e

FULL = {"OPSKIT_PASSPHRASE": "restore key, kept offline"}
WO = {"OPSKIT_PASSPHRASE": "cron on the backup host"}


@pytest.fixture
def setup(tmp_path, opskit, _isolated_opskit_home):
    src = tmp_path / "src"
    src.mkdir()
    (src / "payroll-2026.csv").write_bytes(b"name,amount\nzhang,1200\n" * 2000)
    (src / "scan.pdf").write_bytes(os.urandom(900_000))
    assert opskit("backup", "run", src, env=FULL).exit_code == 0
    add = opskit("backup", "key", "add", "--write-only", "--json",
                 env={**FULL, "OPSKIT_NEW_PASSPHRASE": WO["OPSKIT_PASSPHRASE"]})
    assert add.exit_code == 0, add.output
    assert json.loads(add.stdout)["write_only"] is True
    return src, _isolated_opskit_home / "repo"


def test_write_only_host_backs_up_with_dedup_and_full_key_restores(setup, opskit, tmp_path):
    src, _repo = setup
    (src / "new-claim.txt").write_bytes(b"claim 42 corrected\n")
    run = opskit("backup", "run", src, "--json", env=WO)
    assert run.exit_code == 0, run.output
    stats = json.loads(run.stdout)["stats"]
    assert stats["files"] == 3
    assert stats["bytes_added"] < 200_000          # the 900 kB scan was not stored again
    out = tmp_path / "out"
    restore = opskit("backup", "restore", "latest", "--target", out, env=FULL)
    assert restore.exit_code == 0, restore.output
    for f in src.iterdir():
        assert (out / str(f).lstrip("/")).read_bytes() == f.read_bytes()
    check = opskit("backup", "check", "--read-data", env=FULL)
    assert check.exit_code == 0, check.output


@pytest.mark.parametrize("args", [("snapshots",), ("ls", "latest"), ("check",),
                                  ("restore", "latest", "--target", "OUT"),
                                  ("key", "export", "--paper"), ("forget", "--keep-last", "1")])
def test_write_only_key_reads_nothing_back(setup, opskit, tmp_path, args):
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    run = opskit("backup", *args, env=WO)
    assert run.exit_code == 3, run.output
    assert "write-only" in run.stderr and "Traceback" not in run.output
    assert not (tmp_path / "out").exists()


def test_write_only_keys_cannot_decrypt_their_own_or_older_snapshots(setup, opskit):
    src, repo_dir = setup
    assert opskit("backup", "run", src, env=WO).exit_code == 0
    repo = Repository.open(LocalBackend(str(repo_dir)), WO["OPSKIT_PASSPHRASE"].encode())
    assert repo.keys.write_only
    repo.load_index()                              # the index is readable: dedup needs it
    ids = repo.list_snapshot_ids()
    assert len(ids) == 2
    for sid in ids:                                # neither the old nor its own new one
        with pytest.raises(CorruptObject):
            repo.load_snapshot(sid)
    full = Repository.open(LocalBackend(str(repo_dir)), FULL["OPSKIT_PASSPHRASE"].encode())
    full.load_index()
    snaps = full.snapshots()
    assert len(snaps) == 2 and snaps[-1]["full"] is True
    for snap in snaps:                              # trees of both: only the full key reads them
        with pytest.raises(CorruptObject):
            repo.load_tree(bytes.fromhex(snap["tree"]))
        assert full.load_tree(bytes.fromhex(snap["tree"]))["nodes"]


def test_no_file_name_appears_in_the_repository(setup, opskit):
    src, repo_dir = setup
    assert opskit("backup", "run", src, env=WO).exit_code == 0
    for dirpath, _dirs, files in os.walk(repo_dir):
        for f in files:
            data = open(os.path.join(dirpath, f), "rb").read()
            assert b"payroll" not in data and b"zhang" not in data
