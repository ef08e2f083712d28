"""R-ACC-6: a `Match User` block in sshd_config may give one account its own
AuthorizedKeysFile (a shared service account's keys kept under /etc/ssh). The
person's key there opens that account; `sshd -T` without `-C` never shows the
file. The freeze must evaluate Match per account. Oracle: a real SSH login."""
import json
import os
import shutil
import subprocess
import time

import pytest

from tests.harness.accounts import can_key_login, freeze_model, remove_account, start_user_sshd
from tests.harness.sshd import generate_ed25519

pytestmark = pytest.mark.e2e


def test_a_key_in_a_match_user_keys_file_is_found_and_closed(tmp_path, throwaway_login):
    login = throwaway_login
    service = login.replace("opskit-t", "opskit-m")
    key = str(tmp_path / "person_key")
    public = generate_ed25519(key, f"{login}@laptop")
    keys_dir = f"/etc/ssh/opskit-test-keys-{login}"          # root's, as StrictModes wants
    server = None
    try:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", service], check=True)
        subprocess.run(["usermod", "-p", "*", service], check=True)
        os.makedirs(keys_dir, mode=0o755)
        with open(f"{keys_dir}/{service}", "w") as fh:
            fh.write(f"{public.rsplit(' ', 1)[0]} deploy\n")    # their key, another comment
        server = start_user_sshd(str(tmp_path / "sshd"), {
            "Match": f"User {service}\n    AuthorizedKeysFile {keys_dir}/%u"})
        opskit = freeze_model(tmp_path, login, public, server, "Match Holder")

        time.sleep(1.1)         # the service's keys were there before the tenure began
        assert opskit("users", "apply", "--person", login).exit_code == 0
        assert can_key_login(server, service, key), server.stderr()[-2000:]

        frozen = opskit("users", "freeze", login, "--reason", "departure", "--json")
        cert = json.loads(frozen.stdout)
        host = cert["hosts"][0]
        still = can_key_login(server, service, key)
        assert not (cert["result"] == "complete" and still), \
            f"certificate 'complete' but their key still logs in as {service}"
        assert not still, host["remaining"]
        # other test runs on this shared machine may leave setuid files in /tmp: the
        # freeze rightly lists those too; only ours must be gone
        assert [r for r in host["remaining"]
                if not r.startswith("setuid/setgid /tmp/") or login in r] == []
        assert host["found"]["keys_in_other_accounts"] == {f"{keys_dir}/{service}": 1}
        assert any(service in p and "refused" in p for p in host["login_probes"])
    finally:
        if server is not None:
            server.stop()
        remove_account(service)
        shutil.rmtree(keys_dir, ignore_errors=True)
