"""Real Linux network namespaces for policy tests (routes, sockets, firewall).

``netns()`` creates a fresh namespace ``opskit-t-<hex>`` with loopback up
and a veth pair whose *both* ends live inside it (10.213.0.1/24 on veth0,
10.213.0.2/24 on veth1, fd13::1/64 on veth0): no address or interface is
added outside the namespace. It returns a ``NetnsHost``: a LocalHost whose
commands run through ``ip netns exec NS`` and whose reads of per-namespace
kernel state (/proc/net, /proc/sys/net, /sys/class/net) happen inside the
namespace too, so the policy checks see the namespace exactly as they would
see a machine. Every namespace (and process started in it) is removed at
teardown.

If namespaces cannot be created the test FAILS with the reason: a missing
real component never becomes a silent skip.
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys

import pytest

from opskit.hosts.base import FileStat, file_error
from opskit.hosts.local import LocalHost

NS_PATHS = ("/proc/net", "/proc/self/net", "/proc/sys/net", "/sys/class/net",
            "/sys/devices/virtual/net")


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        pytest.fail(f"'{' '.join(argv)}' failed ({proc.returncode}): {proc.stderr.strip()}",
                    pytrace=False)
    return proc


class NetnsHost(LocalHost):
    """LocalHost seen from inside network namespace ``ns``."""

    def __init__(self, ns: str, name: str | None = None):
        super().__init__(name or ns)
        self.ns = ns
        self.procs: list[subprocess.Popen] = []

    def describe(self) -> str:
        return f"{self.name} (local, netns {self.ns})"

    def run(self, argv, **kwargs):
        return super().run(["ip", "netns", "exec", self.ns, *map(str, argv)], **kwargs)

    def _inside(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in NS_PATHS)

    def _ns_error(self, path: str, stderr: bytes):
        import errno
        text = stderr.decode("utf-8", "replace")
        code = errno.ENOENT if "No such file" in text else \
            errno.ENOTDIR if "Not a directory" in text else errno.EIO
        return file_error(self.name, path, OSError(code, text.strip() or "failed"),
                          where=self.describe())

    def read_file(self, path: str) -> bytes:
        if not self._inside(path):
            return super().read_file(path)
        result = self.run(["cat", "--", path], timeout=10)
        if result.rc != 0:
            raise self._ns_error(path, result.stderr)
        return result.stdout

    def listdir(self, path: str) -> list[str]:
        if not self._inside(path):
            return super().listdir(path)
        result = self.run(["ls", "-1A", "--", path], timeout=10)
        if result.rc != 0:
            raise self._ns_error(path, result.stderr)
        return sorted(result.text.split())

    def stat(self, path: str, *, follow_symlinks: bool = True) -> FileStat:
        if not self._inside(path):
            return super().stat(path, follow_symlinks=follow_symlinks)
        argv = ["stat", "-L"] if follow_symlinks else ["stat"]
        result = self.run([*argv, "-c", "%f %s %Y %u %g %F", "--", path], timeout=10)
        if result.rc != 0:
            raise self._ns_error(path, result.stderr)
        mode, size, mtime, uid, gid, kind = result.text.split(" ", 5)
        mode_i = int(mode, 16)
        import stat as st
        return FileStat(path, mode_i, int(size), float(mtime), int(uid), int(gid),
                        st.S_ISDIR(mode_i), kind.strip() == "symbolic link")

    # --- test helpers --------------------------------------------------------------------
    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside the namespace (fails the test on error)."""
        return _sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def spawn(self, *argv: str) -> subprocess.Popen:
        """Start a long-running process inside the namespace (killed at teardown)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def nft(self, script: str) -> None:
        """Load an nftables script into the namespace."""
        proc = subprocess.run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], input=script,
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            pytest.fail(f"nft -f failed in {self.ns}: {proc.stderr.strip()}", pytrace=False)


def _listen_script(proto: str, address: str, port: int) -> str:
    family = "socket.AF_INET6" if ":" in address else "socket.AF_INET"
    kind = "socket.SOCK_STREAM" if proto == "tcp" else "socket.SOCK_DGRAM"
    listen = "s.listen()" if proto == "tcp" else "pass"
    return ("import socket,sys,time\n"
            f"s=socket.socket({family},{kind})\n"
            "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            + ("s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1)\n" if ":" in address else "")
            + f"s.bind(({address!r},{port}))\n{listen}\n"
            "print('ready',flush=True)\ntime.sleep(120)\n")


def listen(host: NetnsHost, proto: str, address: str, port: int) -> subprocess.Popen:
    """A real socket listening inside the namespace; returns once it is bound."""
    proc = host.spawn(sys.executable, "-c", _listen_script(proto, address, port))
    line = proc.stdout.readline()
    if b"ready" not in line:
        pytest.fail(f"listener {proto} {address}:{port} did not start: "
                    f"{proc.stderr.read().decode(errors='replace')}", pytrace=False)
    return proc


def _require_tools() -> None:
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.fail(f"'{tool}' not found: install iproute2 and nftables (scripts/test does)",
                        pytrace=False)


def create(name: str | None = None, *, veth: bool = True) -> NetnsHost:
    """A fresh namespace with loopback up and (``veth``) the inner veth pair."""
    ns = f"opskit-t-{secrets.token_hex(4)}"
    _sh("ip", "netns", "add", ns)
    host = NetnsHost(ns, name)
    host.sh("ip", "link", "set", "lo", "up")
    if veth:
        host.sh("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        host.sh("ip", "addr", "add", "10.213.0.1/24", "dev", "veth0")
        host.sh("ip", "addr", "add", "10.213.0.2/24", "dev", "veth1")
        host.sh("ip", "-6", "addr", "add", "fd13::1/64", "dev", "veth0", "nodad")
        host.sh("ip", "-6", "addr", "add", "fd13::2/64", "dev", "veth1", "nodad")
        host.sh("ip", "link", "set", "veth0", "up")
        host.sh("ip", "link", "set", "veth1", "up")
    return host


def destroy(host: NetnsHost) -> None:
    """Kill what was spawned in the namespace and delete it."""
    for proc in host.procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()
    _sh("ip", "netns", "del", host.ns, check=False)


def _mac(host: NetnsHost, dev: str) -> str:
    return host.sh("cat", f"/sys/class/net/{dev}/address").stdout.strip()


def link(a: NetnsHost, a_dev: str, b: NetnsHost, b_dev: str, net: int) -> None:
    """A veth pair between two namespaces: 10.213.<net>.1/24 and fd13:<net>::1/64
    on ``a``, .2 and ::2 on ``b``. Neighbours are static, so a firewall that
    drops ICMPv6 neighbour discovery still lets the oracle's packets flow."""
    _sh("ip", "-n", a.ns, "link", "add", a_dev, "type", "veth", "peer", "name", b_dev,
        "netns", b.ns)
    for host, dev, end in ((a, a_dev, 1), (b, b_dev, 2)):
        host.sh("ip", "addr", "add", f"10.213.{net}.{end}/24", "dev", dev)
        host.sh("ip", "-6", "addr", "add", f"fd13:{net}::{end}/64", "dev", dev, "nodad")
        host.sh("ip", "link", "set", dev, "up")
    for host, dev, peer, peer_dev, end in ((a, a_dev, b, b_dev, 2), (b, b_dev, a, a_dev, 1)):
        mac = _mac(peer, peer_dev)
        host.sh("ip", "neigh", "replace", f"10.213.{net}.{end}", "lladdr", mac, "dev", dev,
                "nud", "permanent")
        host.sh("ip", "-6", "neigh", "replace", f"fd13:{net}::{end}", "lladdr", mac, "dev",
                dev, "nud", "permanent")


class Lan:
    """client -- router -- server: the router forwards between its ``ext0``
    (10.213.1.1, fd13:1::1, facing the client at .2) and ``int0`` (10.213.2.1,
    fd13:2::1, facing the server at .2). Load a ruleset into ``router`` and
    connect from ``client`` to the router (input hook) or through it to the
    server (forward hook)."""

    ROUTER = {4: "10.213.1.1", 6: "fd13:1::1"}
    SERVER = {4: "10.213.2.2", 6: "fd13:2::2"}

    def __init__(self):
        self.client = create("client", veth=False)
        self.router = create("router", veth=False)
        self.server = create("server", veth=False)
        link(self.router, "ext0", self.client, "eth0", 1)
        link(self.router, "int0", self.server, "eth0", 2)
        for host, net in ((self.client, 1), (self.server, 2)):
            host.sh("ip", "route", "add", "default", "via", f"10.213.{net}.1")
            host.sh("ip", "-6", "route", "add", "default", "via", f"fd13:{net}::1")
        self.router.sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                       "net.ipv6.conf.all.forwarding=1")

    def hosts(self) -> list[NetnsHost]:
        return [self.client, self.router, self.server]

    def serve(self, ports: list[int]) -> None:
        """TCP listeners and UDP echo servers on ``ports`` (IPv4 and IPv6) in the
        router and the server namespaces."""
        for host in (self.router, self.server):
            proc = host.spawn(sys.executable, "-c", _SERVE, json.dumps(ports))
            if b"ready" not in proc.stdout.readline():
                pytest.fail(f"servers in {host.ns} did not start: "
                            f"{proc.stderr.read().decode(errors='replace')}", pytrace=False)

    def probe(self, ports: list[int], timeout: float = 1.0) -> dict[tuple, bool]:
        """The oracle: (hook, version, proto, port) -> did a real connection get
        through? TCP: connect() completed; UDP: the echo came back."""
        targets = [[hook, version, proto, port,
                    (self.ROUTER if hook == "input" else self.SERVER)[version]]
                   for hook in ("input", "forward") for version in (4, 6)
                   for proto in ("tcp", "udp") for port in ports]
        out = self.client.sh(sys.executable, "-c", _PROBE, json.dumps(targets),
                             str(timeout)).stdout
        return {tuple(t[:4]): ok for t, ok in zip(targets, json.loads(out))}

    def close(self) -> None:
        for host in self.hosts():
            destroy(host)


_SERVE = """
import json, socket, sys, threading
def tcp(fam, addr, port):
    s = socket.socket(fam, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
def udp(fam, addr, port):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(512); s.sendto(data, peer)
for port in json.loads(sys.argv[1]):
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for fn in (tcp, udp):
            threading.Thread(target=fn, args=(fam, addr, port), daemon=True).start()
import time; time.sleep(0.2); print("ready", flush=True); time.sleep(3600)
"""

_PROBE = """
import json, socket, sys, threading
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
result = [False] * len(targets)
def one(i, hook, version, proto, port, addr):
    fam = socket.AF_INET if version == 4 else socket.AF_INET6
    s = socket.socket(fam, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        if proto == "tcp":
            s.connect((addr, port))
        else:
            s.sendto(b"opskit", (addr, port)); s.recvfrom(64)
        result[i] = True
    except OSError:
        pass
    finally:
        s.close()
threads = [threading.Thread(target=one, args=(i, *t)) for i, t in enumerate(targets)]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps(result))
"""


@pytest.fixture
def netns():
    """``netns() -> NetnsHost``: a fresh namespace per call, removed at teardown."""
    _require_tools()
    created: list[NetnsHost] = []

    def make(name: str | None = None) -> NetnsHost:
        host = create(name)
        created.append(host)
        return host

    yield make
    for host in created:
        destroy(host)


@pytest.fixture(scope="module")
def lan():
    """A client -- router -- server ``Lan`` of three namespaces, for a module."""
    _require_tools()
    topology = Lan()
    try:
        yield topology
    finally:
        topology.close()
