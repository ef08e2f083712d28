"""benchmarks/make_pgdb.py, the database-backup benchmark's generator (#24),
at a tiny size on the test PostgreSQL server: it fills the four tables to
about the size asked, the same seed gives the same rows, and --mutate changes
1% of each table's rows where its pattern says (the second-day measure rests
on that)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MAKE_PGDB = os.path.join(ROOT, "benchmarks", "make_pgdb.py")
TABLES = ("patients", "claims", "claim_items", "refunds")


def make_pgdb(postgres, db: str, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = postgres.password
    proc = subprocess.run([sys.executable, MAKE_PGDB, postgres.dsn_for(db), "--bindir",
                           postgres.bindir, *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def content(postgres, db: str) -> list:
    """Per table: row count and an md5 of its rows in key order."""
    return [postgres.psql(f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) "
                          f"FROM {t} t", db) for t in TABLES]


@pytest.fixture
def second_db(postgres):
    postgres.create_database("t_pgdb_again")
    yield "t_pgdb_again"
    postgres.drop_database("t_pgdb_again")


def test_generates_the_size_asked_and_repeats_with_the_seed(postgres, postgres_db, second_db):
    make_pgdb(postgres, postgres_db, "--size-mb", "3", "--seed", "7")
    size = int(postgres.psql("SELECT pg_database_size(current_database())", postgres_db))
    empty = int(postgres.psql("SELECT pg_database_size('template1')"))
    assert 2 * 2**20 <= size - empty <= 12 * 2**20
    first = content(postgres, postgres_db)
    assert all(int(row.split("|")[0]) > 0 for row in first)
    assert postgres.psql("SELECT count(*) FROM claims c LEFT JOIN patients p "
                         "ON p.id = c.patient_id WHERE p.id IS NULL", postgres_db) == "0"
    assert postgres.psql("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'",
                         postgres_db) == "10"
    make_pgdb(postgres, second_db, "--size-mb", "3", "--seed", "7")
    assert content(postgres, second_db) == first
    make_pgdb(postgres, second_db, "--size-mb", "3", "--seed", "8")
    assert content(postgres, second_db) != first


@pytest.mark.parametrize("pattern", ["recent", "scattered"])
def test_mutate_changes_one_percent_where_the_pattern_says(postgres, postgres_db, pattern):
    make_pgdb(postgres, postgres_db, "--size-mb", "3")
    before = content(postgres, postgres_db)
    xid = postgres.psql("SELECT txid_current()", postgres_db)
    make_pgdb(postgres, postgres_db, "--mutate", "--pattern", pattern)
    after = content(postgres, postgres_db)
    for table, old, new in zip(TABLES, before, after):
        assert old != new, table
        total, changed, lowest, top = postgres.psql(
            f"SELECT count(*), count(*) FILTER (WHERE xmin::text::bigint > {xid}), "
            f"min(id) FILTER (WHERE xmin::text::bigint > {xid}), max(id) FROM {table}",
            postgres_db).split("|")
        assert int(changed) == int(total) // 100, table
        if pattern == "recent":
            assert int(lowest) > int(top) * 0.95, table
        else:
            assert int(lowest) < int(top) * 0.5, table
