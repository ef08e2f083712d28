"""Account databases and sshd servers for `opskit users` tests (docs/accounts.md).

``make_userdb_root(dir)`` builds a minimal sysroot for shadow-utils' --prefix:
/etc/passwd, shadow, group, gshadow (root, daemon, nobody and a few groups)
and this machine's /etc/login.defs. ``userdb_root`` is the fixture form.

``user_sshd`` starts a dedicated OpenSSH server that, unlike the shared
``sshd`` fixture (one AuthorizedKeysFile for everybody), reads each user's own
``~/.ssh/authorized_keys`` with StrictModes on, so a real account's own key
decides whether it may log in -- what the freeze end-to-end test needs.
``throwaway_login`` yields a login name that does not exist on this machine
and, whatever happens in the test, removes the account, its home, sudoers
drop-in and processes afterwards.
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time

import pytest


PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""
SHADOW = """\
root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
"""
GROUP = """\
root:x:0:
daemon:x:1:
adm:x:4:
sudo:x:27:
users:x:100:
nogroup:x:65534:
"""


def make_userdb_root(root) -> str:
    """A minimal account database under ``root`` (created); returns its path."""
    root = str(root)
    etc = os.path.join(root, "etc")
    os.makedirs(etc, exist_ok=True)
    os.makedirs(os.path.join(root, "home"), exist_ok=True)
    for name, text, mode in (("passwd", PASSWD, 0o644), ("shadow", SHADOW, 0o640),
                             ("group", GROUP, 0o644)):
        path = os.path.join(etc, name)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, mode)
    with open(os.path.join(etc, "gshadow"), "w") as fh:
        fh.write("".join(f"{line.split(':')[0]}:*::\n" for line in GROUP.splitlines()))
    os.chmod(os.path.join(etc, "gshadow"), 0o640)
    shutil.copy("/etc/login.defs", os.path.join(etc, "login.defs"))
    os.makedirs(os.path.join(etc, "sudoers.d"), mode=0o750, exist_ok=True)
    return root


@pytest.fixture
def userdb_root(tmp_path):
    """A fresh minimal sysroot with an account database (see make_userdb_root)."""
    return make_userdb_root(tmp_path / "sysroot")


_USER_SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
AddressFamily inet
HostKey {workdir}/ssh_host_ed25519_key
PidFile {workdir}/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
StrictModes yes
UseDNS no
PrintMotd no
LogLevel VERBOSE
Subsystem sftp {sftp}
"""


def start_user_sshd(workdir: str, overrides: dict | None = None):
    """An sshd that authenticates real users with their own authorized_keys;
    ``overrides`` replaces config keywords (e.g. PermitRootLogin) or adds those the
    base config lacks (e.g. TrustedUserCAKeys)."""
    # imported here: tests.harness.sshd is loaded as a plugin after this module
    from tests.harness.sshd import (SSHD, SSHServer, _sftp_server, _wait_for_banner, free_port,
                                    generate_ed25519)
    if not os.path.exists(SSHD):
        pytest.fail(f"OpenSSH server not found at {SSHD}; install openssh-server")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    os.makedirs(workdir, exist_ok=True)
    host_line = generate_ed25519(os.path.join(workdir, "ssh_host_ed25519_key"), "host")
    host_public = " ".join(host_line.split()[:2])
    port = free_port()
    config = os.path.join(workdir, "sshd_config")
    with open(config, "w") as fh:
        text = _USER_SSHD_CONFIG.format(port=port, workdir=workdir, sftp=_sftp_server())
        for keyword, value in (overrides or {}).items():
            if not any(line.split(" ")[0] == keyword for line in text.splitlines()):
                text += f"{keyword} {value}\n"          # a keyword the base config lacks
                continue
            text = "\n".join(f"{keyword} {value}" if line.split(" ")[0] == keyword else line
                              for line in text.splitlines()) + "\n"
        fh.write(text)
    known = os.path.join(workdir, "known_hosts")
    with open(known, "w") as fh:
        fh.write(f"[127.0.0.1]:{port} {host_public}\n")
    log = os.path.join(workdir, "sshd.log")
    with open(log, "wb") as logfh:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=logfh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = SSHServer("127.0.0.1", port, "", "", host_public, known, workdir, proc, log)
    problem = _wait_for_banner(server, time.monotonic() + 15)
    if problem:
        server.stop()
        pytest.fail(f"could not start {SSHD} -f {config}: {problem}\n{server.stderr()}",
                    pytrace=False)
    return server


@pytest.fixture
def user_sshd(tmp_path):
    """A dedicated sshd reading ~/.ssh/authorized_keys of real users (stopped afterwards)."""
    server = start_user_sshd(str(tmp_path / "user-sshd"))
    yield server
    server.stop()


@pytest.fixture
def insider_sshd(tmp_path):
    """Like ``user_sshd``, but as sshd ships: root may log in with a key and both
    ~/.ssh/authorized_keys and ~/.ssh/authorized_keys2 count (the insider's doors)."""
    server = start_user_sshd(str(tmp_path / "insider-sshd"), {
        "PermitRootLogin": "prohibit-password",
        "AuthorizedKeysFile": ".ssh/authorized_keys .ssh/authorized_keys2"})
    yield server
    server.stop()


def key_login(server, login: str, key_path: str, timeout: float = 10):
    """A paramiko client logged in to ``server`` as ``login`` with the private key
    ``key_path`` (host key checked against the server's known_hosts)."""
    import paramiko
    client = paramiko.SSHClient()
    client.load_host_keys(server.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(server.address, port=server.port, username=login, key_filename=key_path,
                   allow_agent=False, look_for_keys=False, timeout=timeout,
                   banner_timeout=timeout, auth_timeout=timeout)
    return client


def remove_account(login: str) -> None:
    """Kill the account's processes and remove it, its home and its opskit files."""
    subprocess.run(["pkill", "-KILL", "-u", login], capture_output=True)
    time.sleep(0.1)
    subprocess.run(["userdel", "-r", "-f", login], capture_output=True)
    for path in (f"/etc/sudoers.d/opskit-{login.replace('.', '_')}",
                 f"/var/lib/opskit/frozen/{login}"):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)
    subprocess.run(["groupdel", login], capture_output=True)


@pytest.fixture
def throwaway_login():
    """A login that does not exist here; the account is removed at teardown, always."""
    login = f"opskit-t{secrets.token_hex(3)}"
    try:
        pwd.getpwnam(login)
        pytest.fail(f"{login} unexpectedly exists")
    except KeyError:
        pass
    try:
        yield login
    finally:
        remove_account(login)
        try:
            pwd.getpwnam(login)
            raise AssertionError(f"teardown could not remove the account {login}")
        except KeyError:
            pass


# --- declared model files ---------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES_EXAMPLE = os.path.join(REPO, "configs", "roles.yaml")
# Extra roles for tests: 'ops-reader' grants an unmanaged-by-others group;
# 'broken-sudo' has a rule roles.yaml accepts but visudo rejects.
EXTRA_ROLES = """\
  ops-reader:
    tier: query
    description: reads logs
    linux:
      groups: [opsread]
  broken-sudo:
    tier: admin
    description: a sudo rule visudo rejects (relative command)
    linux:
      sudo: ["ALL=(ALL) ls"]
  e2e-role:
    tier: operator
    description: harmless rights for the real-account test
    linux:
      groups: [users]
      sudo: ["ALL=(root) /usr/bin/true"]
"""


def write_model(directory, roster: str, inventory: str, extra_config: str = "") -> str:
    """Write roles.yaml (the shipped example plus EXTRA_ROLES), roster.yaml,
    inventory.yaml and opskit.yaml into ``directory``; return the config path."""
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    with open(ROLES_EXAMPLE) as fh:
        roles = fh.read()
    roles = roles.replace("\nposts:\n", "\n" + EXTRA_ROLES + "\nposts:\n", 1)
    for name, text in (("roles.yaml", roles), ("roster.yaml", roster),
                       ("inventory.yaml", inventory)):
        with open(os.path.join(directory, name), "w") as fh:
            fh.write(text)
    config = os.path.join(directory, "opskit.yaml")
    with open(config, "w") as fh:
        fh.write("inventory: inventory.yaml\naccounts:\n  roster: roster.yaml\n"
                 "  roles: roles.yaml\n  host_timeout: 60\n" + extra_config
                 # users apply granting admin rights is high-risk (R-SEC-2): tested in
                 # test_users_cli with its own incidents: section; off elsewhere
                 + ("" if "incidents:" in extra_config
                    else "incidents:\n  high_risk_operations: []\n"))
    return config


def load_model(config: str):
    """(Config, Roster) for a config written by write_model."""
    from opskit.accounts.declared import load_declared
    from opskit.settings import load_config
    cfg = load_config(config)
    return cfg, load_declared(cfg)


def shadow_line(root: str, login: str) -> list[str] | None:
    with open(os.path.join(root, "etc", "shadow")) as fh:
        for line in fh:
            parts = line.rstrip("\n").split(":")
            if parts[0] == login:
                return parts
    return None


def passwd_line(root: str, login: str) -> list[str] | None:
    with open(os.path.join(root, "etc", "passwd")) as fh:
        for line in fh:
            parts = line.rstrip("\n").split(":")
            if parts[0] == login:
                return parts
    return None


def tree_snapshot(root: str) -> dict:
    """path -> (mode, size, content hash) of every file under ``root``."""
    import hashlib
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, digest)
    return out


# A syntactically valid public key line and a small roster using the shipped roles.yaml
# posts (shared by the accounts tests).
EXAMPLE_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtEYkGHZ+60WkR/guAKeEAMtyFzUAeiVqhrTyZTMMC5 "
               "zw@laptop")
BASE_ROSTER = f"""\
people:
  zhang.wei:
    post: system-maintainer
    ssh_keys: ["{EXAMPLE_KEY}"]
  li.na:
    post: database-maintainer
"""


def sysroot_host(tmp_path, name: str, roster: str, groups: tuple = ("db",)):
    """(sysroot, HostSpec, Roster): one sysroot host ``name`` in ``groups`` and a model
    whose inventory is that host alone."""
    from opskit.hosts.inventory import HostSpec
    root = make_userdb_root(tmp_path / name)
    config = write_model(tmp_path / "cfg", roster, f"hosts:\n  {name}:\n    sysroot: {root}\n"
                                                   f"    groups: [{', '.join(groups)}]\n")
    _, model = load_model(config)
    return root, HostSpec(name, sysroot=root, groups=list(groups)), model


def freeze_model(tmp_path, login: str, public: str, server=None, name: str = "Departing"):
    """An ``opskit(*args)`` runner for a model where ``login`` (role e2e-role, key
    ``public``) is on this machine as host 'here'; with ``server`` (a user_sshd), the
    freeze reads its sshd config and probes it (docs/accounts.md, the SSH probe)."""
    from tests.harness.cli import run_opskit
    roster = (f"people:\n  {login}:\n    name: {name}\n    roles: [e2e-role]\n"
              f"    host_groups: [all]\n    ssh_keys:\n      - {public}\n")
    inventory = "hosts:\n  here:\n    groups: [real]\n"
    if server is not None:
        inventory += ("    vars:\n"
                      f"      sshd_config: {server.workdir}/sshd_config\n"
                      f"      ssh_login_probe: 127.0.0.1:{server.port}\n"
                      f"      ssh_login_probe_known_hosts: {server.known_hosts}\n")
    config = write_model(os.path.join(str(tmp_path), "cfg"), roster, inventory)
    env = {"OPSKIT_HOME": os.path.join(str(tmp_path), "home")}

    def opskit(*args):
        return run_opskit("--config", config, *args, env=env, timeout=180)
    return opskit


def can_key_login(server, login: str, key_path: str) -> bool:
    """Whether a real SSH login as ``login`` with ``key_path`` is accepted."""
    import paramiko
    try:
        key_login(server, login, key_path).close()
        return True
    except paramiko.AuthenticationException:
        return False
