"""The WAL archive replicated off-site (#24; R-BAK-3): `backup replicate` copies
``wal/<cluster>/`` by name + size + recorded digest and never replaces a
different file under the same name; `check-site` re-hashes WAL copies and
walks the site's WAL chain; `wal-fetch --site` recovers from the copy. File
sites and the moto S3 fixture; the chain and the DR restore against the real
archiving PostgreSQL fixture (tests/harness/postgres_pitr.py)."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from opskit.backup.backends import LocalBackend
from opskit.backup.db.wal import WalArchive
from tests.harness.backup import BackupCli, open_repo
from tests.integration.backup.test_replicate_s3 import make_cli

SEG = "000000010000000000000003"


def _push(repo_path, name: str, content: bytes, tmp_path) -> None:
    """Archive one WAL file as wal-push does (through the engine)."""
    src = tmp_path / "pg_wal"
    src.mkdir(exist_ok=True)
    (src / name).write_bytes(content)
    WalArchive(open_repo(repo_path, index=False), "main").push(str(src / name))


def _site_cli(tmp_path) -> BackupCli:
    return BackupCli(tmp_path, extra=f"sites:\n  dr:\n    url: file://{tmp_path / 'site'}\n")


def test_wal_is_replicated_once_and_a_different_file_on_the_site_is_never_replaced(tmp_path):
    cli = _site_cli(tmp_path)
    _push(cli.repo, SEG, b"A" * 70_000, tmp_path)
    _push(cli.repo, "00000002.history", b"1\t0/3000000\tno recovery target\n", tmp_path)
    out = cli.json("replicate", "--to", "dr")
    site_seg = tmp_path / "site" / "wal" / "main" / SEG
    assert out["sites"][0]["wal_sent"] == 2 and site_seg.read_bytes() == \
        (tmp_path / "repo" / "wal" / "main" / SEG).read_bytes()
    again = cli.json("replicate", "--to", "dr")
    assert again["sites"][0]["sent_objects"] == 0 and again["sites"][0]["conflicts"] == []

    # state lost: the copies are compared byte for byte, found equal, not resent
    fresh = {"OPSKIT_HOME": str(tmp_path / "fresh-state")}
    assert cli.json("replicate", "--to", "dr", env=fresh)["sites"][0]["sent_objects"] == 0

    # the local archive now holds another file under the same name (retention removed
    # the first, a second cluster pushed as 'main'): reported, the site copy is kept
    before = site_seg.read_bytes()
    os.remove(tmp_path / "repo" / "wal" / "main" / SEG)
    _push(cli.repo, SEG, b"B" * 70_000, tmp_path)
    run = cli("replicate", "--to", "dr", "--json")
    assert run.exit_code == 1, run.output
    res = json.loads(run.stdout)["sites"][0]
    assert [c["object"] for c in res["conflicts"]] == [f"wal/main/{SEG}"]
    assert site_seg.read_bytes() == before
    assert "differ on the site" in cli("replicate", "--to", "dr").output


def test_check_site_rehashes_wal_copies_and_replicate_repairs_a_damaged_one(tmp_path):
    cli = _site_cli(tmp_path)
    _push(cli.repo, SEG, os.urandom(50_000), tmp_path)
    cli.json("replicate", "--to", "dr")
    # with a passphrase the chain is walked too: WAL without any base backup is a finding
    chained = cli.json("check-site", "dr", "--read-data", expect=1)
    assert [(e["object"], e["problem"]) for e in chained["errors"]] == \
        [("wal/main/", "cluster main: no base backup (run 'opskit backup db basebackup')")]
    keyless = cli("check-site", "dr", "--read-data", passphrase=None)
    assert keyless.exit_code == 0 and "WAL chain on the site not checked" in keyless.output
    site_seg = tmp_path / "site" / "wal" / "main" / SEG
    data = bytearray(site_seg.read_bytes())
    data[-10] ^= 0xFF
    os.chmod(site_seg, 0o600)
    site_seg.write_bytes(bytes(data))
    out = cli.json("check-site", "dr", "--read-data", expect=1, passphrase=None)
    assert [e["object"] for e in out["errors"]] == [f"wal/main/{SEG}"]
    assert "damaged" in out["errors"][0]["problem"]
    # without --read-data the size still matches: the damage is only found by reading
    assert cli.json("replicate", "--to", "dr")["sites"][0]["sent_objects"] == 1
    assert site_seg.read_bytes() == (tmp_path / "repo" / "wal" / "main" / SEG).read_bytes()
    assert cli.json("check-site", "dr", "--read-data", passphrase=None)["ok"]


def test_wal_replicates_to_s3_and_a_conflict_there_is_reported(tmp_path, s3_server, s3_bucket):
    cli = make_cli(tmp_path, s3_server, s3_bucket)
    _push(cli.repo, SEG, os.urandom(40_000), tmp_path)
    res = cli.json("replicate", "--to", "dr")["sites"][0]
    assert res["wal_sent"] == 1 and res["conflicts"] == []
    assert cli.json("check-site", "dr", "--read-data", passphrase=None)["ok"]
    assert cli.json("replicate", "--to", "dr")["sites"][0]["sent_objects"] == 0
    os.remove(tmp_path / "repo" / "wal" / "main" / SEG)
    _push(cli.repo, SEG, os.urandom(40_000), tmp_path)
    run = cli("replicate", "--to", "dr", "--json")
    assert run.exit_code == 1, run.output
    assert json.loads(run.stdout)["sites"][0]["conflicts"][0]["object"] == f"wal/main/{SEG}"


# --- against the archiving PostgreSQL server ---------------------------------------------
def _json(run, expect=0):
    assert run.exit_code == expect, run.output
    return json.loads(run.stdout)


@pytest.mark.integration
def test_dr_restore_from_a_site_replays_its_wal_and_check_site_names_a_gap(pg_archiving,
                                                                           tmp_path):
    pg = pg_archiving
    site = tmp_path / "site"
    with open(pg.config, "a") as fh:
        fh.write(f"sites:\n  dr:\n    url: file://{site}\n")
    pg.psql("CREATE TABLE claims (id int PRIMARY KEY, note text)")
    _json(pg.opskit("db", "basebackup", "--json"))
    pg.psql("INSERT INTO claims VALUES (1, 'after base')")
    for _ in range(3):
        pg.psql("INSERT INTO claims SELECT g, 'x' FROM generate_series(100, 2000) g "
                "ON CONFLICT DO NOTHING")
        last = pg.switch_and_wait()
    _json(pg.opskit("replicate", "--to", "dr", "--json"))
    checked = _json(pg.opskit("check-site", "dr", "--json"))
    assert checked["wal_files"] >= 3 and checked["wal_chains"][0]["newest_wal"] >= last

    fetched = tmp_path / "fetched"
    _json(pg.opskit("wal-fetch", "--site", "dr", last, str(fetched), "--json"))
    assert fetched.read_bytes() == WalArchive(open_repo(pg.repo, index=False), "main").read(last)
    missing = pg.opskit("wal-fetch", "--site", "dr", "0000000100000000000000FF", str(tmp_path / "n"))
    assert missing.exit_code == 1, missing.output

    # disaster: the local repository is gone; restore and replay WAL from the site alone
    shutil.move(pg.repo, str(tmp_path / "lost-repo"))
    try:
        datadir = tmp_path / "dr-data"
        datadir.mkdir(mode=0o700)
        _json(pg.opskit("db", "restore", "latest", "--repo", "dr", "--target-datadir",
                        str(datadir), "--json"))
        srv = pg.start_restored(str(datadir))
        deadline = time.monotonic() + 120
        while srv.psql("SELECT pg_is_in_recovery()") != "f":
            assert time.monotonic() < deadline, srv.log_tail(30)
            time.sleep(0.2)
        assert srv.psql("SELECT note FROM claims WHERE id = 1") == "after base"
    finally:
        shutil.move(str(tmp_path / "lost-repo"), pg.repo)

    # a segment deleted on the site: check-site names it (exit 1); locally all is well
    gap = sorted(n for n in os.listdir(site / "wal" / "main") if len(n) == 24)[-2]
    os.remove(site / "wal" / "main" / gap)
    out = _json(pg.opskit("check-site", "dr", "--json"), expect=1)
    assert any(e["object"] == f"wal/main/{gap}" and "missing" in e["problem"]
               for e in out["errors"]), out["errors"]
    assert out["wal_chains"][0]["missing"][0] == gap
    assert _json(pg.opskit("db", "check", "--json"))["clusters"][0]["ok"]

    # plain 'backup check' walks the chain too when base backups are there (item 2)
    plain = _json(pg.opskit("check", "--json"))
    assert plain["ok"] and plain["wal_chains"][0]["segments"] >= 2
    os.remove(os.path.join(pg.repo, "wal", "main", gap))
    plain = _json(pg.opskit("check", "--json"), expect=1)
    assert [e["object"] for e in plain["errors"]] == [f"wal/main/{gap}"]
    assert plain["errors"][0]["snapshots"] and gap in plain["errors"][0]["problem"]
    assert gap in pg.opskit("check").output
