"""The Linux collector over real SSH: the same result as reading the machine
locally, and `opskit perms snapshot` across an SSH host, a recorded host and
an unreachable one (every host gets a row; exit 3; the report names it)."""
import json
import textwrap

import pytest

from opskit.hosts import LocalHost
from opskit.hosts.ssh import SSHHost
from opskit.perms.linux import collect_linux
from tests.fixtures.perms.trees import Org
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.integration


def test_ssh_and_local_collection_agree(sshd):
    remote = SSHHost("remote", "127.0.0.1", port=sshd.port, user=sshd.user,
                     key_filename=sshd.client_key, known_hosts=sshd.known_hosts)
    try:
        over_ssh = collect_linux(remote)
    finally:
        remote.close()
    local = collect_linux(LocalHost("local"))
    # logging in over SSH may add a login record between the two reads
    for data in (over_ssh, local):
        data["last_login"].pop(sshd.user, None)
    assert over_ssh == local
    assert "root" in over_ssh["accounts"] and over_ssh["sudo_files"][0] == "/etc/sudoers"
    assert over_ssh["shadow_readable"] is True


def test_snapshot_over_ssh_recorded_and_unreachable_hosts(sshd, dead_port, tmp_path):
    org = Org(tmp_path / "org")
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line)
    inventory = textwrap.dedent(f"""\
        defaults:
          key: {sshd.client_key}
          user: {sshd.user}
        hosts:
          app1:
            sysroot: {org.hosts['app1']}
            groups: [app]
          live:
            address: 127.0.0.1
            port: {sshd.port}
            groups: [infra]
          dead:
            address: 127.0.0.1
            port: {dead_port}
            groups: [infra]
        """)
    (tmp_path / "org" / "inventory.yaml").write_text(inventory)
    org.extra_config = f"ssh:\n  known_hosts: {known}\n  connect_timeout: 5\n"
    org.save()
    (tmp_path / "org" / "inventory.yaml").write_text(inventory)
    env = {"OPSKIT_HOME": str(tmp_path / "home")}
    run = run_opskit("--config", org.config, "perms", "snapshot", "--json", env=env, timeout=120)
    assert run.exit_code == 3, run.output
    data = json.loads(run.stdout)
    assert [(i["name"], i["status"]) for i in data["items"]] == [
        ("app1", "ok"), ("live", "ok"), ("dead", "unreachable")]
    assert data["failed"] == ["dead"]
    group = run_opskit("--config", org.config, "perms", "snapshot", "--group", "app", env=env,
                       timeout=120)
    assert group.exit_code == 0, group.output
    assert group.stdout.splitlines()[0].endswith(json.loads(
        run_opskit("--config", org.config, "perms", "snapshots", "--json", env=env).stdout
    )[-1]["sha256"][:12])
    report = run_opskit("--config", org.config, "perms", "report", "--json", "--snapshot",
                        data["id"], env=env, timeout=120)
    assert report.exit_code == 1, report.output
    findings = json.loads(report.stdout)["findings"]
    failed = [f for f in findings if f["check"] == "collection-failed"]
    assert [(f["where"], f["rule"]) for f in failed] == [("dead", "R-AUD-2")]
    assert f"127.0.0.1:{dead_port}" in failed[0]["evidence"]
