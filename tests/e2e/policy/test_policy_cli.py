"""`opskit policy check|drift|list` as a user runs them, on recorded host trees."""
import json
import xml.etree.ElementTree as ET

import pytest

from tests.fixtures.policy.trees import POLICY, good_tree, write
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


@pytest.fixture
def setup(tmp_path):
    good = good_tree(tmp_path / "good")
    bad = good_tree(tmp_path / "bad")
    write(bad, {"/proc/modules": "usb_storage 81920 0 - Live 0x0\n",
                "/sys/class/net/eth1/phy80211": {}})
    (tmp_path / "inventory.yaml").write_text(
        f"hosts:\n  good:\n    sysroot: {good}\n  bad:\n    sysroot: {bad}\n    groups: [db]\n")
    config = tmp_path / "opskit.yaml"
    config.write_text("inventory: inventory.yaml\n")
    env = {"OPSKIT_HOME": str(tmp_path / "home")}

    def opskit(*args):
        return run_opskit("--config", str(config), *args, env=env, timeout=60)
    opskit.good, opskit.bad, opskit.home = good, bad, tmp_path / "home"
    return opskit


def test_check_exit_codes_and_evidence(setup):
    clean = setup("policy", "check", "--policy", POLICY, "--hosts", "good")
    assert clean.exit_code == 0, clean.output
    assert "0 finding(s)" in clean.stdout
    run = setup("policy", "check", "--policy", POLICY)
    assert run.exit_code == 1, run.output
    assert "kernel module usb-storage is loaded now" in run.stdout
    assert "/proc/modules:1: usb_storage 81920 0 - Live 0x0" in run.stdout
    assert "network interface eth1 is wireless" in run.stdout
    assert "hosts with findings: bad" in run.stdout
    audit = (setup.home / "audit" / "audit.log").read_text()
    entry = json.loads(audit.strip().splitlines()[-1])
    assert entry["command"] == "policy check" and entry["exit_code"] == 1
    assert entry["details"]["hosts_with_findings"] == ["bad"]


def test_json_and_junit(setup):
    run = setup("policy", "check", "--policy", POLICY, "--json")
    data = json.loads(run.stdout)
    assert run.exit_code == data["exit_code"] == 1
    bad = next(h for h in data["hosts"] if h["host"] == "bad")
    failed = {r["check"] for r in bad["results"] if r["status"] == "fail"}
    assert failed == {"media.usb-storage-not-loaded", "net.wireless"}
    junit = setup("policy", "check", "--policy", POLICY, "--format", "junit")
    assert junit.exit_code == 1
    root = ET.fromstring(junit.stdout.split("\n", 1)[1])
    failures = root.findall("./testsuite[@name='bad']/testcase/failure")
    assert sorted(f.get("type") for f in failures) == ["R-MED-2", "R-NET-3"]
    assert root.find("./testsuite[@name='good']").get("failures") == "0"


def test_bad_policy_is_exit_2_with_file_line_key(setup, tmp_path):
    policy = tmp_path / "broken.yaml"
    policy.write_text("checks:\n  net.dns-resolvers:\n    allowed: [dns.example]\n")
    run = setup("policy", "check", "--policy", str(policy))
    assert run.exit_code == 2
    assert (f"opskit: error: {policy}:3: key 'checks.net.dns-resolvers.allowed': expected IP "
            "addresses, got 'dns.example'") in run.stderr
    unknown = setup("policy", "check", "--policy", POLICY, "--hosts", "nope")
    assert unknown.exit_code == 2 and "unknown host 'nope'" in unknown.stderr


def test_drift_shows_what_changed(setup):
    first = setup("policy", "drift", "--policy", POLICY)
    assert first.exit_code == 0 and "stored as the baseline" in first.stdout
    same = setup("policy", "drift", "--policy", POLICY)
    assert same.exit_code == 0, same.output
    assert "0 change(s)" in same.stdout
    write(setup.good, {"/etc/resolv.conf": "nameserver 8.8.8.8\n"})
    write(setup.bad, {"/proc/modules": "ext4 1 1 - Live 0x0\n"})
    changed = setup("policy", "drift", "--policy", POLICY, "--json")
    assert changed.exit_code == 1, changed.output
    rows = {(c["host"], c["check"]): c for c in json.loads(changed.stdout)["changes"]}
    assert rows[("good", "net.dns-resolvers")]["change"] == "new failure"
    assert "8.8.8.8" in rows[("good", "net.dns-resolvers")]["detail"]
    assert rows[("bad", "media.usb-storage-not-loaded")]["change"] == "resolved"
    assert len(rows) == 2


def test_list_shows_rule_ids(setup):
    run = setup("policy", "list")
    assert run.exit_code == 0
    assert "net.firewall-default-deny" in run.stdout and "R-NET-5" in run.stdout


def test_site_file_wins_over_baseline_whatever_its_name_and_list_says_where(setup, tmp_path):
    # issue #18 item 6: 50-site.yaml sorts before baseline.yaml but must win
    import shutil
    from pathlib import Path
    policies = tmp_path / "policies"
    policies.mkdir()
    shipped = Path(__file__).resolve().parents[3] / "configs" / "policies" / "baseline.yaml"
    shutil.copy(shipped, policies / "baseline.yaml")
    (policies / "50-site.yaml").write_text("checks:\n  net.forwarding:\n"
                                           "    require_explicit: false\n    severity: low\n")
    run = setup("policy", "list", "--policy", str(policies), "--json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    rows = data["data"] if isinstance(data, dict) else data
    row = next(r for r in rows if r["check"] == "net.forwarding")
    assert row["params"]["require_explicit"] is False and row["severity"] == "low"
    assert row["settings_from"]["require_explicit"] == f"false <- {policies}/50-site.yaml:3"
    assert row["settings_from"]["severity"] == f"\"low\" <- {policies}/50-site.yaml:4"
    table = setup("policy", "list", "--policy", str(policies))
    line = next(x for x in table.stdout.splitlines() if x.startswith("net.forwarding "))
    assert f"require_explicit false <- {policies}/50-site.yaml:3" in line
