"""Issue #20 item 8: a transfer ends, on a host where the account stays, the person's
processes that still hold a group of the old post (a running process keeps the groups
it started with), and leaves their other processes alone -- on this very machine, with
a real account, under an approved, signed transfer request (R-ACC-6, R-ACC-3)."""
import grp
import json
import os
import pwd
import secrets
import subprocess
import time

import pytest

from tests.harness.accounts import write_model
from tests.harness.cli import run_opskit
from tests.harness.signing import key_file, with_signing_keys

pytestmark = pytest.mark.e2e


def roles(group: str) -> str:
    return f"""\
roles:
  old-role: {{tier: operator, linux: {{groups: [{group}]}}}}
  new-role: {{tier: operator}}
  viewer: {{tier: query}}
  maint: {{tier: admin}}
posts:
  old-post: {{roles: [old-role], host_groups: [all]}}
  new-post: {{roles: [new-role], host_groups: [all]}}
  desk: {{roles: [viewer], host_groups: []}}
  maintainer: {{roles: [maint], host_groups: []}}
separation_of_duties: {{}}   # one post each here; nothing to separate
"""


@pytest.fixture
def old_group():
    name = f"opskit-g{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


def holds(pid: int, gid: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        groups = [line.split()[1:] for line in fh if line.startswith("Groups:")][0]
    return str(gid) in groups


def test_transfer_ends_processes_holding_a_removed_group_only(tmp_path, throwaway_login,
                                                              old_group):
    login = throwaway_login
    roster = (f"people:\n  {login}:\n    post: old-post\n  head:\n    post: desk\n"
              "  boss:\n    post: desk\n  admin1:\n    post: maintainer\n")
    config = write_model(tmp_path / "cfg", with_signing_keys(roster, skip=(login,)),
                         "hosts:\n  here:\n    groups: [real]\n",
                         "  requesters: [head]\n  approvers: [boss]\n"
                         "  access_admins: [admin1]\n")
    (tmp_path / "cfg" / "roles.yaml").write_text(roles(old_group))
    env = {"OPSKIT_HOME": str(tmp_path / "home")}

    def opskit(*args, who=None):
        key = key_file(tmp_path / "keys", who) if who else ""
        return run_opskit("--config", config, *args, env={**env, "OPSKIT_SIGNING_KEY": key},
                          timeout=180)

    assert opskit("users", "apply", "--person", login).exit_code == 0
    gid = grp.getgrnam(old_group).gr_gid
    assert login in grp.getgrnam(old_group).gr_mem
    user = pwd.getpwnam(login)
    with_group = subprocess.Popen(["runuser", "-u", login, "--", "sleep", "600"])
    without = subprocess.Popen(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                                "--clear-groups", "sleep", "600"])
    try:
        time.sleep(0.5)
        assert holds(with_group.pid, gid) and not holds(without.pid, gid)
        req = opskit("access", "request", "--person", login, "--transfer-to", "new-post",
                     "--reason", "reorganisation", "--json", who="head")
        assert req.exit_code == 0, req.output
        rid = json.loads(req.stdout)["id"]
        assert opskit("access", "approve", rid, who="boss").exit_code == 0
        dry = opskit("users", "transfer", login, "--to-post", "new-post", "--dry-run")
        assert dry.exit_code == 0 and "end-processes" in dry.stdout, dry.output
        assert with_group.poll() is None                     # a dry run ends nothing
        run = opskit("users", "transfer", login, "--to-post", "new-post", "--request", rid,
                     "--json", who="admin1")
        assert run.exit_code == 0, run.output
        steps = [s for h in json.loads(run.stdout)["hosts"] for s in h["plan"]["steps"]]
        assert [s["result"] for s in steps if s["action"] == "end-processes"] == ["ok"]
        # runuser (root) reports its child, which held the old post's group, killed (128+9)
        assert with_group.wait(timeout=10) == 137
        assert without.poll() is None                        # never held it: left alone
        assert login not in grp.getgrnam(old_group).gr_mem
    finally:
        for proc in (with_group, without):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert os.path.exists(tmp_path / "home")
