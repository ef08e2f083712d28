"""Point-in-time recovery (#24 items 2-3): base backups, wal-push as the real
archive_command, WAL chain check, PITR to a time between two transactions,
and archive_command killed at random moments — against a real archiving
PostgreSQL server (tests/harness/postgres_pitr.py)."""
import json
import os
import struct
import time

import pytest

from tests.harness.postgres_pitr import wait_out_of_recovery

pytestmark = pytest.mark.integration

SEG = 1 << 20


def _json(run, expect=0):
    assert run.exit_code == expect, run.output
    return json.loads(run.stdout)


def _basebackup(pg):
    return _json(pg.opskit("db", "basebackup", "--tag", "weekly", "--json"))


def test_pitr_to_a_time_between_two_transactions(pg_archiving, tmp_path):
    pg = pg_archiving
    pg.psql("CREATE TABLE claims (id int PRIMARY KEY, note text)")
    base = _basebackup(pg)
    man = base["pg_base"]
    assert base["kind"] == "pg-base" and man["cluster"] == "main" and man["timeline"] == 1
    assert man["start_lsn"] and man["stop_lsn"] and "START WAL LOCATION" in man["backup_label"]
    target = pg.before_and_after()
    assert _json(pg.opskit("db", "check", "--json"))["clusters"][0]["ok"]

    to_time = str(tmp_path / "to-time")
    os.mkdir(to_time, 0o700)          # made by the admin: its owner owns the restored files
    out = _json(pg.opskit("db", "restore", base["snapshot"][:8], "--target-datadir", to_time,
                          "--to-time", target, "--json"))
    assert out["settings"]["recovery_target_time"] == \
        target.replace("T", " ").replace("Z", "+00")
    assert os.path.exists(os.path.join(to_time, "recovery.signal"))
    srv = pg.start_restored(to_time)
    wait_out_of_recovery(srv)
    assert srv.psql("SELECT string_agg(note, ',' ORDER BY id) FROM claims") == "before"

    # the control: without a target every archived transaction comes back
    everything = str(tmp_path / "all")
    os.mkdir(everything, 0o700)
    _json(pg.opskit("db", "restore", "latest", "--target-datadir", everything, "--json"))
    srv2 = pg.start_restored(everything)
    wait_out_of_recovery(srv2)
    assert srv2.psql("SELECT string_agg(note, ',' ORDER BY id) FROM claims") == "before,after"


def test_restore_refuses_non_empty_and_running_data_directories(pg_archiving, tmp_path):
    pg = pg_archiving
    sid = _basebackup(pg)["snapshot"]
    full = tmp_path / "full"
    full.mkdir()
    (full / "precious").write_text("keep me")
    run = pg.opskit("db", "restore", sid, "--target-datadir", str(full))
    assert run.exit_code == 2 and "not empty" in run.stderr and "--force" in run.stderr
    assert (full / "precious").read_text() == "keep me"
    run = pg.opskit("db", "restore", sid, "--target-datadir", str(full), "--force")
    assert run.exit_code == 0, run.output
    assert not (full / "precious").exists() and (full / "PG_VERSION").exists()
    # the live server's own directory: never, --force or not
    run = pg.opskit("db", "restore", sid, "--target-datadir", pg.server.data_dir, "--force")
    assert run.exit_code == 2 and "runs on this data directory" in run.stderr, run.output
    assert pg.psql("SELECT 1") == "1"
    run = pg.opskit("db", "restore", sid, "--target-datadir", str(tmp_path / "x"),
                    "--to-lsn", "nonsense")
    assert run.exit_code == 2 and "LSN" in run.stderr


def test_wal_push_cli_is_idempotent_refuses_conflicts_and_writes_the_gauge(pg_archiving,
                                                                          tmp_path):
    pg = pg_archiving
    seg = tmp_path / "0000000A0000000000000001"
    seg.write_bytes(b"a" * 8192)
    assert pg.opskit("wal-push", str(seg)).exit_code == 0
    again = pg.opskit("wal-push", str(seg), "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["stored"] is False
    seg.write_bytes(b"b" * 8192)
    run = pg.opskit("wal-push", str(seg))
    assert run.exit_code == 1 and "different content" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    dest = tmp_path / "fetched"
    assert pg.opskit("wal-fetch", seg.name, str(dest)).exit_code == 0
    assert dest.read_bytes() == b"a" * 8192
    assert pg.opskit("wal-fetch", "0000000A0000000000000002", str(dest)).exit_code == 1
    gauge = os.path.join(pg.env["OPSKIT_HOME"], "schedule", "metrics",
                         "opskit_wal_archive_main.prom")
    text = open(gauge).read()
    assert 'opskit_wal_archive_last_success_timestamp{cluster="main"}' in text
    stamp = float(text.split('{cluster="main"} ')[1].split()[0])
    assert abs(stamp - time.time()) < 120
    # a broken repository: non-zero, one line, nothing acknowledged
    run = pg.opskit("wal-push", str(seg), "--repo", str(tmp_path / "nowhere"))
    assert run.exit_code == 3 and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_deleted_segment_is_found_by_check(pg_archiving):
    pg = pg_archiving
    pg.psql("CREATE TABLE t (x int)")
    _basebackup(pg)
    names = pg.insert_and_archive(4)
    assert _json(pg.opskit("db", "check", "--json"))["clusters"][0]["ok"]
    victim = names[1]
    os.unlink(os.path.join(pg.repo, "wal", "main", victim))
    run = pg.opskit("db", "check", "--json")
    out = _json(run, expect=1)
    assert out["clusters"][0]["missing"][0] == victim
    assert victim in pg.opskit("db", "check").stdout


def _page_addr(data: bytes) -> int:
    return struct.unpack_from("<Q", data, 8)[0]      # XLogPageHeaderData.xlp_pageaddr


def test_archive_command_killed_at_random_moments_loses_nothing(pg_archiving, tmp_path):
    pg = pg_archiving
    pg.psql("CREATE TABLE t (x int, pad text)")
    base = _basebackup(pg)
    pg.set_archive_env(OPSKIT_FAILPOINT="local.put.mid-write,wal-push.before-put,"
                                        "wal-push.after-put", OPSKIT_FAILPOINT_RATE="0.25")
    archived = []
    for i in range(16):
        pg.psql(f"INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 500) g")
        archived.append(pg.switch_and_wait(timeout=180))
        kills = open(pg.server.log_path, errors="replace").read().count("wal-push killed (exit 137)")
        if kills >= 2 and len(archived) >= 5:
            break
    assert kills >= 2, "the failpoints never fired\n" + pg.server.log_tail(60)
    pg.set_archive_env()                     # the rerun, with nothing killing it
    pg.psql("INSERT INTO t VALUES (-1, 'last')")
    archived.append(pg.switch_and_wait())
    check = _json(pg.opskit("db", "check", "--json"))["clusters"][0]
    assert check["ok"], check
    # every acknowledged segment is whole: fetched, authenticated, and its pages
    # carry their own position
    start = int(base["pg_base"]["start_wal"][8:16], 16) * 0x1000 + \
        int(base["pg_base"]["start_wal"][16:], 16)
    for name in archived:
        dest = tmp_path / name
        assert pg.opskit("wal-fetch", name, str(dest)).exit_code == 0, name
        data = dest.read_bytes()
        segno = int(name[8:16], 16) * 0x1000 + int(name[16:], 16)
        assert len(data) == SEG and segno >= start
        assert _page_addr(data) == segno * SEG, name
