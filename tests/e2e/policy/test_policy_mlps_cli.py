"""`opskit policy check --profile mlps3` as an assessor's operator runs it on
recorded host trees: exit codes, the per-host HTML report (clause,
requirement, result, evidence), JUnit, drift per profile, a bad profile name."""
import html
import json
import os
import xml.etree.ElementTree as ET

import pytest

from tests.fixtures.policy.mlps_tree import MLPS_SITE, mlps_tree
from tests.fixtures.policy.trees import POLICY, write
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


@pytest.fixture
def setup(tmp_path):
    good = mlps_tree(tmp_path / "good")
    bad = mlps_tree(tmp_path / "bad")
    write(bad, {"/etc/shadow": "root::19700:0:90:7:::\n"})
    (tmp_path / "inventory.yaml").write_text(
        f"hosts:\n  db1:\n    sysroot: {good}\n  db2:\n    sysroot: {bad}\n")
    config = tmp_path / "opskit.yaml"
    config.write_text("inventory: inventory.yaml\n")
    env = {"OPSKIT_HOME": str(tmp_path / "home")}

    def opskit(*args):
        return run_opskit("--config", str(config), *args, env=env, timeout=90)
    opskit.bad = bad
    return opskit


def test_profile_exit_codes_and_findings(setup):
    clean = setup("policy", "check", "--profile", "mlps3", "--policy", MLPS_SITE,
                  "--hosts", "db1")
    assert clean.exit_code == 0, clean.output
    assert "[profile mlps3]" in clean.stdout and "0 finding(s)" in clean.stdout
    assert "6 for the assessor (manual)" in clean.stdout
    run = setup("policy", "check", "--profile", "mlps3", "--policy", MLPS_SITE)
    assert run.exit_code == 1, run.output
    assert "account root has an empty password" in run.stdout
    assert "8.1.4.1 a)" in run.stdout


def test_html_report_for_the_assessor(setup):
    run = setup("policy", "check", "--profile", "mlps3", "--policy", MLPS_SITE,
                "--format", "html")
    assert run.exit_code == 1, run.output
    page = html.unescape(run.stdout)
    assert page.startswith("<!DOCTYPE html>")
    for text in ("安全计算环境", "db1", "db2", "8.1.4.1 a)", "身份鉴别信息具有复杂度要求",
                 "mlps.auth.empty-passwords", "FAIL", "manual", "QUESTION:",
                 "/etc/shadow:1: root:(empty):19700:0:90:7:::", "passwd -l USER"):
        assert text in page, text
    assert "<script" not in run.stdout


def test_junit_marks_manual_items_skipped(setup):
    run = setup("policy", "check", "--profile", "mlps3", "--policy", MLPS_SITE,
                "--hosts", "db1", "--format", "junit")
    root = ET.fromstring(run.stdout.split("\n", 1)[1])
    skipped = root.findall("./testsuite[@name='db1']/testcase[@name='mlps.trust.verification']"
                           "/skipped")
    assert skipped and skipped[0].get("message").startswith("manual review:")


def test_drift_compares_runs_of_the_same_profile(setup):
    setup("policy", "check", "--policy", POLICY, "--hosts", "db1")
    first = setup("policy", "drift", "--profile", "mlps3", "--policy", MLPS_SITE,
                  "--hosts", "db1")
    assert "no earlier stored run" in first.stdout, first.output
    write(setup.bad, {})
    again = setup("policy", "drift", "--profile", "mlps3", "--policy", MLPS_SITE,
                  "--hosts", "db1", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["changes"] == []


def test_unknown_profile_is_a_usage_error(setup):
    run = setup("policy", "check", "--profile", "nosuch", "--policy", MLPS_SITE)
    assert run.exit_code == 2
    assert "known profiles: mlps3" in run.output


def test_list_shows_profile_checks_only_with_profile(setup):
    plain = setup("policy", "list", "--policy", POLICY, "--json")
    assert not [r for r in json.loads(plain.stdout) if r["check"].startswith("mlps.")]
    prof = setup("policy", "list", "--profile", "mlps3", "--policy", MLPS_SITE, "--json")
    rows = json.loads(prof.stdout)
    assert len([r for r in rows if r["check"].startswith("mlps.")]) >= 40
    assert all(r.get("remediation") for r in rows if r["check"].startswith("mlps."))
    assert os.path.basename(MLPS_SITE) in prof.stdout
