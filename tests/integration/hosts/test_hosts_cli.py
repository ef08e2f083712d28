"""`opskit hosts list|ping|trust` as a user runs them, against real sshd servers."""
import json
import os
import textwrap

import pytest

from tests.harness.cli import run_opskit

pytestmark = pytest.mark.integration


def make_config(tmp_path, servers, *, dead_port=None, known_hosts=None, extra_hosts=""):
    """opskit.yaml + inventory.yaml: s0..sN on the servers, 'dead' on a closed port."""
    if known_hosts is None:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("".join(s.known_hosts_line for s in servers))
    lines = ["defaults:", f"  key: {servers[0].client_key}", f"  user: {servers[0].user}",
             "hosts:"]
    for i, server in enumerate(servers):
        lines += [f"  s{i}:", "    address: 127.0.0.1", f"    port: {server.port}",
                  "    groups: [live]"]
    if dead_port:
        lines += ["  dead:", "    address: 127.0.0.1", f"    port: {dead_port}"]
    (tmp_path / "inventory.yaml").write_text("\n".join(lines) + "\n" + extra_hosts)
    config = tmp_path / "opskit.yaml"
    config.write_text(textwrap.dedent(f"""\
        inventory: inventory.yaml
        ssh:
          known_hosts: {known_hosts}
          connect_timeout: 5
    """))
    return str(config)


def test_ping_three_live_one_dead_json(three_sshd, dead_port, tmp_path):
    cfg = make_config(tmp_path, three_sshd, dead_port=dead_port)
    run = run_opskit("--config", cfg, "hosts", "ping", "--json")
    assert run.exit_code == 3, run.output
    data = json.loads(run.stdout)
    rows = {r["host"]: r for r in data["hosts"]}
    assert [r["host"] for r in data["hosts"]] == ["s0", "s1", "s2", "dead"]
    assert (data["ok"], data["failed"]) == (3, 1)
    for i, server in enumerate(three_sshd):
        row = rows[f"s{i}"]
        assert row["ok"] and row["status"] == "ok" and row["node"]
        assert row["address"] == f"127.0.0.1:{server.port}"
        assert row["latency_ms"] > 0
    dead = rows["dead"]
    assert not dead["ok"] and dead["status"] == "unreachable" and dead["latency_ms"] is None
    assert f"dead (127.0.0.1:{dead_port}): cannot connect" in dead["detail"]


def test_ping_table_lists_every_host(three_sshd, dead_port, tmp_path):
    cfg = make_config(tmp_path, three_sshd, dead_port=dead_port)
    run = run_opskit("--config", cfg, "hosts", "ping")
    assert run.exit_code == 3, run.output
    lines = run.stdout.splitlines()
    assert lines[0].split()[:4] == ["HOST", "ADDRESS", "STATUS", "LATENCY"]
    body = {line.split()[0]: line for line in lines[2:] if line.strip() and
            line.split()[0] in ("s0", "s1", "s2", "dead")}
    assert sorted(body) == ["dead", "s0", "s1", "s2"]
    assert " unreachable " in body["dead"] and "Connection refused" in body["dead"]
    for name in ("s0", "s1", "s2"):
        assert " ok " in body[name]
    assert "ping: 3 of 4 host(s) ok; failed: dead" in run.stdout


def test_ping_only_live_hosts_exits_0(three_sshd, dead_port, tmp_path):
    cfg = make_config(tmp_path, three_sshd, dead_port=dead_port)
    by_group = run_opskit("--config", cfg, "hosts", "ping", "--group", "live", "--json")
    assert by_group.exit_code == 0, by_group.output
    assert [r["host"] for r in json.loads(by_group.stdout)["hosts"]] == ["s0", "s1", "s2"]
    by_name = run_opskit("--config", cfg, "hosts", "ping", "--hosts", "s2,s0")
    assert by_name.exit_code == 0, by_name.output
    (tmp_path / "live").mkdir()
    live_only = make_config(tmp_path / "live", three_sshd)
    whole = run_opskit("--config", live_only, "hosts", "ping")
    assert whole.exit_code == 0, whole.output
    assert "ping: 3 of 3 host(s) ok" in whole.stdout


def test_ping_unknown_host_or_group_is_usage_error(three_sshd, tmp_path):
    cfg = make_config(tmp_path, three_sshd)
    run = run_opskit("--config", cfg, "hosts", "ping", "--hosts", "s0,nosuch")
    assert run.exit_code == 2
    assert "unknown host 'nosuch'" in run.stderr and "s0, s1, s2" in run.stderr
    run = run_opskit("--config", cfg, "hosts", "ping", "--group", "nogroup")
    assert run.exit_code == 2 and "unknown group 'nogroup'" in run.stderr


def test_ping_reports_untrusted_host_key_with_fingerprint(sshd, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cfg = make_config(tmp_path, [sshd], known_hosts=empty)
    run = run_opskit("--config", cfg, "hosts", "ping")
    assert run.exit_code == 3, run.output
    assert "host key rejected" in run.stdout and sshd.host_fingerprint in run.stdout
    assert "hint: " in run.stdout and "opskit hosts trust s0" in run.stdout
    assert empty.read_text() == ""


def test_bad_inventory_is_exit_2_with_file_and_line(tmp_path):
    (tmp_path / "inventory.yaml").write_text("hosts:\n  a:\n    address: x\n    prot: 22\n")
    (tmp_path / "opskit.yaml").write_text("operator: test\n")
    run = run_opskit("--config", str(tmp_path / "opskit.yaml"), "hosts", "list")
    assert run.exit_code == 2
    assert f"{tmp_path / 'inventory.yaml'}:4: key 'hosts.a.prot': unknown key 'prot'" in run.stderr


def test_list_without_any_config_is_localhost(tmp_path):
    run = run_opskit("hosts", "list", "--json", cwd=str(tmp_path))
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert data["inventory"] is None
    assert [h["name"] for h in data["hosts"]] == ["localhost"]
    assert data["hosts"][0]["address"] == "local"


def test_list_table_and_group_filter(three_sshd, dead_port, tmp_path):
    cfg = make_config(tmp_path, three_sshd, dead_port=dead_port)
    run = run_opskit("--config", cfg, "hosts", "list")
    assert run.exit_code == 0, run.output
    assert f"127.0.0.1:{dead_port}" in run.stdout and "live" in run.stdout
    run = run_opskit("--config", cfg, "hosts", "list", "--group", "live", "--json")
    assert [h["name"] for h in json.loads(run.stdout)["hosts"]] == ["s0", "s1", "s2"]


def test_ping_localhost_without_config(tmp_path):
    run = run_opskit("hosts", "ping", cwd=str(tmp_path))
    assert run.exit_code == 0, run.output
    assert "localhost" in run.stdout and " ok " in run.stdout


# --- trust ------------------------------------------------------------------------------

def test_trust_with_fingerprint_records_then_ping_works(sshd, tmp_path):
    known = tmp_path / "kh" / "known_hosts"
    cfg = make_config(tmp_path, [sshd], known_hosts=known)
    wrong = run_opskit("--config", cfg, "hosts", "trust", "s0",
                       "--fingerprint", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert wrong.exit_code == 3 and sshd.host_fingerprint in wrong.stderr
    assert not known.exists()
    no_tty = run_opskit("--config", cfg, "hosts", "trust", "s0", input="")
    assert no_tty.exit_code == 2 and sshd.host_fingerprint in no_tty.stderr
    assert not known.exists()
    run = run_opskit("--config", cfg, "hosts", "trust", "s0", "--fingerprint",
                     sshd.host_fingerprint)
    assert run.exit_code == 0, run.output
    assert "recorded" in run.stdout and sshd.host_fingerprint in run.stdout
    assert known.read_text() == sshd.known_hosts_line
    assert os.stat(known).st_mode & 0o777 == 0o600
    again = run_opskit("--config", cfg, "hosts", "trust", "s0", "--yes", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["state"] == "already trusted"
    assert known.read_text() == sshd.known_hosts_line
    ping = run_opskit("--config", cfg, "hosts", "ping")
    assert ping.exit_code == 0, ping.output


def test_trust_refuses_changed_key(sshd, tmp_path):
    from tests.harness.sshd import generate_ed25519

    other = " ".join(generate_ed25519(str(tmp_path / "other"), "x").split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(f"{sshd.key_name} {other}\n")
    cfg = make_config(tmp_path, [sshd], known_hosts=known)
    run = run_opskit("--config", cfg, "hosts", "trust", "s0", "--yes")
    assert run.exit_code == 3
    assert "HOST KEY CHANGED" in run.stderr and "ssh-keygen -R" in run.stderr
    assert known.read_text() == f"{sshd.key_name} {other}\n"
