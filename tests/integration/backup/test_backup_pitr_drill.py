"""Point-in-time restore drills (#24 item 4, R-BAK-5): ``backup db drill`` on a
pg-base snapshot against a real archiving PostgreSQL server
(tests/harness/postgres_pitr.py): base backup + archived WAL replayed in a
scratch cluster, tables read, assertions, RTO/RPO from the last replayed
commit; a damaged pack and a missing WAL segment fail and say which."""
import datetime as dt
import json
import os

import pytest

from tests.e2e.backup.test_backup_drill import _flip
from tests.harness.backup import largest_pack
from tests.integration.backup.test_backup_db_drill import scratch_gone
from tests.integration.backup.test_backup_pitr import _basebackup

pytestmark = pytest.mark.integration


def _assertions(pg, *sqls):
    """backup.databases.main.assertions in the fixture's config."""
    text = open(pg.config).read()
    lines = "".join(f"        - {s}\n" for s in sqls)
    with open(pg.config, "w") as fh:
        fh.write(text.replace("      sslmode: disable\n",
                              f"      sslmode: disable\n      assertions:\n{lines}"))


def _drill(pg, *args, expect):
    run = pg.opskit("db", "drill", "--kind", "pg-base", *args, "--json")
    assert run.exit_code == expect, run.output
    return json.loads(run.stdout)




def test_pitr_drill_replays_the_archive_and_stops_at_a_time(pg_archiving):
    pg = pg_archiving
    _assertions(pg, "SELECT count(*) = 2 FROM claims")
    pg.psql("CREATE TABLE claims (id int PRIMARY KEY, note text)")
    base = _basebackup(pg)
    target = pg.before_and_after()
    last = dt.datetime.now(dt.timezone.utc)          # just after the 'after' commit

    rep = _drill(pg, expect=0)
    assert rep["passed"] and rep["verdict"] == "PASS" and rep["kind"] == "pg-base"
    assert rep["snapshot"] == base["snapshot"] and rep["database"] == "main"
    tables = {t["table"]: t for t in rep["tables"]}
    assert tables["postgres:public.claims"]["rows"] == 2          # the WAL after the base
    assert rep["files_verified"] == rep["files_total"] >= 1
    assert [a["ok"] for a in rep["assertions"]] == [True]
    # RPO from the last replayed commit (the 'after' insert), not the base backup
    commit = dt.datetime.fromisoformat(rep["recovery"]["last_commit"])
    assert abs((commit - last).total_seconds()) < 5
    assert rep["rpo_hours"] < 0.05 and 0 < rep["restore_seconds"] and rep["rto_ok"]
    assert rep["recovery"]["replay_lsn"] and rep["recovery"]["wal_segments"] >= 2
    assert rep["scratch_dir"] and scratch_gone(rep)
    stored = json.load(open(rep["report_json"]))
    assert stored["kind"] == "pg-base" and os.path.dirname(rep["report_json"]).endswith("drills")

    # stopped at the time between the two inserts: 'after' is not there, the assertion fails
    rep = _drill(pg, "--to-time", target, expect=1)
    assert {t["table"]: t["rows"] for t in rep["tables"]}["postgres:public.claims"] == 1
    assert rep["assertions"][0]["ok"] is False and rep["verdict"].startswith("FAIL")
    assert rep["recovery"]["to_time"] == target


def test_pitr_drill_fails_on_a_damaged_pack_and_on_a_missing_segment(pg_archiving):
    pg = pg_archiving
    pg.psql("CREATE TABLE t (x int)")
    _basebackup(pg)
    names = pg.insert_and_archive(3)
    pack = largest_pack(pg.repo)
    offset = os.path.getsize(pack) // 3
    _flip(pack, offset)
    rep = _drill(pg, expect=1)
    assert not rep["passed"] and not rep["verified"]
    assert any("damaged" in f["problem"] or "does not match" in f["problem"]
               for f in rep["failures"]), rep["failures"]
    assert scratch_gone(rep)
    _flip(pack, offset)                           # repaired: the control passes
    assert _drill(pg, expect=0)["passed"]

    os.unlink(os.path.join(pg.repo, "wal", "main", names[1]))
    rep = _drill(pg, expect=1)
    assert not rep["passed"]
    assert rep["failures"][0]["path"] == f"wal/main/{names[1]}", rep["failures"]
    assert names[1] in rep["failures"][0]["problem"]
    assert scratch_gone(rep)
