"""opskit's own detections open incidents with the evidence attached (#25 item 1,
R-INC-1): a tampered audit log, a policy regression found by 'policy drift', a
replication that stopped -- each from a real failure; and none without one."""
import json
import os
from pathlib import Path

import pytest

from tests.harness.backup import BackupCli
from tests.harness.backup import write as _write
from tests.fixtures.policy.trees import POLICY, good_tree, write
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


def _incidents():
    run = run_opskit("incident", "list", "--json")
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout)


def _show(iid):
    return json.loads(run_opskit("incident", "show", iid, "--json").stdout)


def test_a_tampered_audit_log_opens_one_incident_with_the_log_attached():
    log = Path(os.environ["OPSKIT_HOME"]) / "audit" / "audit.log"
    for _ in range(3):
        run_opskit("audit", "show")
    assert run_opskit("audit", "verify").exit_code == 0 and _incidents() == []
    raw = log.read_bytes().splitlines(keepends=True)
    entry = json.loads(raw[1])
    entry["summary"] = "nothing to see here"
    raw[1] = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
    log.write_bytes(b"".join(raw))
    run = run_opskit("audit", "verify", "--json")
    assert run.exit_code == 1 and json.loads(run.stdout)["incident"] == "INC-0001"
    inc = _show("INC-0001")
    assert inc["automatic"] and inc["type"] == "audit-log-tampered" and "seq 2" in inc["scope"]
    assert inc["evidence"]["source"] == str(log)
    assert b"nothing to see here" in open(inc["evidence"]["copy"], "rb").read()
    # the hourly check finds the same damage again: still the one open incident
    again = run_opskit("audit", "verify", "--json")
    assert again.exit_code == 1 and json.loads(again.stdout)["incident"] == "INC-0001"
    assert len(_incidents()) == 1


def test_a_policy_regression_found_by_drift_opens_an_incident(tmp_path):
    host = good_tree(tmp_path / "h1")
    (tmp_path / "inventory.yaml").write_text(f"hosts:\n  h1:\n    sysroot: {host}\n")
    config = tmp_path / "opskit.yaml"
    config.write_text("inventory: inventory.yaml\n")

    def drift():
        run = run_opskit("--config", config, "policy", "drift", "--policy", POLICY, "--json",
                         timeout=60)
        assert "Traceback" not in run.output
        return run.exit_code, json.loads(run.stdout)

    assert drift()[0] == 0 and drift()[0] == 0                   # baseline, then no change
    assert _incidents() == []
    write(host, {"/proc/modules": "usb_storage 81920 0 - Live 0x0\n"})
    code, data = drift()
    assert code == 1 and data["incident"] == "INC-0001"
    inc = _show("INC-0001")
    assert inc["type"] == "policy-regression" and "h1 media.usb-storage-not-loaded" in inc["scope"]
    stored = json.load(open(inc["evidence"]["copy"]))
    assert any(r["status"] == "fail" for h in stored["hosts"] for r in h["results"])
    # the fix is drift too, but not a regression: no new incident
    write(host, {"/proc/modules": ""})
    code, data = drift()
    assert code == 1 and "incident" not in data and len(_incidents()) == 1


def test_a_replication_that_stopped_opens_an_incident(tmp_path):
    # nothing listens on port 1: the SFTP site cannot be reached
    cli = BackupCli(tmp_path, extra="sites:\n  dr:\n    url: sftp://backup@127.0.0.1:1/srv\n"
                                    "    timeout: 5\n")
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "a", b"x" * 1000)
    cli.backup(src)
    run = cli("replicate", "--to", "dr")
    assert run.exit_code == 3, run.output
    assert "opened incident INC-0001" in run.stderr
    inc = _show("INC-0001")
    assert inc["type"] == "replication-stopped" and "site dr" in inc["scope"]
    assert "last_error" in json.load(open(inc["evidence"]["copy"]))


def test_a_replication_that_works_opens_none(tmp_path):
    cli = BackupCli(tmp_path, extra=f"sites:\n  dr:\n    url: file://{tmp_path / 'site'}\n")
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "a", b"x" * 1000)
    cli.backup(src)
    assert cli("replicate", "--to", "dr").exit_code == 0
    assert _incidents() == []
