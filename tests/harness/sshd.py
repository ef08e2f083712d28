"""Real OpenSSH servers for integration tests.

``sshd_factory(n)`` starts ``n`` ``/usr/sbin/sshd -D -e`` processes on free
loopback ports, each with its own ed25519 host key, all accepting one
session-wide client key for the current user. Each server comes with a
ready ``known_hosts`` file holding its host key. ``sshd`` and
``three_sshd`` are session-scoped conveniences; everything is killed at
the end of the session.

If sshd cannot start, the test FAILS with sshd's stderr: a missing real
component must never turn into a silent skip.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SSHD = os.environ.get("OPSKIT_TEST_SSHD", "/usr/sbin/sshd")
SFTP_SERVER_CANDIDATES = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                          "/usr/lib/ssh/sftp-server")
START_TIMEOUT = 15.0


def generate_ed25519(private_path: str, comment: str) -> str:
    """Write an OpenSSH-format ed25519 private key (0600) and its ``.pub``;
    return the public key line ``ssh-ed25519 AAAA... comment``."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
    os.chmod(private_path, 0o600)
    line = f"{public} {comment}"
    with open(private_path + ".pub", "w") as fh:
        fh.write(line + "\n")
    return line


def free_port() -> int:
    """A loopback TCP port nothing listens on (connecting to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ClientKey:
    path: str            # private key, 0600
    public_line: str


@dataclass
class SSHServer:
    """One running sshd. ``known_hosts`` already trusts its host key."""

    address: str
    port: int
    user: str
    client_key: str          # path of the private key that may log in
    host_public_key: str     # "ssh-ed25519 AAAA..." (no comment)
    known_hosts: str         # file with "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
    workdir: str
    proc: subprocess.Popen = field(repr=False)
    log: str = ""

    @property
    def key_name(self) -> str:
        return f"[{self.address}]:{self.port}"

    @property
    def known_hosts_line(self) -> str:
        return f"{self.key_name} {self.host_public_key}\n"

    @property
    def host_fingerprint(self) -> str:
        import paramiko
        return paramiko.PKey.from_type_string(*self._split_key()).fingerprint

    def _split_key(self):
        import base64
        kind, b64 = self.host_public_key.split()[:2]
        return kind, base64.b64decode(b64)

    def stderr(self) -> str:
        try:
            with open(self.log, errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
AddressFamily inet
HostKey {workdir}/ssh_host_ed25519_key
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {workdir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
LogLevel {loglevel}
MaxStartups 100
MaxSessions 50
Subsystem sftp {sftp}
"""


def _sftp_server() -> str:
    for path in SFTP_SERVER_CANDIDATES:
        if os.path.exists(path):
            return path
    return "internal-sftp"


def _wait_for_banner(server: SSHServer, deadline: float) -> str | None:
    """None once the port answers with an SSH banner, else why not (so far)."""
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return f"sshd exited with status {server.proc.returncode}"
        try:
            with socket.create_connection((server.address, server.port), timeout=1) as sock:
                sock.settimeout(2)
                if sock.recv(64).startswith(b"SSH-"):
                    return None
        except OSError as exc:
            last = str(exc)
        time.sleep(0.05)
    return f"port {server.port} did not answer within {START_TIMEOUT:g}s ({last})"


class SSHDFactory:
    """Starts sshd servers under ``base``; ``stop_all`` kills them."""

    def __init__(self, base: str):
        self.base = base
        self.servers: list[SSHServer] = []
        self.user = getpass.getuser()
        os.makedirs(base, exist_ok=True)
        self.client = ClientKey(os.path.join(base, "client_ed25519"), "")
        self.client.public_line = generate_ed25519(self.client.path, "opskit-test-client")

    def __call__(self, n: int = 1) -> list[SSHServer]:
        return [self.start() for _ in range(n)]

    def start(self) -> SSHServer:
        if not os.path.exists(SSHD):
            pytest.fail(f"OpenSSH server not found at {SSHD}; install openssh-server")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        workdir = os.path.join(self.base, f"sshd{len(self.servers)}")
        os.makedirs(workdir)
        host_line = generate_ed25519(os.path.join(workdir, "ssh_host_ed25519_key"), "host")
        host_public = " ".join(host_line.split()[:2])
        with open(os.path.join(workdir, "authorized_keys"), "w") as fh:
            fh.write(self.client.public_line + "\n")
        errors = []
        for _attempt in range(3):          # a port may be taken between probe and bind
            port = free_port()
            config = os.path.join(workdir, "sshd_config")
            with open(config, "w") as fh:
                fh.write(_CONFIG.format(port=port, workdir=workdir, sftp=_sftp_server(),
                                        loglevel=os.environ.get("OPSKIT_TEST_SSHD_LOGLEVEL",
                                                                "ERROR")))
            known_hosts = os.path.join(workdir, "known_hosts")
            with open(known_hosts, "w") as fh:
                fh.write(f"[127.0.0.1]:{port} {host_public}\n")
            os.chmod(known_hosts, 0o600)
            log = os.path.join(workdir, f"sshd-{port}.log")
            with open(log, "wb") as logfh:
                proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdout=logfh,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            server = SSHServer("127.0.0.1", port, self.user, self.client.path, host_public,
                               known_hosts, workdir, proc, log)
            problem = _wait_for_banner(server, time.monotonic() + START_TIMEOUT)
            if problem is None:
                self.servers.append(server)
                return server
            server.stop()
            errors.append(f"{problem}; sshd said:\n{server.stderr().strip() or '(nothing)'}")
            if "Address already in use" not in server.stderr():
                break
        pytest.fail(f"could not start {SSHD} -D -e -f {config}: " + "\n".join(errors),
                    pytrace=False)

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def write_fleet_inventory(servers: list, folder: str, host_vars=None) -> tuple[str, str]:
    """known_hosts and inventory.yaml (hosts h00, h01, ...) in ``folder`` for ``servers``;
    ``host_vars(i)`` may give a dict of inventory vars per host. Returns both paths."""
    known = os.path.join(folder, "known_hosts")
    with open(known, "w") as fh:
        fh.write("".join(s.known_hosts_line for s in servers))
    lines = ["defaults:", f"  key: {servers[0].client_key}", f"  user: {servers[0].user}",
             "hosts:"]
    for i, s in enumerate(servers):
        lines += [f"  h{i:02d}:", "    address: 127.0.0.1", f"    port: {s.port}"]
        extra = host_vars(i) if host_vars else None
        if extra:
            lines.append("    vars: {" + ", ".join(f"{k}: {v}" for k, v in extra.items()) + "}")
    inventory = os.path.join(folder, "inventory.yaml")
    with open(inventory, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return known, inventory


@pytest.fixture(scope="session")
def sshd_factory(tmp_path_factory):
    """``sshd_factory(n) -> list[SSHServer]``: n fresh sshd servers (killed at session end)."""
    factory = SSHDFactory(str(tmp_path_factory.mktemp("sshd")))
    yield factory
    factory.stop_all()
    shutil.rmtree(factory.base, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd(sshd_factory) -> SSHServer:
    """One running sshd (shared by the session: do not stop it)."""
    return sshd_factory(1)[0]


@pytest.fixture(scope="session")
def three_sshd(sshd_factory) -> list[SSHServer]:
    """Three running sshd servers (shared by the session)."""
    return sshd_factory(3)


@pytest.fixture
def dead_port() -> int:
    """A loopback port with nothing listening: connections are refused."""
    return free_port()
