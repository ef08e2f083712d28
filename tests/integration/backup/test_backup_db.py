"""Logical PostgreSQL backups into the repository and restores (#24 items 2-3),
against the real PostgreSQL fixture, through the CLI as an admin runs it."""
import json
import os
import subprocess
import threading
import time

import pytest

from tests.harness.backup import BackupCli
from tests.harness.postgres import _clean_env

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE SCHEMA ins;
CREATE TABLE ins.insured_persons (id serial PRIMARY KEY, name text NOT NULL,
    born date, note text, photo bytea);
CREATE TABLE ins.claims (id bigserial PRIMARY KEY,
    person_id int NOT NULL REFERENCES ins.insured_persons(id),
    amount numeric(12,2) NOT NULL, filed timestamptz NOT NULL DEFAULT now(),
    total numeric GENERATED ALWAYS AS (amount * 2) STORED);
CREATE TABLE ins.settlements (claim_id bigint PRIMARY KEY REFERENCES ins.claims(id),
    paid numeric(12,2) NOT NULL);
CREATE TABLE ins."odd/name %x" (k text, v double precision);
CREATE INDEX claims_person ON ins.claims(person_id);
CREATE VIEW ins.claim_overview AS SELECT c.id, p.name, c.amount FROM ins.claims c
    JOIN ins.insured_persons p ON p.id = c.person_id;
INSERT INTO ins.insured_persons (name, born, note, photo)
    SELECT 'person ' || g, date '1950-01-01' + g, E'line\\nbreak\\ttab ' || g,
           decode(md5(g::text), 'hex') FROM generate_series(1, 3000) g;
INSERT INTO ins.claims (person_id, amount) SELECT 1 + g % 3000, g * 1.25
    FROM generate_series(1, 20000) g;
INSERT INTO ins.settlements SELECT id, amount FROM ins.claims WHERE id % 2 = 0;
INSERT INTO ins."odd/name %x" VALUES ('pi', 3.141592653589793), ('nan', 'NaN'), (NULL, NULL);
"""


def pg_dump_text(postgres, db):
    """The plain-SQL dump people compare (schema and data)."""
    env = _clean_env()
    env.update(postgres.env)
    out = subprocess.run([os.path.join(postgres.bindir, "pg_dump"), "-Fp", "--no-comments",
                          "-d", db], capture_output=True, text=True, env=env, check=True)
    # \restrict lines carry a random key per run (CVE-2025-8714 hardening)
    return "".join(ln for ln in out.stdout.splitlines(True)
                   if not ln.startswith(("\\restrict", "\\unrestrict")))


@pytest.fixture
def source(postgres, postgres_db):
    postgres.psql(SCHEMA, postgres_db)
    return postgres_db


def _cli(tmp_path, postgres, db, name="claims", password=None, extra=""):
    pw = tmp_path / f"{name}.pw"
    pw.write_text((password or postgres.password) + "\n")
    pw.chmod(0o600)
    return BackupCli(tmp_path, extra=(
        f"  databases:\n    {name}:\n      host: {postgres.host}\n      port: {postgres.port}\n"
        f"      user: {postgres.superuser}\n      dbname: {db}\n      password_file: {pw}\n"
        f"      sslmode: disable\n{extra}"))


def _restore(cli, postgres, target_db, *args, expect=0):
    pw = os.path.join(os.path.dirname(cli.config), "target.pw")
    with open(pw, "w") as fh:
        fh.write(postgres.password + "\n")
    os.chmod(pw, 0o600)
    run = cli("db", "restore", *args, "--target-dsn",
              f"host={postgres.host} port={postgres.port} user={postgres.superuser} "
              f"dbname={target_db} sslmode=disable", "--target-password-file", pw, "--json")
    assert run.exit_code == expect, run.output
    return run


def test_round_trip_gives_identical_pg_dump_output(tmp_path, postgres, source):
    cli = _cli(tmp_path, postgres, source)
    out = cli.json("db", "run", "--tag", "daily")
    [snap] = out["snapshots"]
    assert snap["kind"] == "pg-logical" and snap["paths"] == ["/pg/claims"]
    tables = {(t["schema"], t["table"]): t for t in snap["database"]["tables"]}
    assert tables[("ins", "claims")]["rows"] == 20000
    assert tables[("ins", "settlements")]["rows"] == 10000
    assert tables[("ins", "odd/name %x")]["rows"] == 3
    # the stored files, as any snapshot's
    ls = cli.json("ls", snap["snapshot"])
    paths = {e["path"] for e in ls}
    assert {"/pg/claims/globals.sql", "/pg/claims/schema.dump", "/pg/claims/sequences.sql",
            "/pg/claims/data/ins.odd%2Fname %25x.copy"} <= paths
    postgres.create_database("restored_rt")
    try:
        _restore(cli, postgres, "restored_rt", snap["snapshot"][:8])
        assert pg_dump_text(postgres, "restored_rt") == pg_dump_text(postgres, source)
        # a sequence continues where the source's was
        assert postgres.psql("SELECT nextval('ins.claims_id_seq')", "restored_rt") == "20001"
    finally:
        postgres.drop_database("restored_rt")


def test_second_day_dedups_unchanged_tables(tmp_path, postgres, source):
    cli = _cli(tmp_path, postgres, source)
    first = cli.json("db", "run")["snapshots"][0]["stats"]
    postgres.psql("UPDATE ins.\"odd/name %x\" SET v = 1 WHERE k = 'pi'", source)
    second = cli.json("db", "run")["snapshots"][0]["stats"]
    assert first["bytes_added"] > 1_000_000
    # only the changed small table (and the tiny files around it) is new
    assert second["bytes_added"] < first["bytes_added"] * 0.05, (first, second)


def _workload(postgres, db, stop, done):
    """Claims and their settlement written in one transaction, over and over."""
    sql = ("BEGIN; INSERT INTO ins.claims (person_id, amount) VALUES (1, 9.99); "
           "INSERT INTO ins.settlements SELECT max(id), 9.99 FROM ins.claims; COMMIT;")
    while not stop.is_set():
        postgres.psql(sql, db)
        done.append(1)


def test_backup_while_writing_is_consistent_and_checksums_match(tmp_path, postgres, source):
    cli = _cli(tmp_path, postgres, source)
    stop, done = threading.Event(), []
    writer = threading.Thread(target=_workload, args=(postgres, source, stop, done))
    writer.start()
    try:
        while len(done) < 3:
            time.sleep(0.05)
        snap = cli.json("db", "run")["snapshots"][0]
        while len(done) < 6:
            time.sleep(0.05)
    finally:
        stop.set()
        writer.join()
    postgres.create_database("restored_wl")
    try:
        _restore(cli, postgres, "restored_wl", snap["snapshot"])
        # one point in time: every workload claim came with its settlement
        unpaid = postgres.psql("SELECT count(*) FROM ins.claims c LEFT JOIN ins.settlements s "
                               "ON s.claim_id = c.id WHERE s.claim_id IS NULL AND c.id > 20000",
                               "restored_wl")
        assert unpaid == "0"
        rows = {t["table"]: t["rows"] for t in snap["database"]["tables"]}
        assert int(postgres.psql("SELECT count(*) FROM ins.claims", "restored_wl")) == \
            rows["claims"] > 20000
        assert int(postgres.psql("SELECT count(*) FROM ins.claims", source)) > rows["claims"]
    finally:
        postgres.drop_database("restored_wl")


def test_non_empty_target_is_refused_without_force(tmp_path, postgres, source):
    cli = _cli(tmp_path, postgres, source)
    sid = cli.json("db", "run")["snapshots"][0]["snapshot"]
    postgres.create_database("restored_ne")
    try:
        postgres.psql("CREATE TABLE precious (x int); INSERT INTO precious VALUES (42)",
                      "restored_ne")
        run = _restore(cli, postgres, "restored_ne", sid, expect=2)
        assert "not empty" in run.stderr and "--force" in run.stderr
        assert postgres.psql("SELECT x FROM precious", "restored_ne") == "42"
        _restore(cli, postgres, "restored_ne", sid, "--force")
        assert postgres.psql("SELECT to_regclass('precious') IS NULL", "restored_ne") == "t"
        assert postgres.psql("SELECT count(*) FROM ins.claims", "restored_ne") == "20000"
    finally:
        postgres.drop_database("restored_ne")


def test_wrong_password_and_unreachable_server_are_one_line_exit_3(tmp_path, postgres, source):
    cli = _cli(tmp_path, postgres, source, password="not-the-password")
    run = cli("db", "run")
    assert run.exit_code == 3, run.output
    assert "database claims" in run.stderr and "password authentication failed" in run.stderr
    assert "not-the-password" not in run.output
    (tmp_path / "down").mkdir()
    down = BackupCli(tmp_path / "down", extra=(
        "  databases:\n    claims:\n      host: 127.0.0.1\n      port: 1\n"
        "      sslmode: disable\n"))
    run = down("db", "run", "--db", "claims")
    assert run.exit_code == 3 and "cannot connect" in run.stderr, run.output
    assert len(run.stderr.strip().splitlines()) <= 2, run.stderr


def test_unknown_db_and_no_databases_are_usage_errors(tmp_path, postgres, source):
    cli = _cli(tmp_path, postgres, source)
    run = cli("db", "run", "--db", "nope")
    assert run.exit_code == 2 and "claims" in run.stderr
    (tmp_path / "bare").mkdir()
    bare = BackupCli(tmp_path / "bare")
    assert bare("db", "run").exit_code == 2


def test_stdin_from_command_stores_the_stream_and_fails_on_exit_code(tmp_path):
    cli = BackupCli(tmp_path)
    script = tmp_path / "dump.sh"
    script.write_text("#!/bin/sh\nhead -c 300000 /dev/urandom | od -An | head -c 2000000\n")
    script.chmod(0o755)
    out = cli.json("db", "run", "--stdin-from-command", f"{script}", "--name", "mysql-main")
    [snap] = out["snapshots"]
    assert snap["kind"] == "command-stream" and snap["stats"]["bytes"] > 100_000
    restored = tmp_path / "r"
    assert cli("restore", snap["snapshot"], "--target", str(restored)).exit_code == 0
    assert (restored / "stdin" / "mysql-main").stat().st_size == snap["stats"]["bytes"]
    run = cli("db", "run", "--stdin-from-command", "sh -c 'echo half; exit 7'")
    assert run.exit_code == 3 and "exited 7" in run.stderr and "nothing stored" in run.stderr
    assert len(cli.json("snapshots")) == 1
