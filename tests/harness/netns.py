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

import secrets
import shutil
import subprocess

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
    import sys
    proc = host.spawn(sys.executable, "-c", _listen_script(proto, address, port))
    line = proc.stdout.readline()
    if b"ready" not in line:
        pytest.fail(f"listener {proto} {address}:{port} did not start: "
                    f"{proc.stderr.read().decode(errors='replace')}", pytrace=False)
    return proc


@pytest.fixture
def netns():
    """``netns() -> NetnsHost``: a fresh namespace per call, removed at teardown."""
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.fail(f"'{tool}' not found: install iproute2 and nftables (scripts/test does)",
                        pytrace=False)
    created: list[NetnsHost] = []

    def make(name: str | None = None) -> NetnsHost:
        ns = f"opskit-t-{secrets.token_hex(4)}"
        _sh("ip", "netns", "add", ns)
        host = NetnsHost(ns, name)
        created.append(host)
        host.sh("ip", "link", "set", "lo", "up")
        host.sh("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        host.sh("ip", "addr", "add", "10.213.0.1/24", "dev", "veth0")
        host.sh("ip", "addr", "add", "10.213.0.2/24", "dev", "veth1")
        host.sh("ip", "-6", "addr", "add", "fd13::1/64", "dev", "veth0", "nodad")
        host.sh("ip", "-6", "addr", "add", "fd13::2/64", "dev", "veth1", "nodad")
        host.sh("ip", "link", "set", "veth0", "up")
        host.sh("ip", "link", "set", "veth1", "up")
        return host

    yield make
    for host in created:
        for proc in host.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe:
                    pipe.close()
        _sh("ip", "netns", "del", host.ns, check=False)
