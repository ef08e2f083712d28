"""Database restore drills (R-BAK-5, #24 item 4) on the real PostgreSQL fixture:
scratch cluster, row counts + checksums, assertions, RTO/RPO, reports, audit."""
import json
import os

import pytest

from tests.e2e.backup.test_backup_drill import _flip
from tests.harness.backup import largest_pack
from tests.harness.cli import run_opskit
from tests.integration.backup.test_backup_db import SCHEMA, _cli

pytestmark = pytest.mark.integration


@pytest.fixture
def dumped(tmp_path, postgres, postgres_db):
    postgres.psql(SCHEMA, postgres_db)
    cli = _cli(tmp_path, postgres, postgres_db, extra=(
        "      assertions:\n"
        "        - SELECT count(*) = 20000 FROM ins.claims\n"
        "        - SELECT bool_and(paid > 0) FROM ins.settlements\n"))
    snap = cli.json("db", "run")["snapshots"][0]
    return cli, snap


def scratch_gone(report) -> bool:
    """The drill's scratch cluster folder, if it made one, was removed (named in its
    report: other drills may run on this machine at the same time)."""
    folder = report["scratch_dir"]
    return not folder or (folder.startswith("/tmp/opskit-drill-pg-") and
                          not os.path.exists(folder))


def test_a_database_drill_passes_and_leaves_nothing_behind(dumped, postgres):
    cli, snap = dumped
    run = cli("db", "drill", "--db", "claims", "--json", timeout=300)
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["passed"] and report["verdict"] == "PASS" and report["kind"] == "pg-logical"
    assert report["snapshot"] == snap["snapshot"]
    assert report["files_verified"] == report["files_total"] == 4
    assert all(t["ok"] for t in report["tables"])
    assert [a["ok"] for a in report["assertions"]] == [True, True]
    assert 0 < report["restore_seconds"] and report["rto_ok"] and report["rpo_ok"]
    # same JSON shape as file drills, in the drills folder
    stored = json.load(open(report["report_json"]))
    assert {"snapshot", "site", "time", "passed", "kind"} <= set(stored)
    assert os.path.dirname(report["report_json"]).endswith("drills")
    assert report["scratch_dir"] and scratch_gone(report)
    audit = json.loads(run_opskit("--config", cli.config, "audit", "show", "--command",
                                  "backup db drill", "--json").stdout)
    assert audit[-1]["details"]["drill"]["passed"] is True
    # the file-drill history lists it too
    history = cli.json("drill", "--history")
    assert history[-1]["snapshot"] == snap["snapshot"] and history[-1]["kind"] == "pg-logical"


def test_a_false_assertion_fails_the_drill(tmp_path, postgres, postgres_db):
    postgres.psql(SCHEMA, postgres_db)
    cli = _cli(tmp_path, postgres, postgres_db,
               extra="      assertions: [SELECT count(*) = 1 FROM ins.claims]\n")
    cli.json("db", "run")
    run = cli("db", "drill", "--db", "claims", "--json", timeout=300)
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert not report["passed"] and report["verdict"].startswith("FAIL")
    assert report["files_verified"] == 4            # the data itself was fine
    assert report["assertions"][0]["ok"] is False


def test_a_drill_fails_on_a_damaged_pack(dumped):
    cli, _snap = dumped
    pack = largest_pack(cli.repo)
    _flip(pack, os.path.getsize(pack) // 3)      # inside a data blob
    run = cli("db", "drill", "--json", timeout=300)
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert not report["passed"] and not report["verified"]
    assert any("damaged" in f["problem"] or "does not match" in f["problem"]
               for f in report["failures"]), report["failures"]
    assert scratch_gone(report)


def test_an_old_snapshot_fails_the_rpo(dumped):
    cli, _snap = dumped
    with open(cli.config, "a") as fh:
        fh.write("  drill:\n    rpo_hours: 0.00001\n")
    run = cli("db", "drill", "--json", timeout=300)
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert report["verified"] and not report["rpo_ok"] and "RPO" in report["verdict"]
