"""R-ACC-6: a second account with the departing person's uid (`useradd -o -u UID`)
is the person under another name: anything logging in as it runs with their uid.
The freeze must not certify 'complete' while it can still log in. Oracle: a real
SSH login as the alias, and `id -u` there."""
import json
import os
import pwd
import subprocess
import time

import paramiko
import pytest

from tests.harness.accounts import freeze_model, key_login, remove_account
from tests.harness.sshd import generate_ed25519

pytestmark = pytest.mark.e2e


def uid_over_ssh(server, login, key):
    """The uid a real SSH login as ``login`` with ``key`` gets (None: refused)."""
    try:
        client = key_login(server, login, key)
    except paramiko.AuthenticationException:
        return None
    try:
        _, out, _ = client.exec_command("id -u")
        return int(out.read().decode().strip())
    finally:
        client.close()


def test_an_account_sharing_their_uid_blocks_a_complete_certificate(tmp_path, user_sshd,
                                                                     throwaway_login):
    login, server = throwaway_login, user_sshd
    alias = login.replace("opskit-t", "opskit-a")
    key = str(tmp_path / "person_key")
    public = generate_ed25519(key, f"{login}@laptop")
    other = str(tmp_path / "alias_key")
    other_public = generate_ed25519(other, "backup@nas")        # in no roster
    opskit = freeze_model(tmp_path, login, public, server, "Alias Maker")

    try:
        assert opskit("users", "apply", "--person", login).exit_code == 0
        entry = pwd.getpwnam(login)
        subprocess.run(["useradd", "-o", "-u", str(entry.pw_uid), "-g", str(entry.pw_gid),
                        "-m", "-s", "/bin/sh", alias], check=True)
        subprocess.run(["usermod", "-p", "*", alias], check=True)
        home = pwd.getpwnam(alias).pw_dir
        os.makedirs(f"{home}/.ssh", mode=0o700, exist_ok=True)
        with open(f"{home}/.ssh/authorized_keys", "w") as fh:
            fh.write(other_public + "\n")
        os.chmod(f"{home}/.ssh/authorized_keys", 0o600)
        for path in (f"{home}/.ssh", f"{home}/.ssh/authorized_keys"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        assert uid_over_ssh(server, alias, other) == entry.pw_uid, server.stderr()[-2000:]

        frozen = opskit("users", "freeze", login, "--reason", "departure", "--json")
        cert = json.loads(frozen.stdout)
        host = cert["hosts"][0]
        got = uid_over_ssh(server, alias, other)
        assert not (cert["result"] == "complete" and got == entry.pw_uid), \
            f"certificate 'complete' but a login as {alias} still runs with uid {got}"
        assert frozen.exit_code == 1 and cert["result"] == "incomplete", host
        assert any(alias in r and str(entry.pw_uid) in r for r in host["remaining"]), \
            host["remaining"]

        # a human removes the alias; the rerun certifies complete
        subprocess.run(["pkill", "-KILL", "-u", str(entry.pw_uid)], capture_output=True)
        time.sleep(0.2)
        subprocess.run(["userdel", "-r", "-f", alias], check=True, capture_output=True)
        again = opskit("users", "freeze", login, "--reason", "departure", "--json")
        cert2 = json.loads(again.stdout)
        # other test runs on this shared machine may leave setuid files in /tmp: the
        # freeze rightly lists those too; only ours must be gone
        assert [r for r in cert2["hosts"][0]["remaining"]
                if not r.startswith("setuid/setgid /tmp/") or login in r] == []
    finally:
        subprocess.run(["userdel", "-r", "-f", alias], capture_output=True)
        remove_account(alias)
