"""Both ways a base backup reads the cluster (#24, backup.pg.base_source): the data
directory read by opskit between pg_backup_start and pg_backup_stop, and pg_basebackup's
stream. Each is taken while rows are written and judged by a real PostgreSQL started on
the restore: every archived row is back, unlogged tables come back empty. A data
directory this host cannot see (hidden in a private mount namespace) makes auto fall back
to pg_basebackup and datadir fail, naming it, with nothing stored."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.harness.postgres_pitr import wait_out_of_recovery

pytestmark = pytest.mark.integration

CHECKSUM = "SELECT count(*) || ':' || coalesce(sum(hashtext(payload)), 0) FROM load"


def _json(run, expect=0):
    assert run.exit_code == expect, run.output
    return json.loads(run.stdout)


@pytest.mark.parametrize("source", ["datadir", "pg_basebackup"])
def test_a_base_backup_taken_under_writes_restores_every_archived_row(pg_archiving, tmp_path,
                                                                      source):
    pg = pg_archiving
    pg.use_base_source(source)
    pg.psql("CREATE TABLE load (id bigserial PRIMARY KEY, payload text)")
    pg.psql("INSERT INTO load (payload) SELECT repeat(md5(g::text), 20) "
            "FROM generate_series(1, 5000) g")
    pg.psql("CREATE UNLOGGED TABLE scratch (x int)")
    pg.psql("INSERT INTO scratch SELECT generate_series(1, 1000)")
    stop = threading.Event()

    done = [0]

    def write():                  # small transactions, all through the backup
        while not stop.is_set():
            pg.psql("INSERT INTO load (payload) SELECT repeat(md5(random()::text), 20) "
                    "FROM generate_series(1, 50); "
                    "UPDATE load SET payload = md5(payload) WHERE id % 997 = 0")
            done[0] += 1
            stop.wait(0.02)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        time.sleep(0.3)
        before = done[0]
        base = _json(pg.opskit("db", "basebackup", "--json"))
        during = done[0] - before
    finally:
        stop.set()
        thread.join()
    assert base["pg_base"]["source"] == source
    assert during >= 3, "the writes must overlap the backup for this test to mean anything"
    assert base["pg_base"]["stop_lsn"] and "START WAL LOCATION" in base["pg_base"]["backup_label"]
    pg.psql("INSERT INTO load (payload) VALUES ('the last row')")
    pg.switch_and_wait()
    expected = pg.psql(CHECKSUM)

    target = str(tmp_path / "restored")
    os.mkdir(target, 0o700)
    _json(pg.opskit("db", "restore", base["snapshot"][:12], "--target-datadir", target,
                    "--json"))
    assert not os.path.exists(os.path.join(target, "postmaster.pid"))
    assert os.listdir(os.path.join(target, "pg_wal")) == ["archive_status"]
    srv = pg.start_restored(target)
    wait_out_of_recovery(srv)
    assert srv.psql(CHECKSUM) == expected
    assert srv.psql("SELECT count(*) FROM scratch") == "0"      # unlogged: reset on recovery
    assert srv.psql("SELECT payload FROM load ORDER BY id DESC LIMIT 1") == "the last row"


def _basebackup_hidden(pg):
    """``db basebackup`` with the data directory hidden under an empty tmpfs."""
    cmd = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none "$0" && shift && exec "$@"',
           pg.server.data_dir, "x", sys.executable, "-m", "opskit", "--config", pg.config,
           "backup", "db", "basebackup", "--json"]
    env = dict(os.environ, OPSKIT_HOME=pg.env["OPSKIT_HOME"], OPSKIT_PASSPHRASE="")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_a_data_directory_this_host_cannot_see(pg_archiving):
    pg = pg_archiving
    pg.use_base_source("auto")
    run = _basebackup_hidden(pg)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["pg_base"]["source"] == "pg_basebackup"
    before = _json(pg.opskit("snapshots", "--json"))

    pg.use_base_source("datadir")
    run = _basebackup_hidden(pg)
    assert run.returncode == 3, run.stderr
    assert pg.server.data_dir in run.stderr and "not readable on this host" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert _json(pg.opskit("snapshots", "--json")) == before
    # the control: the same setting where the directory is visible reads it
    assert _json(pg.opskit("db", "basebackup", "--json"))["pg_base"]["source"] == "datadir"


def test_a_base_backup_killed_mid_read_loses_nothing_and_the_rerun_completes(pg_archiving,
                                                                             tmp_path):
    pg = pg_archiving
    pg.use_base_source("datadir")
    pg.psql("CREATE TABLE claims (id int PRIMARY KEY, note text)")
    before = _json(pg.opskit("snapshots", "--json"))
    env = dict(os.environ, OPSKIT_HOME=pg.env["OPSKIT_HOME"], OPSKIT_PASSPHRASE="",
               OPSKIT_FAILPOINT="basebackup.datadir.file", OPSKIT_FAILPOINT_RATE="0.2")
    killed = subprocess.run([sys.executable, "-m", "opskit", "--config", pg.config, "backup",
                             "db", "basebackup", "--json"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr               # SIGKILLed mid-read
    assert _json(pg.opskit("snapshots", "--json")) == before     # no snapshot half-made
    assert pg.opskit("check").exit_code == 0                     # packs and index consistent
    # the server dropped the killed session's backup: a new one starts and completes
    base = _json(pg.opskit("db", "basebackup", "--json"))
    assert base["pg_base"]["source"] == "datadir"
    target = pg.before_and_after()
    restored = str(tmp_path / "restored")
    os.mkdir(restored, 0o700)
    _json(pg.opskit("db", "restore", base["snapshot"][:12], "--target-datadir", restored,
                    "--to-time", target, "--json"))
    srv = pg.start_restored(restored)
    wait_out_of_recovery(srv)
    assert srv.psql("SELECT string_agg(note, ',' ORDER BY id) FROM claims") == "before"


def test_a_restore_never_writes_through_symlinks_the_snapshot_carries(pg_archiving,
                                                                     tmp_path):
    """A snapshot can be written by a key that only pushes (a write-only database
    host): symlinks in it must not make a restore, run as root, write elsewhere."""
    pg = pg_archiving
    pg.use_base_source("datadir")                   # symlinks travel as symlinks
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    data = pg.server.data_dir
    os.symlink(victim, os.path.join(data, "recovery.signal"))
    os.symlink(victim, os.path.join(data, "pg_hba.conf.planted"))
    try:
        sid = _json(pg.opskit("db", "basebackup", "--json"))["snapshot"]
    finally:
        os.unlink(os.path.join(data, "recovery.signal"))
        os.unlink(os.path.join(data, "pg_hba.conf.planted"))
    target = str(tmp_path / "restored")
    os.mkdir(target, 0o700)
    _json(pg.opskit("db", "restore", sid[:12], "--target-datadir", target, "--json"))
    assert victim.read_text() == "precious\n"
    assert not os.path.islink(os.path.join(target, "recovery.signal"))  # made anew

    # postgresql.auto.conf leading elsewhere: refused, nothing appended to the victim
    auto = os.path.join(data, "postgresql.auto.conf")
    kept = auto + ".kept"
    os.rename(auto, kept)
    os.symlink(victim, auto)
    try:
        sid = _json(pg.opskit("db", "basebackup", "--json"))["snapshot"]
    finally:
        os.unlink(auto)
        os.rename(kept, auto)
    target2 = str(tmp_path / "restored2")
    os.mkdir(target2, 0o700)
    run = pg.opskit("db", "restore", sid[:12], "--target-datadir", target2)
    assert run.exit_code == 3 and "symlink" in run.stderr, run.output
    assert victim.read_text() == "precious\n"
    assert not os.path.exists(os.path.join(target2, "recovery.signal"))
    # the drill writes its pg_hba.conf and the rest anew too
    run = pg.opskit("db", "drill", "--kind", "pg-base", "--json")
    assert victim.read_text() == "precious\n"


def test_a_copy_with_the_same_system_identifier_is_not_read(pg_archiving, tmp_path):
    """A standby on this host (or a copy) has the primary's system identifier but
    older files: reading them under the primary's pg_backup_start would store a
    silently broken backup. Stood in for by a copy bind-mounted over the path."""
    pg = pg_archiving
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", pg.server.data_dir, str(copy)], check=True)
    with open(copy / "postmaster.pid") as fh:               # a postmaster of its own
        lines = fh.read().splitlines()
    lines[2] = str(int(lines[2]) - 3600)
    (copy / "postmaster.pid").write_text("\n".join(lines) + "\n")

    def basebackup():
        cmd = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"',
               str(copy), pg.server.data_dir, sys.executable, "-m", "opskit", "--config",
               pg.config, "backup", "db", "basebackup", "--json"]
        env = dict(os.environ, OPSKIT_HOME=pg.env["OPSKIT_HOME"], OPSKIT_PASSPHRASE="")
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    pg.use_base_source("auto")
    run = basebackup()
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["pg_base"]["source"] == "pg_basebackup"
    pg.use_base_source("datadir")
    run = basebackup()
    assert run.returncode == 3 and "not the one this server runs on" in run.stderr, run.stderr
