"""Issue #20: a departing insider who holds sudo plants every way back they can
think of, then `opskit users freeze` runs on this very machine against a real
sshd (root key logins allowed, authorized_keys and authorized_keys2 read, as
shipped) and a real PostgreSQL. Afterwards every channel is closed or listed,
real SSH logins -- as the person and as root with the planted key -- fail, and
the certificate matches reality: 'incomplete' (exit 1) while a root-owned plant
is left for a human, 'complete' once it is handled and reviewed."""
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


def can_login(server, login, key_path) -> bool:
    try:
        connect(server, login, key_path).close()
        return True
    except paramiko.AuthenticationException:
        return False


def alive(proc) -> bool:
    return proc.poll() is None


@pytest.fixture
def plants():
    """Paths and processes the insider plants; all removed afterwards, whatever happens."""
    made = {"files": [], "procs": [], "root_keys": None}
    root_keys = "/root/.ssh/authorized_keys"
    made["root_keys_before"] = open(root_keys).read() if os.path.exists(root_keys) else None
    try:
        yield made
    finally:
        for proc in made["procs"]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for path in made["files"]:
            if os.path.lexists(path):
                os.unlink(path)
        if made["root_keys_before"] is None:
            if os.path.exists(root_keys):
                os.unlink(root_keys)
        else:
            with open(root_keys, "w") as fh:
                fh.write(made["root_keys_before"])


def test_an_insiders_plants_are_all_closed_or_listed(tmp_path, insider_sshd, throwaway_login,
                                                     postgres, plants):
    login, server = throwaway_login, insider_sshd
    key = str(tmp_path / "person_key")
    public = generate_ed25519(key, f"{login}@laptop")
    second = str(tmp_path / "second_key")
    second_public = generate_ed25519(second, "innocent@elsewhere")   # in no roster
    roster = (f"people:\n  {login}:\n    name: Insider\n    roles: [e2e-role]\n"
              f"    host_groups: [all]\n    ssh_keys:\n      - {public}\n")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(postgres.password + "\n")
    os.chmod(pgpass, 0o600)
    inventory = ("hosts:\n  here:\n    groups: [real]\n    vars:\n"
                 f"      sshd_config: {server.workdir}/sshd_config\n"
                 f"      ssh_login_probe: 127.0.0.1:{server.port}\n"
                 f"      ssh_login_probe_known_hosts: {server.known_hosts}\n")
    extra = (f"perms:\n  databases:\n    claims:\n      host: {postgres.host}\n"
             f"      port: {postgres.port}\n      user: {postgres.superuser}\n"
             f"      dbname: postgres\n      password_file: {pgpass}\n")
    config = write_model(tmp_path / "cfg", roster, inventory, extra)
    env = {"OPSKIT_HOME": str(tmp_path / "home")}

    def opskit(*args):
        return run_opskit("--config", config, *args, env=env, timeout=180)

    assert opskit("users", "apply", "--person", login).exit_code == 0
    subprocess.run(["chpasswd"], input=f"{login}:Tmp-{os.urandom(8).hex()}\n", text=True,
                   check=True)
    uid = pwd.getpwnam(login).pw_uid
    home = pwd.getpwnam(login).pw_dir
    time.sleep(1.1)            # the plants come after the tenure began (home's time)

    # --- the insider, with sudo, plants every channel -----------------------------
    os.makedirs("/root/.ssh", mode=0o700, exist_ok=True)
    with open("/root/.ssh/authorized_keys", "a") as fh:             # root login, own key
        fh.write(f"{public.rsplit(' ', 1)[0]} backup@nas\n")
    os.chmod("/root/.ssh/authorized_keys", 0o600)
    keys2 = f"{home}/.ssh/authorized_keys2"                          # a second key file
    with open(keys2, "w") as fh:
        fh.write(second_public + "\n")
    os.chown(keys2, uid, uid)
    cron = f"/etc/cron.d/{login}-sync"                                # root cron job
    with open(cron, "w") as fh:
        fh.write("*/5 * * * * root /usr/bin/true\n")
    shell = f"/tmp/.{login}-sh"                                       # setuid-root shell
    subprocess.run(["cp", "/bin/bash", shell], check=True)
    os.chmod(shell, 0o4755)
    sudo_uid = f"/etc/sudoers.d/{login}~uid"                          # sudo reads '~' inside
    sudo_alias = f"/etc/sudoers.d/{login.replace('-', '_')}_alias"
    for path, text in ((sudo_uid, f"#{uid} ALL=(ALL) NOPASSWD: ALL\n"),
                       (sudo_alias, f"User_Alias INSIDERS = {login}, root\n"
                                    "INSIDERS ALL=(ALL) NOPASSWD: /usr/bin/id\n")):
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o440)
    plants["files"] += [cron, shell, sudo_uid, sudo_alias]
    # a root daemon started through sudo from their session: login uid is theirs
    plants["procs"].append(subprocess.Popen(
        ["sh", "-c", f"echo {uid} > /proc/self/loginuid && exec sleep 600"],
        start_new_session=True))
    # their setuid shell, run by them: real uid theirs, effective uid root
    plants["procs"].append(subprocess.Popen(
        ["runuser", "-u", login, "--", shell, "-p", "-c", "exec sleep 601"],
        start_new_session=True))
    postgres.psql(f"CREATE ROLE \"{login}\" LOGIN PASSWORD 'pw-{uid}'; "
                  f"GRANT pg_read_all_data TO \"{login}\"")
    time.sleep(0.5)

    # every door really is open before the freeze
    assert can_login(server, login, key) and can_login(server, login, second)
    assert can_login(server, "root", key), "the planted root key logs in"
    assert "NOPASSWD: ALL" in subprocess.run(["sudo", "-l", "-U", login], capture_output=True,
                                             text=True).stdout
    assert all(alive(p) for p in plants["procs"])
    postgres.psql("SELECT 1", user=login, password=f"pw-{uid}")

    frozen = opskit("users", "freeze", login, "--reason", "departure", "--json")
    assert frozen.exit_code == 1, frozen.output
    cert = json.loads(frozen.stdout)
    host = cert["hosts"][0]
    assert cert["result"] == "incomplete" and host["verified"] is False
    remaining = "\n".join(host["remaining"])
    # what opskit must not touch (root's files) is listed, not silently passed
    assert shell in remaining and cron in remaining, remaining
    # everything else is closed ...
    for word in ("process", "sudo right", "sudo -l", "authorized keys file", "key line",
                 "ACCEPTED"):
        assert word not in remaining, (word, remaining)
    assert host["found"]["keys_in_other_accounts"] == {"/root/.ssh/authorized_keys": 1}
    assert keys2 in host["found"]["authorized_keys"]
    assert len(host["found"]["processes"]) >= 2
    assert any(f"{login} " in p or "sleep" in p for p in host["found"]["processes"])
    # ... and really so, checked here from outside
    assert not can_login(server, login, key) and not can_login(server, login, second)
    assert not can_login(server, "root", key), "the root door is shut"
    assert host["login_probes"] and all("refused" in p for p in host["login_probes"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in plants["procs"]):
        time.sleep(0.1)
    assert not any(alive(p) for p in plants["procs"]), "a process with their uid survived"
    out = subprocess.run(["sudo", "-l", "-U", login], capture_output=True, text=True).stdout
    assert "may run the following" not in out, out
    assert open(sudo_alias).read().startswith("User_Alias INSIDERS = root\n")
    db = cert["databases"][0]
    assert db["verified"] is True and "ALTER ROLE NOLOGIN" in db["done"], db
    with pytest.raises(AssertionError):
        postgres.psql("SELECT 1", user=login, password=f"pw-{uid}")
    assert postgres.psql(f"SELECT count(*) FROM pg_auth_members m JOIN pg_roles r "
                         f"ON r.oid = m.member WHERE r.rolname = '{login}'") == "0"
    assert not os.path.exists(f"{home}/.ssh/authorized_keys")
    evidence = f"/var/lib/opskit/frozen/{login}"
    assert oct(os.stat(evidence).st_mode & 0o777) == "0o700"

    # a human removes root's plants and reviews the rest: now the certificate is complete
    os.unlink(shell)
    os.unlink(cron)
    reviewed = [r.split()[1].rstrip(":") for r in host["remaining"] if r.startswith("review ")]
    again = opskit("users", "freeze", login, "--reason", "departure", "--json",
                   *[arg for path in reviewed for arg in ("--reviewed", path)])
    cert2 = json.loads(again.stdout)
    # other test runs on this shared machine may make setuid files or touch /etc
    # meanwhile: the freeze rightly lists those too; only ours must be gone
    left = [r for r in cert2["hosts"][0]["remaining"]
            if not r.startswith(("review ", "setuid/setgid /tmp/pt-")) or login in r
            or "/root/.ssh" in r]
    assert left == [], left
    if again.exit_code == 0:
        assert cert2["result"] == "complete"
