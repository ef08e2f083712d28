"""A drill that restores onto another host over SSH (real sshd), R-BAK-5."""
import json
import os

import pytest

from tests.harness.backup import BackupCli

pytestmark = pytest.mark.integration


def _config_with_host(cli, tmp_path, server):
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line)
    (tmp_path / "inventory.yaml").write_text(
        f"hosts:\n  standby:\n    address: 127.0.0.1\n    port: {server.port}\n"
        f"    user: {server.user}\n    key: {server.client_key}\n")
    text = open(cli.config).read()
    with open(cli.config, "w") as fh:
        fh.write(f"inventory: {tmp_path / 'inventory.yaml'}\nssh:\n  known_hosts: {known}\n" + text)


def test_drill_onto_a_host_verifies_the_copy_there_and_cleans_up(sshd, tmp_path):
    cli = BackupCli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"claims-{i}.csv").write_bytes(os.urandom(20_000 + i))
    cli.backup(src)
    _config_with_host(cli, tmp_path, sshd)
    run = cli("drill", "--all", "--target-host", "standby", "--json")
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["passed"] and report["target_host"] == "standby"
    assert report["host_files_verified"] == 12
    # the sshd "host" is this machine: its copy must have been removed again
    assert report["host_dir"].startswith("/tmp/opskit-drill-on-host-")
    assert not os.path.exists(report["host_dir"])


def test_drill_onto_an_unreachable_host_fails_with_the_cause(dead_port, tmp_path):
    cli = BackupCli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    cli.backup(src)
    (tmp_path / "inventory.yaml").write_text(
        f"hosts:\n  gone:\n    address: 127.0.0.1\n    port: {dead_port}\n")
    text = open(cli.config).read()
    with open(cli.config, "w") as fh:
        fh.write(f"inventory: {tmp_path / 'inventory.yaml'}\nssh:\n  connect_timeout: 2\n" + text)
    run = cli("drill", "--all", "--target-host", "gone", "--json")
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert not report["passed"] and "gone" in report["failures"][0]["path"]
