"""`opskit users apply|freeze` over real sshd hosts, each with its own account database
(inventory var accounts_root), in parallel; a host down during a freeze exits 3 and a
rerun finishes the job (R-ACC-6)."""
import json

import pytest

from tests.harness.accounts import (BASE_ROSTER, EXAMPLE_KEY, make_userdb_root, passwd_line,
                                    shadow_line, write_model)
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.integration

KEY = EXAMPLE_KEY
ROSTER = BASE_ROSTER + """\
  chen.jie:
    post: claims-desk
"""


def inventory(servers, roots, ports):
    lines = ["defaults:", f"  key: {servers[0].client_key}", f"  user: {servers[0].user}",
             "hosts:"]
    for i, (root, port) in enumerate(zip(roots, ports)):
        lines += [f"  s{i}:", "    address: 127.0.0.1", f"    port: {port}",
                  f"    groups: [{'db' if i < 2 else 'app'}]",
                  f"    vars: {{accounts_root: {root}}}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def ssh_fleet(three_sshd, tmp_path):
    roots = [make_userdb_root(tmp_path / f"root{i}") for i in range(3)]
    known = tmp_path / "known_hosts"
    known.write_text("".join(s.known_hosts_line for s in three_sshd))
    ports = [s.port for s in three_sshd]
    config = write_model(tmp_path / "cfg", ROSTER, inventory(three_sshd, roots, ports),
                         extra_config=f"ssh:\n  known_hosts: {known}\n  connect_timeout: 5\n")
    env = {"OPSKIT_HOME": str(tmp_path / "home")}

    def opskit(*args):
        return run_opskit("--config", config, *args, env=env, timeout=120)
    opskit.roots, opskit.ports, opskit.servers = roots, ports, three_sshd
    opskit.inventory = tmp_path / "cfg" / "inventory.yaml"
    opskit.home = tmp_path / "home"
    return opskit


def test_apply_over_ssh_is_parallel_idempotent_and_per_host(ssh_fleet):
    run = ssh_fleet("users", "apply", "--json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert [h["host"] for h in data["hosts"]] == ["s0", "s1", "s2"]
    assert all(h["status"] == "ok" for h in data["hosts"])
    r0, r1, r2 = ssh_fleet.roots
    assert passwd_line(r0, "li.na") and passwd_line(r1, "li.na") and not passwd_line(r2, "li.na")
    assert passwd_line(r2, "chen.jie") and not passwd_line(r0, "chen.jie")
    assert shadow_line(r2, "zhang.wei")[2] == "0"
    plan = ssh_fleet("users", "plan", "--group", "db")
    assert plan.exit_code == 0 and "nothing to do" in plan.stdout, plan.output
    assert plan.stdout.split("\n\n")[0].count(" ok ") == 2


def test_host_down_during_freeze_exits_3_and_rerun_completes(ssh_fleet, dead_port):
    assert ssh_fleet("users", "apply").exit_code == 0
    good = ssh_fleet.inventory.read_text()
    ssh_fleet.inventory.write_text(inventory(ssh_fleet.servers, ssh_fleet.roots,
                                             ssh_fleet.ports[:2] + [dead_port]))
    first = ssh_fleet("users", "freeze", "zhang.wei", "--reason", "departure")
    assert first.exit_code == 3, first.output
    assert "INCOMPLETE; failed hosts: s2" in first.stdout
    assert "UNREACHABLE" in first.stdout
    assert shadow_line(ssh_fleet.roots[0], "zhang.wei")[7] == "1"
    assert shadow_line(ssh_fleet.roots[2], "zhang.wei")[7] == ""      # not reached yet

    ssh_fleet.inventory.write_text(good)                                # the host is back
    rerun = ssh_fleet("users", "freeze", "zhang.wei", "--reason", "departure", "--json")
    assert rerun.exit_code == 0, rerun.output
    cert = json.loads(rerun.stdout)
    assert cert["result"] == "complete" and cert["failed_hosts"] == []
    done = {h["host"]: h["done"] for h in cert["hosts"]}
    assert done["s0"] == [] and done["s1"] == [] and done["s2"], done
    assert shadow_line(ssh_fleet.roots[2], "zhang.wei")[7] == "1"
    certs = sorted((ssh_fleet.home / "accounts" / "freezes").iterdir())
    assert sorted(json.loads(c.read_text())["result"] for c in certs) == ["complete",
                                                                          "incomplete"]
