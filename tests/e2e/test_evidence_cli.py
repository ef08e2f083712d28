"""`opskit evidence --since DATE --out DIR` as an auditor runs it (issue #11, R-AUD-2):
real backups replicated to an off-site site, a real drill and policy check; a stale
rule is flagged by name; nothing secret lands in the pack."""
import datetime as dt
import hashlib
import json
import os
import subprocess

import pytest

from tests.backup_helpers import PASSPHRASE, BackupCli
from tests.fixtures.policy.trees import POLICY, good_tree
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


def _report(folder, generated, findings):
    """A stored permission report as 'perms report' leaves it (the contract of issue #11)."""
    os.makedirs(folder, exist_ok=True)
    html = b"<html><body>permission report</body></html>"
    (folder / "20261120T060000Z-report.html").write_bytes(html)
    (folder / "20261120T060000Z-report.json").write_text(json.dumps(
        {"snapshot": "20261120T055900Z-0123456789ab", "generated": generated,
         "sha256": hashlib.sha256(html).hexdigest(), "findings": findings}))


@pytest.fixture
def fleet(tmp_path, _isolated_opskit_home):
    home = _isolated_opskit_home
    site = tmp_path / "site"
    good = good_tree(tmp_path / "host1")
    (tmp_path / "inventory.yaml").write_text(f"hosts:\n  host1:\n    sysroot: {good}\n")
    cli = BackupCli(tmp_path, extra=f"sites:\n  dr:\n    url: file://{site}\n"
                                    f"inventory: {tmp_path / 'inventory.yaml'}\n")
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"claims-{i}.csv").write_bytes(os.urandom(10_000))
    cli.backup(src)
    assert cli("replicate").exit_code == 0
    drill = cli("drill", "--site", "dr", "--all")
    assert drill.exit_code == 0, drill.output
    env = {"OPSKIT_PASSPHRASE": PASSPHRASE}
    check = run_opskit("--config", cli.config, "policy", "check", "--policy", POLICY, env=env)
    assert check.exit_code == 0, check.output
    now = dt.datetime.now(dt.timezone.utc)
    _report(home / "perms" / "reports", now.isoformat(), [])

    def evidence(*args, passphrase=True):
        run = run_opskit("--config", cli.config, "evidence", *args,
                         env=env if passphrase else {}, timeout=120)
        assert "Traceback" not in run.output, run.output
        return run
    evidence.home, evidence.tmp = home, tmp_path
    return evidence


def test_a_complete_pack_exits_0_and_verifies_with_sha256sum(fleet, tmp_path):
    out = tmp_path / "pack"
    run = fleet("--since", "2026-01-01", "--out", str(out))
    assert run.exit_code == 0, run.output
    assert "8/8 checks ok" in run.stdout
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    checks = {c["check"]: c for c in manifest["checks"]}
    assert checks["restore-drill"]["reason"].startswith("newest drill: site dr")
    assert checks["replication"]["verdict"] == "ok"
    assert any(f["file"] == "backup/snapshots.json" for f in manifest["files"])
    assert os.path.exists(out / "audit" / "audit.log")
    # nothing secret: no passphrase, no config file, no key material
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            data = open(os.path.join(dirpath, name), "rb").read()
            assert PASSPHRASE.encode() not in data, name
            assert b"PRIVATE KEY" not in data, name
    assert not any(f["file"].endswith((".yaml", ".key")) for f in manifest["files"])
    audit = json.loads(run_opskit("audit", "show", "--command", "evidence", "--json").stdout)
    assert audit[-1]["exit_code"] == 0 and audit[-1]["details"]["manifest_sha256"]


def test_a_stale_drill_is_named_and_exits_1(fleet, tmp_path):
    drills = fleet.home / "drills"
    for name in os.listdir(drills):
        if name.endswith(".json"):
            data = json.load(open(drills / name))
            old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=45)
            data["time"] = old.strftime("%Y-%m-%dT%H:%M:%SZ")
            (drills / name).write_text(json.dumps(data))
    out = tmp_path / "pack"
    run = fleet("--since", "2026-01-01", "--out", str(out), "--json")
    assert run.exit_code == 1, run.output
    data = json.loads(run.stdout)
    bad = {c["check"]: c for c in data["checks"] if c["verdict"] != "ok"}
    assert list(bad) == ["restore-drill"]
    assert bad["restore-drill"]["verdict"] == "stale"
    assert "R-BAK-5" in bad["restore-drill"]["reason"] and "older than 32 d" in \
        bad["restore-drill"]["reason"]
    table = fleet("--since", "2026-01-01", "--out", str(tmp_path / "pack2"))
    assert table.exit_code == 1 and "STALE" in table.stdout
    assert "restore-drill (R-BAK-5, R-BAK-2) stale" in table.stdout


def test_without_the_passphrase_backups_are_missing_not_a_crash(fleet, tmp_path):
    run = fleet("--out", str(tmp_path / "p"), "--json", passphrase=False)
    assert run.exit_code == 1
    checks = {c["check"]: c for c in json.loads(run.stdout)["checks"]}
    assert checks["backup-incremental"]["verdict"] == "missing"
    assert "passphrase" in checks["backup-incremental"]["reason"]


def test_bad_out_and_since_exit_2(fleet, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("x")
    run = fleet("--out", str(busy))
    assert run.exit_code == 2 and "not an empty directory" in run.stderr
    run = fleet("--since", "last tuesday", "--out", str(tmp_path / "new"))
    assert run.exit_code == 2 and "--since" in run.stderr
