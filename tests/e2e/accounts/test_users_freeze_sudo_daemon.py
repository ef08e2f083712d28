"""R-ACC-6: a root process the departing person started through sudo (`sudo setsid
...` from their SSH session) runs as root with no uid of theirs; where the login
uid is not recorded (no pam_loginuid, as with `UsePAM no` or in containers) only
sudo's SUDO_UID/SUDO_USER in its environment tie it to them. The freeze must end
it, or not certify 'complete' while it runs. Oracle: the real process table."""
import json
import os
import subprocess
import time

import pytest

from tests.harness.accounts import freeze_model, key_login
from tests.harness.sshd import generate_ed25519

pytestmark = pytest.mark.e2e


def root_daemons(marker: str) -> list[int]:
    """Live root processes whose command line holds ``marker``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        state = next(line.split()[1] for line in status.splitlines()
                     if line.startswith("State:"))
        if marker in cmdline and uids[0] == "0" and state != "Z":
            out.append(int(pid))
    return out


def test_a_root_daemon_they_started_through_sudo_is_ended(tmp_path, user_sshd, throwaway_login):
    login, server = throwaway_login, user_sshd
    key = str(tmp_path / "person_key")
    public = generate_ed25519(key, f"{login}@laptop")
    opskit = freeze_model(tmp_path, login, public, name="Daemon Starter")

    rule = f"/etc/sudoers.d/zz-test-{login}"
    marker = f"{4000 + int(login[-4:], 16) % 1000}.{os.getpid()}"      # a unique sleep
    try:
        # a sudo right the person held (given before the tenure began: no review item)
        with open(rule, "w") as fh:
            fh.write(f"{login} ALL=(root) NOPASSWD: /usr/bin/setsid\n")
        os.chmod(rule, 0o440)
        time.sleep(1.1)
        assert opskit("users", "apply", "--person", login).exit_code == 0
        subprocess.run(["chpasswd"], input=f"{login}:Tmp-{os.urandom(8).hex()}\n", text=True,
                       check=True)
        client = key_login(server, login, key)
        _, out, err = client.exec_command(
            f"sudo -n /usr/bin/setsid -f sleep {marker} </dev/null >/dev/null 2>&1; echo $?")
        assert out.read().decode().strip() == "0", err.read().decode()
        client.close()
        deadline = time.monotonic() + 5
        while not root_daemons(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert root_daemons(marker), "setup: the root daemon runs"

        frozen = opskit("users", "freeze", login, "--reason", "departure", "--json")
        cert = json.loads(frozen.stdout)
        time.sleep(0.5)
        alive = root_daemons(marker)
        assert not (cert["result"] == "complete" and alive), \
            f"certificate 'complete' but root process(es) {alive} they started through sudo run"
        assert not alive, cert["hosts"][0]["remaining"]
        assert any("sudo_uid=" in p for p in cert["hosts"][0]["found"]["processes"]), \
            cert["hosts"][0]["found"]["processes"]
    finally:
        if os.path.exists(rule):
            os.unlink(rule)
        for pid in root_daemons(marker):
            os.kill(pid, 9)
