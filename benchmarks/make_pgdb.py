#!/usr/bin/env python3
"""An insurance-like PostgreSQL database for the database-backup benchmark (#24).

    python3 benchmarks/make_pgdb.py DSN [--size-mb 2048] [--seed 1]
    python3 benchmarks/make_pgdb.py DSN --mutate [--pattern recent|scattered] [--day 2]

Tables patients, claims, claim_items and refunds (text, numeric, arrays and
jsonb columns, primary keys, foreign keys and secondary indexes), filled in
batches by the server itself (generate_series, a seeded random()) until the
database holds about --size-mb MiB with its indexes. Same seed, same rows.

--mutate changes 1% of every table's rows (one "day" of work): with
``recent`` (default) the rows are drawn from each table's newest 5% (claims
being processed, refunds being paid: where an insurance system's updates
land), with ``scattered`` uniformly over the whole table (the worst case for
any deduplication: every chunk of a dump holds a changed row).
DSN: a libpq URL or key=value string (password from PGPASSWORD or the URL).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

SCHEMA = """
DROP TABLE IF EXISTS refunds, claim_items, claims, patients;
CREATE TABLE patients (
    id bigint PRIMARY KEY, national_id text NOT NULL, full_name text NOT NULL,
    birth_date date NOT NULL, address text NOT NULL, plan text NOT NULL,
    attributes jsonb NOT NULL);
CREATE TABLE claims (
    id bigint PRIMARY KEY, patient_id bigint NOT NULL, provider_id int NOT NULL,
    status text NOT NULL, submitted_at timestamptz NOT NULL, amount numeric(12,2) NOT NULL,
    diagnosis_codes text[] NOT NULL, notes text, details jsonb NOT NULL);
CREATE TABLE claim_items (
    id bigint PRIMARY KEY, claim_id bigint NOT NULL, line_no int NOT NULL,
    procedure_code text NOT NULL, quantity int NOT NULL, unit_price numeric(10,2) NOT NULL,
    description text NOT NULL);
CREATE TABLE refunds (
    id bigint PRIMARY KEY, claim_id bigint NOT NULL, amount numeric(12,2) NOT NULL,
    paid_at timestamptz, method text NOT NULL, bank_ref text, memo jsonb);
"""

# Indexes and foreign keys after the load: as a restore builds them, and faster.
INDEXES = """
CREATE UNIQUE INDEX patients_national_id ON patients (national_id);
CREATE INDEX claims_patient ON claims (patient_id);
CREATE INDEX claims_submitted ON claims (submitted_at);
CREATE INDEX claims_status ON claims (status) WHERE status <> 'paid';
CREATE INDEX claim_items_claim ON claim_items (claim_id);
CREATE INDEX refunds_claim ON refunds (claim_id);
ALTER TABLE claims ADD FOREIGN KEY (patient_id) REFERENCES patients (id);
ALTER TABLE claim_items ADD FOREIGN KEY (claim_id) REFERENCES claims (id);
ALTER TABLE refunds ADD FOREIGN KEY (claim_id) REFERENCES claims (id);
ANALYZE;
CHECKPOINT;
"""

# One batch: claims {lo}..{hi}; a patient per 4 claims, 3 items per claim, a
# refund per 5 claims. {seed} makes random() repeatable batch by batch.
BATCH = """
BEGIN;
SELECT setseed({seed});
INSERT INTO patients
SELECT p, 'ID' || lpad((p::bigint * 7919 % 1000000007)::text, 12, '0'),  -- bigint: p * 7919 overflows int past 271k patients (>= 2 GB)
       (ARRAY['Wang','Li','Zhang','Liu','Chen','Yang','Huang','Zhao','Wu','Zhou'])[1 + p % 10]
         || ' ' || (ARRAY['Wei','Fang','Min','Jing','Lei','Yan','Jun','Tao','Ping','Hui'])[1 + (p / 10) % 10],
       date '1940-01-01' + (random() * 28000)::int,
       (1 + p % 999) || ' ' || (ARRAY['Renmin Rd','Jiefang Ave','Zhongshan Rd','Heping St'])[1 + p % 4]
         || ', District ' || (p % 40) || ', ' || (ARRAY['Beijing','Shanghai','Chengdu','Wuhan','Xian'])[1 + p % 5],
       (ARRAY['basic','employee','resident','supplementary'])[1 + (random() * 3)::int],
       jsonb_build_object('phone', '1' || lpad((random() * 1e10)::bigint::text, 10, '0'),
                          'employer', 'Company ' || (p % 5000), 'chronic', random() < 0.2,
                          'since', 1995 + (random() * 30)::int)
FROM generate_series({lo} / 4 + 1, {hi} / 4) p;
INSERT INTO claims
SELECT c, 1 + (random() * ({hi} / 4 - 1))::bigint, 1 + (random() * 2000)::int,
       (ARRAY['paid','paid','paid','paid','approved','submitted','rejected'])[1 + (random() * 6)::int],
       timestamptz '2020-01-01' + c * interval '7 seconds',
       round((random() * 20000)::numeric, 2),
       ARRAY['J' || (10 + (random() * 89)::int), 'K' || (20 + (random() * 79)::int)],
       CASE WHEN random() < 0.3 THEN repeat('follow-up visit, medication adjusted; ', 1 + (random() * 4)::int) END,
       jsonb_build_object('hospital', 'Hospital ' || (c % 300), 'ward', (ARRAY['inpatient','outpatient','emergency'])[1 + c % 3],
                          'days', (random() * 14)::int, 'reviewer', 'staff' || (random() * 200)::int,
                          'copay_rate', round(random()::numeric, 2))
FROM generate_series({lo} + 1, {hi}) c;
INSERT INTO claim_items
SELECT c * 3 + l, c, l, 'P' || lpad(((c * 31 + l * 17) % 9999)::text, 4, '0'),
       1 + (random() * 5)::int, round((random() * 3000)::numeric, 2),
       (ARRAY['consultation','laboratory test','imaging','medication','surgery','nursing care'])[1 + (c + l) % 6]
         || ' ' || md5((c * 3 + l)::text)
FROM generate_series({lo} + 1, {hi}) c, generate_series(0, 2) l;
INSERT INTO refunds
SELECT c / 5, c, round((random() * 8000)::numeric, 2),
       CASE WHEN random() < 0.9 THEN timestamptz '2020-01-02' + c * interval '7 seconds' END,
       (ARRAY['bank transfer','card','cash'])[1 + (random() * 2)::int],
       'BR' || md5(c::text), jsonb_build_object('batch', c / 5000, 'approved_by', 'staff' || c % 150)
FROM generate_series({lo} + 5 - ({lo} % 5), {hi}, 5) c WHERE c > {lo};
COMMIT;
"""

# Each table's 1% rows, from its newest 5% ('recent') or from all of it.
MUTATE = """
BEGIN;
SELECT setseed({seed});
UPDATE patients SET address = address || ' (moved day {day})',
       attributes = attributes || jsonb_build_object('updated', {day})
 WHERE id IN (SELECT id FROM patients WHERE id > (SELECT max(id) FROM patients) * {floor}
              ORDER BY random() LIMIT (SELECT count(*) / 100 FROM patients));
UPDATE claims SET status = 'paid', details = details || jsonb_build_object('paid_day', {day})
 WHERE id IN (SELECT id FROM claims WHERE id > (SELECT max(id) FROM claims) * {floor}
              ORDER BY random() LIMIT (SELECT count(*) / 100 FROM claims));
UPDATE claim_items SET quantity = quantity + 1
 WHERE id IN (SELECT id FROM claim_items WHERE id > (SELECT max(id) FROM claim_items) * {floor}
              ORDER BY random() LIMIT (SELECT count(*) / 100 FROM claim_items));
UPDATE refunds SET paid_at = coalesce(paid_at, now()), memo = memo || jsonb_build_object('day', {day})
 WHERE id IN (SELECT id FROM refunds WHERE id > (SELECT max(id) FROM refunds) * {floor}
              ORDER BY random() LIMIT (SELECT count(*) / 100 FROM refunds));
COMMIT;
CHECKPOINT;
"""

BATCH_CLAIMS = 20000          # ~15 MiB a batch; tiny databases (tests) take 500


def psql(dsn: str, sql: str, *, bindir: str = "") -> str:
    """Run ``sql`` with psql (stop at the first error); its unaligned output."""
    cmd = [f"{bindir}/psql" if bindir else "psql", "-X", "-q", "-A", "-t", "-v",
           "ON_ERROR_STOP=1", "-d", dsn, "-f", "-"]
    proc = subprocess.run(cmd, input=sql, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"make_pgdb: psql failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def db_mib(dsn: str, bindir: str) -> float:
    return int(psql(dsn, "SELECT pg_database_size(current_database())", bindir=bindir)) / 2**20


def generate(dsn: str, size_mb: int, seed: int, bindir: str = "") -> float:
    """Create and fill the tables to about ``size_mb`` MiB; the database's MiB."""
    psql(dsn, SCHEMA, bindir=bindir)
    empty = db_mib(dsn, bindir)
    batch, lo = 0, 0
    step = BATCH_CLAIMS if size_mb >= 64 else 500
    # Indexes, built at the end, add about an eighth: stop the heap short of it.
    while db_mib(dsn, bindir) - empty < size_mb * 0.88 or batch == 0:
        hi = lo + step
        psql(dsn, BATCH.format(lo=lo, hi=hi, seed=((seed * 7919 + batch) % 1000) / 1000),
             bindir=bindir)
        batch, lo = batch + 1, hi
    psql(dsn, INDEXES, bindir=bindir)
    return db_mib(dsn, bindir)


def mutate(dsn: str, pattern: str, day: int, seed: int, bindir: str = "") -> None:
    """Change 1% of every table's rows (module doc)."""
    floor = 0.95 if pattern == "recent" else 0
    psql(dsn, MUTATE.format(seed=((seed * 31 + day) % 1000) / 1000, day=day, floor=floor),
         bindir=bindir)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dsn")
    ap.add_argument("--size-mb", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutate", action="store_true", help="change 1%% of the rows instead")
    ap.add_argument("--pattern", choices=("recent", "scattered"), default="recent")
    ap.add_argument("--day", type=int, default=2, help="with --mutate: the day's number")
    ap.add_argument("--bindir", default="", help="directory holding psql (default: PATH)")
    args = ap.parse_args(argv)
    start = time.monotonic()
    if args.mutate:
        mutate(args.dsn, args.pattern, args.day, args.seed, args.bindir)
        print(f"make_pgdb: day {args.day}: 1% of rows changed ({args.pattern}) in "
              f"{time.monotonic() - start:.1f} s", flush=True)
        return
    size = generate(args.dsn, args.size_mb, args.seed, args.bindir)
    print(f"make_pgdb: {size:.0f} MiB database in {time.monotonic() - start:.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
