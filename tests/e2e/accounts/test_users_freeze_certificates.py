"""R-ACC-6: a departing person who logs in with an SSH *certificate* (a key signed
by a CA that other accounts trust) keeps access through any account that accepts
their principal -- a `cert-authority,principals="LOGIN"` line in that account's
authorized_keys, or a line `LOGIN` in its AuthorizedPrincipalsFile. The person's
own key blob appears nowhere, so the freeze must look at principals. Oracle: a
real OpenSSH client logging in with the certificate to a real sshd."""
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import time

import pytest

from tests.harness.accounts import freeze_model, remove_account, start_user_sshd
from tests.harness.sshd import generate_ed25519

pytestmark = pytest.mark.e2e


def cert_login(server, login, key) -> bool:
    """A real `ssh` login as ``login`` with ``key`` and its ``key-cert.pub``."""
    got = subprocess.run(
        ["ssh", "-i", key, "-o", f"CertificateFile={key}-cert.pub", "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={server.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
         "-p", str(server.port), f"{login}@{server.address}", "id -un"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    return got.returncode == 0 and got.stdout.strip() == login


def _service_account(login, ca_line=None):
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", login], check=True)
    subprocess.run(["usermod", "-p", "*", login], check=True)
    entry = pwd.getpwnam(login)
    ssh = os.path.join(entry.pw_dir, ".ssh")
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    if ca_line:
        with open(os.path.join(ssh, "authorized_keys"), "w") as fh:
            fh.write(ca_line)
        os.chmod(os.path.join(ssh, "authorized_keys"), 0o600)
    for path in (ssh, *(os.path.join(ssh, n) for n in os.listdir(ssh))):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return entry


@pytest.mark.parametrize("how", ["cert-authority-line", "principals-file"])
def test_a_certificate_principal_in_another_account_is_closed(tmp_path, throwaway_login, how):
    login = throwaway_login
    service = login.replace("opskit-t", "opskit-s")
    key = str(tmp_path / "person_key")
    public = generate_ed25519(key, f"{login}@laptop")
    ca = str(tmp_path / "ca")
    ca_public = generate_ed25519(ca, "ca@corp").strip()
    subprocess.run(["ssh-keygen", "-q", "-s", ca, "-I", login, "-n", login, "-V", "-1m:+1h",
                    key + ".pub"], check=True, capture_output=True)
    assert os.path.exists(key + "-cert.pub")
    # sshd reads principals files as the target user, and StrictModes wants every
    # directory above root's and not writable by others: not under /tmp
    principals = pathlib.Path(f"/etc/ssh/opskit-test-principals-{login}")
    overrides = {}
    if how == "principals-file":
        (tmp_path / "ca.pub").write_text(ca_public + "\n")
        principals.mkdir(mode=0o755)
        overrides["TrustedUserCAKeys"] = str(tmp_path / "ca.pub")
        overrides["AuthorizedPrincipalsFile"] = f"{principals}/%u"
    ca_line = (f'cert-authority,principals="alice,{login}" {ca_public}\n'
               if how == "cert-authority-line" else None)
    server = None
    try:
        _service_account(service, ca_line)
        if how == "principals-file":
            (principals / service).write_text(f"alice\n{login}\n")
        server = start_user_sshd(str(tmp_path / "sshd"), overrides)
        opskit = freeze_model(tmp_path, login, public, server, "Cert Holder")

        time.sleep(1.1)   # the CA's lines were there before the tenure began (no review)
        assert opskit("users", "apply", "--person", login).exit_code == 0
        assert cert_login(server, service, key), \
            f"setup: the certificate must open {service}\n{server.stderr()[-2000:]}"

        frozen = opskit("users", "freeze", login, "--reason", "departure", "--json")
        cert = json.loads(frozen.stdout)
        still_open = cert_login(server, service, key)
        assert not (cert["result"] == "complete" and still_open), \
            f"certificate 'complete' but {login}'s certificate still logs in as {service}"
        host = cert["hosts"][0]
        assert not still_open, host["remaining"]
        # other test runs on this shared machine may leave setuid files in /tmp: the
        # freeze rightly lists those too; only ours must be gone
        assert [r for r in host["remaining"]
                if not r.startswith("setuid/setgid /tmp/") or login in r] == []
        assert list(host["found"]["keys_in_other_accounts"].values()) == [1], host["found"]
        assert any("certificate principal" in d if how == "principals-file" else "key line" in d
                   for d in host["done"]), host["done"]
        assert cert_login(server, login, key) is False      # their own account: expired
        # the other principal keeps their access
        if how == "cert-authority-line":
            keys = open(os.path.join(pwd.getpwnam(service).pw_dir, ".ssh/authorized_keys")).read()
            assert f'principals="alice" {ca_public}' in keys, keys
        else:
            assert (principals / service).read_text() == "alice\n"
    finally:
        if server is not None:
            server.stop()
        remove_account(service)
        shutil.rmtree(principals, ignore_errors=True)
