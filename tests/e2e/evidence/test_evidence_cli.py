"""`opskit evidence` as an auditor runs it (issue #21, R-AUD-2): real backups
replicated to a file:// "site" on the repository's own disk, a real drill from it
and real policy checks. The same-disk site and its drill do not count; every rule
of REQUIREMENTS.md has a verdict; the pack is signed, anchored in the audit log
and verifies with its own verify.py without opskit; a tampered pack is named."""
import json
import os
import subprocess
import sys

import pytest

from tests.harness.backup import PASSPHRASE, BackupCli
from tests.fixtures.policy.trees import POLICY, good_tree
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


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
    key = run_opskit("--config", cli.config, "correct", "keygen", "--name", "auditor")
    assert key.exit_code == 0, key.output

    def evidence(*args, passphrase=True):
        run = run_opskit("--config", cli.config, "evidence", *args,
                         env=env if passphrase else {}, timeout=180)
        assert "Traceback" not in run.output, run.output
        return run
    evidence.home, evidence.tmp, evidence.cli, evidence.tree = home, tmp_path, cli, good
    return evidence


def test_an_honest_signed_pack_that_verifies_without_opskit(fleet, tmp_path):
    out = tmp_path / "pack"
    run = fleet("--since", "1d", "--out", str(out), "--json")
    assert run.exit_code == 1, run.output
    data = json.loads(run.stdout)
    rules = {r["rule"]: r for r in data["rules"]}
    assert len(rules) == 41
    assert rules["R-BAK-3"]["verdict"] == "not met"
    assert "same filesystem" in rules["R-BAK-3"]["reason"]
    assert rules["R-BAK-5"]["verdict"] == "not met"          # its drill came from that disk
    assert rules["R-BAK-4"]["verdict"] == "met", rules["R-BAK-4"]["reason"]
    assert rules["R-NET-1"]["verdict"] == "met", rules["R-NET-1"]["reason"]
    assert rules["R-ACC-9"]["reason"] == "not implemented by opskit"
    # verify.py needs no opskit: run it isolated from site-packages paths of the checkout
    proc = subprocess.run([sys.executable, "-I", "verify.py"], cwd=out, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fleet("verify", str(out)).exit_code == 0
    # nothing secret: no passphrase, no config file, no private key material
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            blob = open(os.path.join(dirpath, name), "rb").read()
            assert PASSPHRASE.encode() not in blob, name
            assert b"PRIVATE KEY" not in blob, name
    audit = json.loads(run_opskit("audit", "show", "--command", "evidence", "--json").stdout)
    assert [a["command"] for a in audit][-3:] == ["evidence seal", "evidence", "evidence verify"]
    assert audit[-2]["details"]["manifest_sha256"] == data["manifest_sha256"]
    # tampering is named, by both verifiers
    html = out / "index.html"
    html.write_bytes(html.read_bytes().replace(b"R-BAK-3", b"R-BAK-E", 1))
    bad = fleet("verify", str(out))
    assert bad.exit_code == 1 and "index.html: CHANGED" in bad.stdout
    proc = subprocess.run([sys.executable, "-I", "verify.py"], cwd=out, capture_output=True,
                          text=True)
    assert proc.returncode == 1 and "index.html" in proc.stdout


def test_real_policy_findings_make_the_rule_not_met(fleet, tmp_path):
    """Fails if the policy checks (or the pack) ignore a finding: a host that forwards
    packets breaks R-NET-1 (net.forwarding)."""
    forward = os.path.join(fleet.tree, "proc/sys/net/ipv4/ip_forward")
    with open(forward, "w") as fh:
        fh.write("1\n")
    check = run_opskit("--config", fleet.cli.config, "policy", "check", "--policy", POLICY)
    assert check.exit_code == 1, check.output
    run = fleet("--since", "1d", "--out", str(tmp_path / "p"), "--json")
    rules = {r["rule"]: r for r in json.loads(run.stdout)["rules"]}
    assert rules["R-NET-1"]["verdict"] == "not met"
    assert "net.forwarding" in rules["R-NET-1"]["reason"]
    assert rules["R-NET-3"]["verdict"] == "met"


def test_zh_cn_pack_and_missing_passphrase(fleet, tmp_path):
    run = fleet("--lang", "zh-CN", "--out", str(tmp_path / "zh"), "--json", passphrase=False)
    assert run.exit_code == 1
    rules = {r["rule"]: r for r in json.loads(run.stdout)["rules"]}
    assert rules["R-BAK-4"]["verdict"] == "no evidence"
    assert "passphrase" in rules["R-BAK-4"]["reason"]
    page = (tmp_path / "zh" / "index.html").read_text()
    assert "规则、证据与结论" in page and "异地存放" in page


def test_bad_out_since_and_key_exit_2_or_3(fleet, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("x")
    run = fleet("--out", str(busy))
    assert run.exit_code == 2 and "not an empty directory" in run.stderr
    run = fleet("--since", "last tuesday", "--out", str(tmp_path / "new"))
    assert run.exit_code == 2 and "--since" in run.stderr
    run = fleet("--out", str(tmp_path / "nokey"), "--key", str(tmp_path / "absent"))
    assert run.exit_code == 3 and "signing key" in run.stderr
    assert fleet("verify", str(tmp_path / "nowhere")).exit_code == 2


def test_a_site_declaration_is_applied_recorded_and_never_hides_findings(fleet, tmp_path):
    """evidence.not_applicable from the real config: R-NET-3 accepted, R-BAK-3 (its
    'off-site' site is on the repository's disk) refused; both in the audit entry."""
    with open(fleet.cli.config, "a", encoding="utf-8") as fh:
        fh.write('evidence:\n  not_applicable:\n    R-NET-3: "no wireless hardware"\n'
                 '    R-BAK-3: "we keep no off-site copy"\n')
    run = fleet("--since", "1d", "--out", str(tmp_path / "pack"), "--json")
    assert run.exit_code == 1, run.output
    rules = {r["rule"]: r for r in json.loads(run.stdout)["rules"]}
    assert rules["R-NET-3"]["verdict"] == "not applicable"
    assert rules["R-BAK-3"]["verdict"] == "not met"
    assert "refused" in rules["R-BAK-3"]["reason"]
    audit = [json.loads(line) for line in open(fleet.home / "audit" / "audit.log")]
    seal = [e for e in audit if e["command"] == "evidence seal"][-1]
    assert {(d["rule"], d["refused"]) for d in seal["details"]["not_applicable"]} == {
        ("R-NET-3", False), ("R-BAK-3", True)}
