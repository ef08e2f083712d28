"""Delta chunks for logical backups (#24: "second-day backup after 1% of rows
changed stores <= 0.2x the first", the rows changed anywhere in the tables),
against the real PostgreSQL fixture, through the CLI: the second backup is
small, restores to the live data, survives forgetting the first snapshot
and pruning, and a lost base is found and named."""
import json
import os

import blake3
import pytest

from opskit.backup.db.streams import find_files
from tests.e2e.backup.test_backup_drill import _flip
from tests.harness.backup import open_repo
from tests.integration.backup.test_backup_db import _cli, _restore, pg_dump_text

pytestmark = pytest.mark.integration

# three tables of some thousands of rows: a few MiB of COPY text, many 64 KiB chunks
TABLES = """
CREATE TABLE persons (id int PRIMARY KEY, name text, born date, note text);
CREATE TABLE claims (id bigint PRIMARY KEY, person_id int, amount numeric(12,2),
    code text, filed timestamptz);
CREATE TABLE events (id bigint, kind text, payload text);
INSERT INTO persons SELECT g, 'person ' || md5(g::text), date '1950-01-01' + g % 20000,
    repeat(substr(md5((g * 7)::text), 1, 9), 4) FROM generate_series(1, 8000) g;
INSERT INTO claims SELECT g, 1 + g % 8000, (g % 9973) * 1.25, md5((g * 3)::text),
    timestamptz '2024-01-01' + g * interval '1 minute' FROM generate_series(1, 30000) g;
INSERT INTO events SELECT g, (ARRAY['open','paid','closed'])[1 + g % 3],
    md5(g::text) || md5((g + 1)::text) FROM generate_series(1, 20000) g;
"""
# 1% of the rows of every table, anywhere in it (the benchmark's day 3)
UPDATE_1PCT = """
SELECT setseed(0.24);
UPDATE persons SET note = note || ' changed' WHERE random() < 0.01;
UPDATE claims SET amount = amount + 1 WHERE random() < 0.01;
UPDATE events SET kind = 'reopened' WHERE random() < 0.01;
"""
# retention is tested here; two-person review in test_incidents_cli
NO_FLOOR = "  retention:\n    floor_days: 0\nincidents:\n  high_risk_operations: []\n"


@pytest.fixture
def two_days(tmp_path, postgres, postgres_db):
    """A backup, 1% of rows updated all over every table, a second backup."""
    postgres.psql(TABLES, postgres_db)
    cli = _cli(tmp_path, postgres, postgres_db, extra=NO_FLOOR)
    first = cli.json("db", "run")["snapshots"][0]
    postgres.psql(UPDATE_1PCT, postgres_db)
    second = cli.json("db", "run")["snapshots"][0]
    return cli, first, second


def _data_files(tmp_path, cli, snap, name):
    out = tmp_path / name
    run = cli("restore", snap["snapshot"], "--target", str(out))
    assert run.exit_code == 0, run.output
    return out / "pg" / "claims" / "data"


def _restores_to_live(cli, postgres, source, snap, name):
    """``db restore`` of ``snap`` into a new database equals the live one."""
    postgres.create_database(name)
    try:
        _restore(cli, postgres, name, snap["snapshot"])
        assert pg_dump_text(postgres, name) == pg_dump_text(postgres, source)
    finally:
        postgres.drop_database(name)


def _bases(cli, snap) -> set:
    """The base blobs the snapshot's file nodes name."""
    repo = open_repo(cli.repo)
    return {b for node in find_files(repo, repo.load_snapshot(snap["snapshot"])).values()
            for b in node.get("bases", ())}


def test_rows_changed_everywhere_store_a_fifth_and_restore_exactly(tmp_path, postgres,
                                                                  postgres_db, two_days):
    cli, first, second = two_days
    one, two = first["stats"], second["stats"]
    assert one["bytes_stored"] > 1_000_000 and one["blobs_delta"] == 0
    assert two["blobs_delta"] > 20, two
    assert two["bytes_stored"] <= 0.2 * one["bytes_stored"], (one, two)
    assert _bases(cli, second) and not _bases(cli, first)
    # restored into a database: the live data; restored as files: the recorded checksums
    _restores_to_live(cli, postgres, postgres_db, second, "restored_d2")
    data = _data_files(tmp_path, cli, second, "files")
    for t in second["database"]["tables"]:
        got = blake3.blake3((data / t["file"]).read_bytes()).hexdigest()
        assert "blake3:" + got == t["checksum"], t["table"]
    # the logical drill reads the deltas too
    run = cli("db", "drill", "--json", timeout=300)
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["passed"]


def test_turned_off_the_same_change_costs_a_full_backup(tmp_path, postgres, postgres_db):
    # the must-not-pass case: the fifth comes from the deltas, not from dedup
    postgres.psql(TABLES, postgres_db)
    cli = _cli(tmp_path, postgres, postgres_db, extra="      delta: false\n")
    first = cli.json("db", "run")["snapshots"][0]["stats"]
    postgres.psql(UPDATE_1PCT, postgres_db)
    second = cli.json("db", "run")["snapshots"][0]["stats"]
    assert second["blobs_delta"] == 0
    assert second["bytes_stored"] > 0.5 * first["bytes_stored"], (first, second)


def test_bases_survive_forgetting_the_first_day_and_pruning(tmp_path, postgres, postgres_db,
                                                            two_days):
    cli, first, second = two_days
    run = cli("forget", "--keep-last", "1")
    assert run.exit_code == 0, run.output
    assert [s["id"] for s in cli.json("snapshots")] == [second["snapshot"]]
    run = cli("prune")
    assert run.exit_code == 0, run.output
    run = cli("check", "--read-data")
    assert run.exit_code == 0, run.output
    _restores_to_live(cli, postgres, postgres_db, second, "restored_pr")
    # a third day deltas against day 2's chunks, whose bases are day 1's: never a chain
    postgres.psql(UPDATE_1PCT.replace("0.24", "0.5"), postgres_db)
    third = cli.json("db", "run")["snapshots"][0]
    assert third["stats"]["blobs_delta"] > 20
    repo = open_repo(cli.repo)
    assert all(repo.delta_base_of(bytes.fromhex(b)) is None for b in _bases(cli, third))


@pytest.mark.parametrize("how", ["damaged", "deleted"])
def test_a_lost_base_fails_check_and_restore_naming_it(tmp_path, postgres, postgres_db,
                                                       two_days, how):
    cli, first, second = two_days
    repo = open_repo(cli.repo)
    base = sorted(_bases(cli, second))[0]
    loc = repo.index.lookup(bytes.fromhex(base))
    pack = os.path.join(cli.repo, "data", loc.pack[:2], loc.pack)
    if how == "damaged":
        _flip(pack, loc.offset + loc.length // 2)       # inside the base blob only
        named = base[:16]       # other blobs of the pack still read: the base is what fails
    else:
        os.unlink(pack)
        named = loc.pack        # whichever blob of the pack a restore reads first
        run = cli("check")      # structure: the pack the index names is gone
        assert run.exit_code == 1 and loc.pack in run.stdout, run.output
    run = cli("check", "--read-data", "--json")
    assert run.exit_code == 1, run.output
    problems = " ".join(e["object"] + " " + e["problem"] for e in json.loads(run.stdout)["errors"])
    assert f"delta base blob {base}" in problems, problems
    postgres.create_database("restored_lost")
    try:
        run = _restore(cli, postgres, "restored_lost", second["snapshot"], expect=3)
        assert named in run.stderr and "Traceback" not in run.output, run.output
    finally:
        postgres.drop_database("restored_lost")
    run = cli("restore", second["snapshot"], "--target", str(tmp_path / "files"))
    assert run.exit_code == 1, run.output
    assert named in run.output, run.output
