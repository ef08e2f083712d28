"""Parallel logical dumps (#24): ``backup db run --jobs N`` dumps tables in
separate sessions sharing one exported snapshot. A row moved between two
tables in one transaction while they dump is in exactly one of them; the
round trip stays identical; a table that fails names itself."""
import threading

import psycopg
import pytest

from tests.integration.backup.test_backup_db import _cli, _restore, pg_dump_text

pytestmark = pytest.mark.integration

ROWS = 40000
# filler keeps one job busy while another dumps pending and then done: the
# writer moves rows between those two COPYs
MOVERS = """
CREATE TABLE filler (id int, pad text);
INSERT INTO filler SELECT g, repeat('f', 200) FROM generate_series(1, {filler}) g;
CREATE TABLE pending (id int PRIMARY KEY, pad text);
CREATE TABLE done (id int PRIMARY KEY, pad text);
INSERT INTO pending SELECT g, repeat('p', 150) FROM generate_series(1, {rows}) g;
"""


def _mover(postgres, db, stop, moved):
    """Move the lowest pending row to done, one transaction per row, until stopped."""
    with psycopg.connect(host=postgres.host, port=postgres.port, user=postgres.superuser,
                         password=postgres.password, dbname=db, autocommit=True) as conn:
        while not stop.is_set():
            with conn.transaction():
                conn.execute("WITH m AS (DELETE FROM pending WHERE id = (SELECT min(id) "
                             "FROM pending) RETURNING *) INSERT INTO done SELECT * FROM m")
            moved.append(1)


def test_parallel_dump_under_a_moving_writer_sees_each_row_once(tmp_path, postgres,
                                                                postgres_db):
    postgres.psql(MOVERS.format(filler=100000, rows=ROWS), postgres_db)
    cli = _cli(tmp_path, postgres, postgres_db, extra="      jobs: 1\n")
    stop, moved = threading.Event(), []
    writer = threading.Thread(target=_mover, args=(postgres, postgres_db, stop, moved))
    writer.start()
    try:
        while len(moved) < 20:
            stop.wait(0.01)
        at_start = len(moved)
        snap = cli.json("db", "run", "--jobs", "3")["snapshots"][0]   # --jobs over the config
        during = len(moved) - at_start
    finally:
        stop.set()
        writer.join()
    assert during > 20, "the writer did not move rows while the dump ran"
    rows = {t["table"]: t["rows"] for t in snap["database"]["tables"]}
    assert rows["pending"] + rows["done"] == ROWS, rows       # never in both, never in neither
    assert 0 < rows["done"] < len(moved)
    postgres.create_database("restored_par")
    try:
        _restore(cli, postgres, "restored_par", snap["snapshot"])
        both = postgres.psql("SELECT count(*) FROM pending p JOIN done d USING (id)",
                             "restored_par")
        ids = postgres.psql("SELECT count(DISTINCT id) FROM (SELECT id FROM pending UNION ALL "
                            "SELECT id FROM done) x", "restored_par")
        assert (both, ids) == ("0", str(ROWS))
    finally:
        postgres.drop_database("restored_par")


def test_jobs_do_not_change_what_is_stored(tmp_path, postgres, postgres_db):
    postgres.psql(MOVERS.format(filler=10000, rows=10000) +
                  "INSERT INTO done SELECT id + 1000000, pad FROM pending", postgres_db)
    cli = _cli(tmp_path, postgres, postgres_db)
    one = cli.json("db", "run", "--jobs", "1")["snapshots"][0]
    four = cli.json("db", "run", "--jobs", "4")["snapshots"][0]
    # same tables in the same order with the same checksums: the second run stored no data
    assert one["database"]["tables"] == four["database"]["tables"]
    assert [t["table"] for t in four["database"]["tables"]] == ["done", "filler", "pending"]
    assert four["stats"]["bytes_added"] < 20_000 < 1_000_000 < one["stats"]["bytes_added"], \
        four["stats"]
    postgres.create_database("restored_j4")
    try:
        _restore(cli, postgres, "restored_j4", four["snapshot"])
        assert pg_dump_text(postgres, "restored_j4") == pg_dump_text(postgres, postgres_db)
    finally:
        postgres.drop_database("restored_j4")


def test_bad_jobs_is_a_usage_error(tmp_path, postgres, postgres_db):
    cli = _cli(tmp_path, postgres, postgres_db, extra="      jobs: 0\n")
    run = cli("db", "run")
    assert run.exit_code == 2 and "jobs" in run.stderr, run.output
    (tmp_path / "b").mkdir()
    run = _cli(tmp_path / "b", postgres, postgres_db)("db", "run", "--jobs", "0")
    assert run.exit_code == 2, run.output
