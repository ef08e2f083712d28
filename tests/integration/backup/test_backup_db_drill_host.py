"""A database drill whose scratch cluster runs on a drill host over SSH (#24 item 4,
R-BAK-5): a real sshd on loopback stands for the drill host (host key verified), the
restore and the checks go through an SSH tunnel to the cluster on its loopback. Judged
like a local drill: every table's count and checksum, the assertions; a damaged pack
fails it; the cluster's folder on the host is gone afterwards either way; an
unreachable host fails the drill with the cause named."""
import json
import os

import pytest

from tests.e2e.backup.test_backup_drill import _flip
from tests.harness.backup import largest_pack
from tests.integration.backup.test_backup_db_drill import dumped  # noqa: F401 (fixture)
from tests.integration.backup.test_backup_drill_host import _config_with_host

pytestmark = pytest.mark.integration


def _drill(cli, *args):
    return cli("db", "drill", "--db", "claims", "--drill-host", "standby", "--json", *args,
               timeout=300)


def test_a_drill_on_a_drill_host_verifies_there_and_removes_the_cluster(dumped, sshd,
                                                                       tmp_path):
    cli, snap = dumped
    _config_with_host(cli, tmp_path, sshd)
    run = _drill(cli)
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["passed"] and report["target_host"] == "standby"
    assert report["snapshot"] == snap["snapshot"]
    assert report["files_verified"] == report["files_total"] == 4
    assert all(t["ok"] for t in report["tables"]) and all(a["ok"] for a in report["assertions"])
    # the "drill host" is this machine through sshd: its cluster folder must be gone
    assert report["scratch_dir"].startswith("/tmp/opskit-drill-pg-")
    assert not os.path.exists(report["scratch_dir"])
    assert not [p for p in os.listdir("/tmp") if p.startswith("opskit-drill-pw-")
                and os.stat(os.path.join("/tmp", p)).st_mtime > os.stat(cli.config).st_mtime]


def test_a_damaged_pack_fails_the_remote_drill_and_it_still_cleans_up(dumped, sshd,
                                                                      tmp_path):
    cli, _snap = dumped
    _config_with_host(cli, tmp_path, sshd)
    pack = largest_pack(cli.repo)
    _flip(pack, os.path.getsize(pack) // 3)      # inside a data blob
    run = _drill(cli)
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert not report["passed"] and report["failures"]
    assert not report["scratch_dir"] or not os.path.exists(report["scratch_dir"])


def test_an_unreachable_drill_host_fails_the_drill_naming_it(dumped, dead_port, tmp_path):
    cli, _snap = dumped
    (tmp_path / "inventory.yaml").write_text(
        f"hosts:\n  gone:\n    address: 127.0.0.1\n    port: {dead_port}\n")
    text = open(cli.config).read()
    with open(cli.config, "w") as fh:
        fh.write(f"inventory: {tmp_path / 'inventory.yaml'}\nssh:\n  connect_timeout: 2\n"
                 + text)
    run = cli("db", "drill", "--db", "claims", "--drill-host", "gone", "--json")
    assert run.exit_code == 1 and "Traceback" not in run.output, run.output
    report = json.loads(run.stdout)
    assert not report["passed"]
    assert "gone" in report["failures"][0]["problem"] and "refused" in report["failures"][0]["problem"]


class _ConfigOnly:
    """What _config_with_host needs of a CLI: the config path."""

    def __init__(self, config):
        self.config = config


def test_a_point_in_time_drill_on_a_drill_host(pg_archiving, sshd, tmp_path):
    from tests.integration.backup.test_backup_pitr import _basebackup
    from tests.integration.backup.test_backup_pitr_drill import _assertions
    pg = pg_archiving
    _assertions(pg, "SELECT count(*) = 2 FROM claims")
    _config_with_host(_ConfigOnly(pg.config), tmp_path, sshd)
    pg.psql("CREATE TABLE claims (id int PRIMARY KEY, note text)")
    base = _basebackup(pg)
    target = pg.before_and_after()

    run = pg.opskit("db", "drill", "--kind", "pg-base", "--drill-host", "standby", "--json")
    assert run.exit_code == 0, run.output
    rep = json.loads(run.stdout)
    assert rep["passed"] and rep["target_host"] == "standby"
    assert rep["snapshot"] == base["snapshot"]
    assert {t["table"]: t["rows"] for t in rep["tables"]}["postgres:public.claims"] == 2
    assert rep["recovery"]["last_commit"] and rep["recovery"]["wal_segments"] >= 2
    assert rep["scratch_dir"].startswith("/tmp/opskit-drill-pg-")
    assert not os.path.exists(rep["scratch_dir"])

    # the case that must not pass: stopped before the second insert, the assertion fails
    run = pg.opskit("db", "drill", "--kind", "pg-base", "--drill-host", "standby",
                    "--to-time", target, "--json")
    assert run.exit_code == 1, run.output
    rep = json.loads(run.stdout)
    assert {t["table"]: t["rows"] for t in rep["tables"]}["postgres:public.claims"] == 1
    assert rep["assertions"][0]["ok"] is False and not os.path.exists(rep["scratch_dir"])


def test_a_drill_host_that_is_this_machine_is_refused(dumped):
    cli, _snap = dumped       # no inventory: the embedded one has only a local "localhost"
    run = cli("db", "drill", "--db", "claims", "--drill-host", "localhost")
    assert run.exit_code == 2 and "this machine" in run.stderr, run.output
    assert "Traceback" not in run.output and len(run.stderr.strip().splitlines()) == 1


def test_a_drill_host_never_writes_through_symlinks_the_snapshot_carries(pg_archiving, sshd,
                                                                        tmp_path):
    pg = pg_archiving
    pg.use_base_source("datadir")
    _config_with_host(_ConfigOnly(pg.config), tmp_path, sshd)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    data = pg.server.data_dir
    planted = [os.path.join(data, n) for n in ("recovery.signal", "standby.signal")]
    for path in planted:
        os.symlink(victim, path)
    try:
        assert pg.opskit("db", "basebackup").exit_code == 0
    finally:
        for path in planted:
            os.unlink(path)
    run = pg.opskit("db", "drill", "--kind", "pg-base", "--drill-host", "standby", "--json")
    assert victim.read_text() == "precious\n", run.output
    assert run.exit_code == 0, run.output
