"""Network checks against real network namespaces (ip netns, veth, nftables):
the routing table, listening sockets and the loaded firewall ruleset are the
kernel's, read exactly as on a machine (R-NET-1, R-NET-5). Only addresses
inside the namespaces are used."""
import pytest

from opskit.policy.model import FAIL, PASS
from opskit.policy.policyfile import load_policy_files
from opskit.policy.fleet import check_fleet, check_host
from tests.harness.netns import listen

pytestmark = pytest.mark.integration


@pytest.fixture
def policy(tmp_path):
    def make(text: str = ""):
        path = tmp_path / "policy.yaml"
        path.write_text("roles:\n  default: {tcp: [22], udp: []}\n  web: {tcp: [22, 8443]}\n"
                        + text)
        return load_policy_files([str(path)])
    return make


def result(host, policy, check_id, groups=None):
    r = check_host(host, policy, groups).result(check_id)
    return r, " | ".join([f.message + " <- " + f.evidence for f in r.findings] + r.evidence)


def test_routes_default_and_public(netns, policy):
    host = netns()
    r, text = result(host, policy(), "net.default-route")
    assert r.status == PASS and "no default route" in text

    host.sh("ip", "route", "add", "default", "via", "10.213.0.254")
    host.sh("ip", "route", "add", "198.51.100.0/24", "via", "10.213.0.254")   # TEST-NET-2: special
    host.sh("ip", "route", "add", "9.9.9.0/24", "via", "10.213.0.254")
    host.sh("ip", "route", "add", "blackhole", "1.1.1.0/24")
    host.sh("ip", "route", "add", "5.5.0.0/16", "via", "10.213.0.253", "table", "77")
    r, text = result(host, policy(), "net.default-route")
    assert r.status == FAIL
    assert "default route via 10.213.0.254 on veth0: not an approved gateway" in text
    assert "ip -j -4 route show table all: default via 10.213.0.254 dev veth0" in text

    r, text = result(host, policy("checks:\n  net.default-route: "
                                  "{approved_gateways: [10.213.0.254]}\n"), "net.default-route")
    assert r.status == PASS, text

    r, text = result(host, policy(), "net.public-routes")
    assert r.status == FAIL
    assert "route to public address space 9.9.9.0/24 via 10.213.0.254" in text
    assert "5.5.0.0/16 via 10.213.0.253" in text and "table 77" in text   # other tables too
    assert "1.1.1.0" not in text and "198.51.100" not in text


def test_listening_ports_against_role(netns, policy):
    host = netns()
    listen(host, "tcp", "0.0.0.0", 8443)
    listen(host, "tcp", "::", 8443)
    listen(host, "tcp", "127.0.0.1", 9000)          # loopback only: ignored
    listen(host, "udp", "10.213.0.1", 5353)
    r, text = result(host, policy(), "net.listening-ports")
    assert r.status == FAIL
    messages = sorted(f.message for f in r.findings)
    assert messages == [
        "tcp port 8443 listening on 0.0.0.0 is not approved for role 'default' (approved tcp: 22)",
        "tcp port 8443 listening on :: is not approved for role 'default' (approved tcp: 22)",
        "udp port 5353 listening on 10.213.0.1 is not approved for role 'default' "
        "(approved udp: none)"]
    assert "/proc/net/tcp6:" in text and "[::]:8443" in text
    p = policy("groups:\n  web: {role: web}\nchecks:\n  net.listening-ports: {groups: [web]}\n")
    r, text = result(host, p, "net.listening-ports", groups=["web"])
    assert r.status == FAIL and [f.message for f in r.findings] == [
        "udp port 5353 listening on 10.213.0.1 is not approved for role 'web' (approved udp: none)"]


def test_firewall_default_deny(netns, policy):
    host = netns()
    r, text = result(host, policy(), "net.firewall-default-deny")
    assert r.status == FAIL and len(r.findings) == 4
    assert "nft -j list ruleset: no base chain on the input hook (everything accepted)" in text

    host.nft("table ip f4 {\n chain input { type filter hook input priority 0; policy drop; }\n"
             " chain forward { type filter hook forward priority 0; policy drop; }\n}\n")
    r, text = result(host, policy(), "net.firewall-default-deny")
    assert r.status == FAIL          # IPv4 only: IPv6 still open
    assert sorted(f.message.split(":")[0] for f in r.findings) == [
        "IPv6 forward is not denied by default", "IPv6 input is not denied by default"]

    host.nft("table inet f {\n chain input { type filter hook input priority 0; policy accept;\n"
             "  iif lo accept\n  tcp dport 22 accept\n  counter drop\n }\n"
             " chain forward { type filter hook forward priority 0; policy drop; }\n}\n")
    r, text = result(host, policy(), "net.firewall-default-deny")
    assert r.status == PASS, text
    assert "IPv4 input denied: nft -j list ruleset: chain ip f4 input (hook input) policy drop" \
        in text
    assert "IPv6 input denied: nft -j list ruleset: inet f input handle" in text
    assert ": counter drop" in text


def test_conditional_drop_is_not_default_deny(netns, policy):
    host = netns()
    host.nft("table inet f {\n chain input { type filter hook input priority 0; policy accept;\n"
             "  tcp dport 23 drop\n }\n"
             " chain forward { type filter hook forward priority 0; policy drop; }\n}\n")
    r, text = result(host, policy(), "net.firewall-default-deny")
    assert r.status == FAIL
    assert sorted(f.message.split(":")[0] for f in r.findings) == [
        "IPv4 input is not denied by default", "IPv6 input is not denied by default"]
    assert "to port 1 accepted by nft -j list ruleset: chain inet f input (hook input) " \
           "policy accept" in text


def test_forwarding_runtime_in_namespace(netns, policy):
    host = netns()
    r, _ = result(host, policy(), "net.forwarding")
    assert r.status in (PASS,), r
    host.sh("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
    r, text = result(host, policy(), "net.forwarding")
    assert r.status == FAIL and "/proc/sys/net/ipv4/ip_forward = 1" in text


def test_namespaces_fan_out_with_one_row_each(netns, policy):
    a, b = netns("ns-a"), netns("ns-b")
    listen(b, "tcp", "0.0.0.0", 2323)
    report = check_fleet([a, b], policy())
    assert [h.host for h in report.hosts] == ["ns-a", "ns-b"]
    assert report.hosts[0].result("net.listening-ports").status == PASS
    assert report.hosts[1].result("net.listening-ports").status == FAIL
