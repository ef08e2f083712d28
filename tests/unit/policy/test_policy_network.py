"""Network checks (R-NET-1, R-NET-3, R-NET-4, R-NET-5) against recorded host
trees: pass on a compliant tree, fail on each way of breaking it, n/a with a
reason where the subsystem does not exist."""
import json

import pytest

from opskit.policy.model import FAIL, NA, PASS
from tests.fixtures.policy.trees import (NFT_DENY, Link, ROUTE_HEADER, TCP6_HEADER, TCP_HEADER,
                                         good_tree, route_line, tcp_line, write)
from tests.unit.policy.test_policy_media import evidence, messages, run


@pytest.fixture
def tree(tmp_path):
    return good_tree(tmp_path / "host")


# --- net.default-route / net.public-routes (R-NET-1) --------------------------------------

def test_default_route_via_unapproved_gateway_fails(tree):
    # default via 192.168.1.1 (0101A8C0 little-endian)
    write(tree, {"/proc/net/route": ROUTE_HEADER
                 + route_line("eth1", "00000000", "0101A8C0", "0003", "00000000")})
    result = run(tree, "net.default-route")
    assert result.status == FAIL and result.rule == "R-NET-1"
    assert messages(result) == "default route via 192.168.1.1 on eth1: not an approved gateway"
    assert "/proc/net/route:2: eth1 00000000 0101A8C0 0003" in evidence(result)


def test_no_default_route_passes(tree):
    write(tree, {"/proc/net/route": ROUTE_HEADER
                 + route_line("eth0", "0000140A", "00000000", "0001", "0000FFFF")})
    result = run(tree, "net.default-route")
    assert result.status == PASS and "no default route" in evidence(result)


def test_ipv6_default_route_is_checked_too(tree):
    line = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
            "20010db8000000000000000000000001 00000400 00000001 00000000 00000003     eth0\n")
    write(tree, {"/proc/net/ipv6_route": line})
    result = run(tree, "net.default-route")
    assert result.status == FAIL and "via 2001:db8::1" in messages(result)


def test_route_to_public_space_fails(tree):
    # 8.8.8.0/24 via 10.20.0.9, and the VPN trick 0.0.0.0/1
    write(tree, {"/proc/net/route": ROUTE_HEADER
                 + route_line("eth0", "00080808", "0900140A", "0003", "00FFFFFF")
                 + route_line("tun0", "00000000", "00000000", "0001", "00000080")
                 + route_line("eth0", "0000140A", "00000000", "0001", "0000FFFF")})
    result = run(tree, "net.public-routes")
    assert result.status == FAIL
    assert "route to public address space 8.8.8.0/24 via 10.20.0.9" in messages(result)
    assert "route to public address space 0.0.0.0/1 via tun0" in messages(result)
    assert "10.20.0.0/16" not in messages(result)


def test_rejected_route_is_not_a_route(tree):
    # RTF_REJECT (unreachable 8.8.8.0/24) blocks traffic: no finding
    write(tree, {"/proc/net/route": ROUTE_HEADER
                 + route_line("lo", "00080808", "00000000", "0201", "00FFFFFF")})
    assert run(tree, "net.public-routes").status == PASS


def test_approved_public_subnet_passes(tree, tmp_path):
    write(tree, {"/proc/net/route": ROUTE_HEADER
                 + route_line("eth0", "00080808", "0900140A", "0003", "00FFFFFF")})
    policy = tmp_path / "p.yaml"
    policy.write_text("checks:\n  net.public-routes: {approved_subnets: [8.8.0.0/16]}\n")
    assert run(tree, "net.public-routes", policy=str(policy)).status == PASS


def test_recorded_ip_json_routes_cover_other_tables(tree):
    routes = [{"dst": "default", "gateway": "203.0.113.7", "dev": "eth2", "table": "100",
               "flags": []},
              {"type": "blackhole", "dst": "1.1.1.0/24", "flags": []}]
    write(tree, {"/.opskit-recorded/ip-route-4.json": json.dumps(routes)})
    result = run(tree, "net.default-route")
    assert result.status == FAIL
    assert "default via 203.0.113.7 dev eth2 table 100" in evidence(result)
    assert run(tree, "net.public-routes").status == PASS


def test_no_routing_table_is_not_applicable(tree):
    write(tree, {"/proc/net/route": None, "/proc/net/ipv6_route": None})
    result = run(tree, "net.default-route")
    assert result.status == NA and "no routing table" in result.reason


# --- net.forwarding ---------------------------------------------------------------------------

def test_runtime_forwarding_fails(tree):
    write(tree, {"/proc/sys/net/ipv4/ip_forward": "1\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL
    assert "/proc/sys/net/ipv4/ip_forward = 1" in evidence(result)


def test_per_interface_forwarding_fails(tree):
    write(tree, {"/proc/sys/net/ipv6/conf/eth0/forwarding": "1\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL and "ipv6 forwarding on eth0 is on now" in messages(result)


def test_sysctl_file_enabling_forwarding_fails_with_file_and_line(tree):
    # later files win: 99-router.conf overrides 60-net.conf; slashes = dots
    write(tree, {"/usr/lib/sysctl.d/99-router.conf": "; vendor\nnet/ipv4/ip_forward=1\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL
    assert "/usr/lib/sysctl.d/99-router.conf:2: net/ipv4/ip_forward=1" in evidence(result)


def test_etc_sysctl_conf_counts_only_through_the_99_sysctl_link(tree):
    # issue #18 item 2: systemd-sysctl never reads /etc/sysctl.conf on its own
    write(tree, {"/usr/lib/sysctl.d/99-router.conf": "net.ipv4.ip_forward=1\n",
                 "/etc/sysctl.conf": "net.ipv4.ip_forward = 0\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL and "/usr/lib/sysctl.d/99-router.conf:1" in evidence(result)
    # Debian's link: 99-sysctl.conf sorts after 99-router.conf, so its 0 wins ...
    write(tree, {"/etc/sysctl.d/99-sysctl.conf": Link("../sysctl.conf")})
    assert run(tree, "net.forwarding").status == PASS
    # ... but not over a file that sorts later (zz-forward.conf)
    write(tree, {"/etc/sysctl.d/zz-forward.conf": "net.ipv4.ip_forward=1\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL
    assert messages(result) == "net.ipv4.ip_forward = 1 is set at boot"
    assert "/etc/sysctl.d/zz-forward.conf:1: net.ipv4.ip_forward=1" in evidence(result)


def test_same_file_name_earlier_directory_hides_the_rest(tree):
    write(tree, {"/usr/lib/sysctl.d/70-fw.conf": "net.ipv4.ip_forward=1\n",
                 "/run/sysctl.d/70-fw.conf": "net.ipv4.ip_forward=0\n"})
    assert run(tree, "net.forwarding").status == PASS
    write(tree, {"/etc/sysctl.d/70-fw.conf": Link("/dev/null"),        # masked: no setting
                 "/usr/lib/sysctl.d/70-fw.conf": "net.ipv4.ip_forward=1\n"})
    assert run(tree, "net.forwarding").status == PASS
    write(tree, {"/etc/sysctl.d/70-fw.conf": None, "/run/sysctl.d/70-fw.conf": None})
    assert run(tree, "net.forwarding").status == FAIL


def test_per_interface_key_in_a_file_fails(tree):
    write(tree, {"/etc/sysctl.d/70-eth.conf": "-net/ipv4/conf/eth0.100/forwarding = 1\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL
    assert messages(result) == "net.ipv4.conf.eth0/100.forwarding = 1 is set at boot"


def test_explicit_key_beats_glob_whatever_the_order(tree):
    write(tree, {"/etc/sysctl.d/10-a.conf": "net.ipv4.conf.all.forwarding = 0\n",
                 "/etc/sysctl.d/20-b.conf": "net.ipv4.conf.*.forwarding = 1\n"})
    result = run(tree, "net.forwarding")
    assert result.status == FAIL          # default.forwarding gets the glob's 1
    assert "net.ipv4.conf.default.forwarding = 1 is set at boot" in messages(result)
    assert "net.ipv4.conf.all.forwarding" not in messages(result)
    assert "(glob, applies to net.ipv4.conf.default.forwarding)" in evidence(result)


def test_require_explicit_zero_in_a_file(tree, tmp_path):
    # issue #18 item 10 (CIS): 0 by kernel default is not enough when the policy asks
    policy = tmp_path / "explicit.yaml"
    policy.write_text("checks:\n  net.forwarding: {require_explicit: true}\n")
    assert run(tree, "net.forwarding", policy=str(policy)).status == PASS
    write(tree, {"/etc/sysctl.d/60-net.conf": "net.ipv4.ip_forward = 0\n"})
    assert run(tree, "net.forwarding").status == PASS                 # option off
    result = run(tree, "net.forwarding", policy=str(policy))
    assert result.status == FAIL
    assert messages(result) == ("net.ipv6.conf.all.forwarding is not explicitly set to 0 in a "
                                "sysctl file (CIS; policy net.forwarding require_explicit: true)")


def test_shipped_baseline_requires_explicit_forwarding_settings():
    import yaml
    from pathlib import Path
    baseline = Path(__file__).resolve().parents[3] / "configs" / "policies" / "baseline.yaml"
    assert yaml.safe_load(baseline.read_text())["checks"]["net.forwarding"]["require_explicit"]


# --- net.wireless (R-NET-3) -----------------------------------------------------------------

def test_trap_wireless_interface_not_named_wl(tree):
    write(tree, {"/sys/class/net/eth1/type": "1\n", "/sys/class/net/eth1/phy80211": {}})
    result = run(tree, "net.wireless")
    assert result.status == FAIL and result.rule == "R-NET-3"
    assert messages(result) == "network interface eth1 is wireless"
    assert "/sys/class/net/eth1/phy80211 exists" in evidence(result)


def test_wireless_dir_rfkill_and_module_are_found(tree):
    write(tree, {"/sys/class/net/lan2/wireless": {},
                 "/sys/class/rfkill/rfkill0/type": "bluetooth\n",
                 "/sys/class/rfkill/rfkill0/name": "hci0\n",
                 "/proc/modules": "ext4 1 1 - Live 0x0\nbtusb 65536 0 - Live 0x0\n"})
    result = run(tree, "net.wireless")
    text = messages(result)
    assert "lan2 is wireless" in text and "radio hci0 (bluetooth)" in text
    assert "wireless driver module btusb is loaded" in text


def test_no_sysfs_net_is_not_applicable(tree):
    write(tree, {"/sys/class/net": None})
    assert run(tree, "net.wireless").status == NA


# --- net.listening-ports (R-NET-5) -------------------------------------------------------------

def test_unapproved_port_fails_with_proc_line(tree):
    write(tree, {"/proc/net/tcp": TCP_HEADER + tcp_line(0, "00000000", 22)
                 + tcp_line(1, "00000000", 8080, inode=777)})
    result = run(tree, "net.listening-ports")
    assert result.status == FAIL
    assert messages(result) == ("tcp port 8080 listening on 0.0.0.0 is not approved for role "
                                "'default' (approved tcp: 22)")
    assert "/proc/net/tcp:3: 0.0.0.0:8080 uid 0 inode 777" in evidence(result)


def test_role_from_group_approves_port(tree):
    write(tree, {"/proc/net/tcp": TCP_HEADER + tcp_line(0, "00000000", 5432)})
    assert run(tree, "net.listening-ports").status == FAIL
    result = run(tree, "net.listening-ports", groups=["db"])
    assert result.status == PASS and "role 'db'" in evidence(result)


def test_ipv6_and_udp_sockets_are_checked(tree):
    any6 = "0" * 32
    write(tree, {"/proc/net/tcp6": TCP6_HEADER + tcp_line(0, any6, 2049),
                 "/proc/net/udp": TCP_HEADER + tcp_line(0, "00000000", 161, state="07")})
    text = messages(run(tree, "net.listening-ports"))
    assert "tcp port 2049 listening on ::" in text and "udp port 161 listening on 0.0.0.0" in text


def test_loopback_can_be_counted(tree, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("checks:\n  net.listening-ports: {ignore_loopback: false}\n")
    result = run(tree, "net.listening-ports", policy=str(policy))
    assert result.status == FAIL and "5432 listening on 127.0.0.1" in messages(result)


# --- net.firewall-default-deny (R-NET-5) ------------------------------------------------------

def test_recorded_accept_policy_fails(tree):
    ruleset = json.loads(json.dumps(NFT_DENY))
    ruleset["nftables"][3]["chain"]["policy"] = "accept"       # forward accepts
    write(tree, {"/.opskit-recorded/nft-ruleset.json": json.dumps(ruleset)})
    result = run(tree, "net.firewall-default-deny")
    assert result.status == FAIL
    assert messages(result) == ("IPv4 forward is not denied by default: new forwarded traffic "
                                "passes | IPv6 forward is not denied by default: new forwarded "
                                "traffic passes")
    assert "chain inet filter forward (hook forward) policy accept" in evidence(result)


def test_recorded_iptables_save_is_read(tree):
    write(tree, {"/.opskit-recorded/nft-ruleset.json": None,
                 "/proc/sys/net/ipv6/conf/all/disable_ipv6": "1\n",
                 "/.opskit-recorded/iptables-save":
                     "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                     "-A INPUT -i lo -j ACCEPT\n-A INPUT -j REJECT --reject-with "
                     "icmp-host-prohibited\nCOMMIT\n"})
    result = run(tree, "net.firewall-default-deny")
    assert result.status == PASS, evidence(result)
    assert "/.opskit-recorded/iptables-save:6: -A INPUT -j REJECT" in evidence(result)


def test_tree_without_firewall_recording_is_not_applicable(tree):
    write(tree, {"/.opskit-recorded/nft-ruleset.json": None})
    result = run(tree, "net.firewall-default-deny")
    assert result.status == NA and "recorded tree without a firewall recording" in result.reason


# --- net.dns-resolvers (R-NET-1) ---------------------------------------------------------------

def test_public_resolver_fails(tree):
    write(tree, {"/etc/resolv.conf": "nameserver 10.20.0.53\n# nameserver 9.9.9.9\n"
                                     "nameserver 8.8.8.8\n"})
    result = run(tree, "net.dns-resolvers")
    assert result.status == FAIL
    assert messages(result) == "DNS resolver 8.8.8.8 is not in the allowlist"
    assert "/etc/resolv.conf:3: nameserver 8.8.8.8" in evidence(result)


def test_systemd_resolved_stub_reads_upstreams(tree):
    write(tree, {"/etc/resolv.conf": "nameserver 127.0.0.53\n",
                 "/run/systemd/resolve/resolv.conf": "nameserver 114.114.114.114\n"})
    result = run(tree, "net.dns-resolvers")
    assert result.status == FAIL and "/run/systemd/resolve/resolv.conf:1" in evidence(result)


# --- av.realtime (R-NET-4) ---------------------------------------------------------------------

def test_no_realtime_antivirus_fails(tree):
    write(tree, {"/proc/812/comm": "clamd\n"})         # clamd alone is not on-access
    result = run(tree, "av.realtime")
    assert result.status == FAIL and result.rule == "R-NET-4"
    assert messages(result) == "no real-time antivirus process running"


def test_recorded_truncated_json_falls_back_to_text_listing_and_tables(tree):
    # nft 1.0.6 cuts `nft -j list ruleset` off at a dormant table's flags
    table = json.loads(json.dumps(NFT_DENY))
    table["nftables"][1]["table"]["name"] = "live"
    for item in table["nftables"][2:]:
        next(iter(item.values()))["table"] = "live"
    write(tree, {"/.opskit-recorded/nft-ruleset.json":
                 '{"nftables": [{"table": {"family": "inet", "name": "old", "flags": ',
                 "/.opskit-recorded/nft-ruleset.txt":
                     "table inet old {\n\tflags dormant\n}\ntable inet live {\n}\n",
                 "/.opskit-recorded/nft-table-inet-live.json": json.dumps(table)})
    result = run(tree, "net.firewall-default-deny")
    assert result.status == PASS, evidence(result)
    assert "chain inet live input (hook input) policy drop" in evidence(result)


def test_recorded_accept_rule_before_drop_policy_fails_naming_the_rule(tree):
    ruleset = json.loads(json.dumps(NFT_DENY))
    ruleset["nftables"].insert(4, {"rule": {"family": "inet", "table": "filter", "chain": "input",
                                            "handle": 2, "expr": [{"accept": None}]}})
    write(tree, {"/.opskit-recorded/nft-ruleset.json": json.dumps(ruleset)})
    result = run(tree, "net.firewall-default-deny")
    assert result.status == FAIL
    assert messages(result).startswith("IPv4 input is not denied by default: a new connection "
                                       "to a port not approved for role 'default' gets in")
    assert "accepted by /.opskit-recorded/nft-ruleset.json: inet filter input handle 2: accept" \
        in " ".join(f.evidence for f in result.findings)
