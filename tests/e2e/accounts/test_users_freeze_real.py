"""The R-ACC-6 freeze on this very machine: a real throwaway account, created by
`opskit users apply`, logs in over SSH with its own key and keeps a session open;
`opskit users freeze` ends that session, and a new login is refused. The account is
removed afterwards whatever happens (tests/harness/accounts.py: throwaway_login)."""
import json
import os
import pwd
import subprocess
import time

import paramiko
import pytest

from tests.harness.accounts import key_login, write_model
from tests.harness.cli import run_opskit
from tests.harness.sshd import generate_ed25519

pytestmark = pytest.mark.e2e


connect = key_login


def test_real_account_login_freeze_session_ended_login_refused(tmp_path, user_sshd,
                                                               throwaway_login):
    login = throwaway_login
    key = str(tmp_path / "person_key")
    public = generate_ed25519(key, f"{login}@test")
    roster = (f"people:\n  {login}:\n    name: Throwaway Tester\n    roles: [e2e-role]\n"
              f"    host_groups: [all]\n    ssh_keys:\n      - {public}\n")
    config = write_model(tmp_path / "cfg", roster, "hosts:\n  here:\n    groups: [real]\n")
    env = {"OPSKIT_HOME": str(tmp_path / "home")}

    def opskit(*args):
        return run_opskit("--config", config, *args, env=env, timeout=120)

    applied = opskit("users", "apply", "--person", login)
    assert applied.exit_code == 0, applied.output
    entry = pwd.getpwnam(login)
    assert entry.pw_shell == "/bin/bash"
    with open("/etc/shadow") as fh:
        shadow = next(line.split(":") for line in fh if line.startswith(login + ":"))
    assert shadow[2] == "0", "a new account must change its password at first login"
    assert os.path.exists(f"/etc/sudoers.d/opskit-{login}")
    assert opskit("users", "plan", "--person", login).stdout.count("nothing to do") == 1

    # The person's first login: they set a password (what 'chage -d 0' demands).
    # Done here with chpasswd; with UsePAM no, sshd would otherwise insist on the change.
    subprocess.run(["chpasswd"], input=f"{login}:Tmp-{os.urandom(8).hex()}\n", text=True,
                   check=True)

    client = connect(user_sshd, login, key)
    _, out, _ = client.exec_command("id -un")
    assert out.read().decode().strip() == login
    session = client.get_transport().open_session()
    session.exec_command("sleep 300")
    time.sleep(0.5)
    assert not session.exit_status_ready()

    frozen = opskit("users", "freeze", login, "--reason", "departure", "--ticket", "HR-42",
                    "--json")
    assert frozen.exit_code == 0, frozen.output
    cert = json.loads(frozen.stdout)
    host = cert["hosts"][0]
    assert cert["result"] == "complete" and host["verified"] is True, host
    assert any("sleep" in p for p in host["found"]["processes"]), host["found"]
    assert any("end live sessions" in d for d in host["done"])
    assert os.path.exists(cert["certificate_file"])

    # the open session was ended
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.get_transport().is_active() \
            and not session.exit_status_ready():
        time.sleep(0.1)
    assert not client.get_transport().is_active() or session.exit_status_ready(), \
        "the open SSH session survived the freeze"
    client.close()

    # a new login is refused
    with pytest.raises(paramiko.AuthenticationException):
        connect(user_sshd, login, key).close()
    log = user_sshd.stderr()
    assert f"User {login} not allowed because account is locked" in log \
        or f"Account {login} has expired" in log or "has expired" in log, log[-2000:]
    entry = pwd.getpwnam(login)
    assert entry.pw_shell.endswith("nologin")
    assert not os.path.exists(f"/etc/sudoers.d/opskit-{login}")

    audit = (tmp_path / "home" / "audit" / "audit.log").read_text().strip().splitlines()
    last = json.loads(audit[-1])
    assert last["command"] == "users freeze" and last["details"]["rule"] == "R-ACC-6"
    assert last["details"]["certificate"]["hosts"][0]["verified"] is True
