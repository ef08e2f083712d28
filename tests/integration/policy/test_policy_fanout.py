"""`opskit policy check` across several real sshd hosts, a recorded host tree
and an unreachable host: one summary table, one row per host, exit 3 for the
unreachable one; SSH and local reads of the same machine agree."""
import json
import os
import shutil
import textwrap

import pytest

from opskit.hosts import LocalHost
from opskit.policy.policyfile import load_policy
from opskit.policy.fleet import check_host
from tests.fixtures.policy.trees import POLICY, good_tree
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.integration


def make_config(tmp_path, servers, *, dead_port=None, tree=None):
    known = tmp_path / "known_hosts"
    known.write_text("".join(s.known_hosts_line for s in servers))
    lines = ["defaults:", f"  key: {servers[0].client_key}", f"  user: {servers[0].user}",
             "hosts:"]
    for i, server in enumerate(servers):
        lines += [f"  s{i}:", "    address: 127.0.0.1", f"    port: {server.port}",
                  "    groups: [live]"]
    if tree:
        lines += ["  recorded:", f"    sysroot: {tree}"]
    if dead_port:
        lines += ["  dead:", "    address: 127.0.0.1", f"    port: {dead_port}"]
    (tmp_path / "inventory.yaml").write_text("\n".join(lines) + "\n")
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(POLICY, policies / "policy.yaml")
    config = tmp_path / "opskit.yaml"
    config.write_text(textwrap.dedent(f"""\
        inventory: inventory.yaml
        ssh:
          known_hosts: {known}
          connect_timeout: 5
        policy:
          host_timeout: 30
    """))
    return str(config)


def test_fan_out_summary_table_and_unreachable_host(three_sshd, dead_port, tmp_path):
    tree = good_tree(tmp_path / "tree")
    cfg = make_config(tmp_path, three_sshd, dead_port=dead_port, tree=tree)
    env = {"OPSKIT_HOME": str(tmp_path / "home")}
    run = run_opskit("--config", cfg, "policy", "check", env=env, timeout=120)
    assert run.exit_code == 3, run.output
    summary = run.stdout.split("\n\n")[0].splitlines()
    assert summary[0] == "Summary (host x check)"
    assert summary[1].split()[:3] == ["HOST", "ROLE", "HOST"]
    rows = {line.split()[0]: line.split() for line in summary[3:]}
    assert list(rows) == ["s0", "s1", "s2", "recorded", "dead"]
    assert rows["dead"][2] == "UNREACHABLE"
    assert set(rows["recorded"][3:]) == {"pass"}
    for name in ("s0", "s1", "s2"):
        assert rows[name][2] == "ok" and len(rows[name]) == 3 + 15
    assert f"dead (127.0.0.1:{dead_port}): cannot connect" in run.stdout

    json_run = run_opskit("--config", cfg, "policy", "check", "--group", "live", "--json",
                          env=env, timeout=120)
    data = json.loads(json_run.stdout)
    assert [h["host"] for h in data["hosts"]] == ["s0", "s1", "s2"]
    assert json_run.exit_code == data["exit_code"] != 3
    stored = os.listdir(tmp_path / "home" / "policy" / "runs")
    assert len(stored) == 2


def test_ssh_and_local_agree(sshd, tmp_path):
    from opskit.hosts.ssh import SSHHost
    policy = load_policy(explicit=POLICY)
    remote = SSHHost("remote", "127.0.0.1", port=sshd.port, user=sshd.user,
                     key_filename=sshd.client_key, known_hosts=sshd.known_hosts)
    try:
        over_ssh = check_host(remote, policy)
    finally:
        remote.close()
    local = check_host(LocalHost("local"), policy)
    assert {r.check: r.status for r in over_ssh.results} == \
           {r.check: r.status for r in local.results}
    assert over_ssh.result("net.default-route").findings[0].evidence == \
           local.result("net.default-route").findings[0].evidence
