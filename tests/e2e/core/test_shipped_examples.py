"""#22 item 4: the shipped example configs are clean out of the box -- every SSH key in
the example roster is one ssh-keygen accepts, the roster/roles/opskit.yaml load, and
provisioning the example roster on a fresh host gives a clean `users plan` (nothing
needing attention, nothing left to do after apply) with every installed key one the
roster declares (no 'undeclared key' finding of its own)."""
import json
import os
import subprocess

import pytest

from opskit.core.shipped import shipped_path
from tests.harness.accounts import make_userdb_root
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e

CONFIGS = shipped_path("configs")


def test_every_key_of_the_example_roster_is_accepted_by_ssh_keygen(tmp_path):
    from opskit.accounts.declared import load_declared
    from opskit.settings import load_config
    roster = load_declared(load_config(os.path.join(CONFIGS, "opskit.yaml")))
    lines = [k for p in roster.people.values() for k in p.ssh_keys]
    assert lines, "the example shows at least one key"
    for i, line in enumerate(lines):
        path = tmp_path / f"k{i}.pub"
        path.write_text(line + "\n")
        run = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, (line, run.stderr)


def test_the_example_roster_provisions_cleanly(tmp_path):
    root = make_userdb_root(tmp_path / "host")
    (tmp_path / "inventory.yaml").write_text(
        f"hosts:\n  h1:\n    sysroot: {root}\n    groups: [db, app, core]\n")
    config = tmp_path / "opskit.yaml"
    config.write_text(f"inventory: inventory.yaml\naccounts:\n"
                      f"  roster: {os.path.join(CONFIGS, 'roster.yaml')}\n"
                      f"  roles: {os.path.join(CONFIGS, 'roles.yaml')}\n"
                      # the example grants admin-tier rights: the two-person review of
                      # 'users apply' (R-SEC-2) is tested in test_highrisk_cli, not here
                      "incidents:\n  high_risk_operations: []\n")
    env = {"OPSKIT_HOME": str(tmp_path / "home")}

    def opskit(*args):
        return run_opskit("--config", str(config), *args, env=env, timeout=120)

    first = opskit("users", "plan", "--json")
    assert first.exit_code == 0, first.output                 # nothing needs attention
    assert not [n for h in json.loads(first.stdout)["hosts"] for n in h["notes"]
                if n.get("attention")]
    assert opskit("users", "apply").exit_code == 0
    again = opskit("users", "plan", "--json")
    assert again.exit_code == 0, again.output
    assert [h["steps"] for h in json.loads(again.stdout)["hosts"]] == [[]]
    from opskit.perms.linux import parse_key_line
    with open(os.path.join(root, "home", "zhang.wei", ".ssh", "authorized_keys")) as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()
                 and not line.startswith("#")]
    parsed = [parse_key_line(line) for line in lines]
    assert parsed and all(p and p["fingerprint"].startswith("SHA256:") for p in parsed)
