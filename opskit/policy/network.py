"""Network checks (R-NET-1, R-NET-3, R-NET-4, R-NET-5).

Everything is decided from what the host says now -- its routing table,
/proc/sys, /sys/class, /proc/net sockets, the loaded firewall ruleset -- and
its persistent config (sysctl.d, resolv.conf). No packet is ever sent.
"""
from __future__ import annotations

import fnmatch
import ipaddress

from opskit.core.schema import Key

from . import antivirus as AV
from . import iptables_model as IPT
from . import nftables_eval as E
from . import parsers as P
from .model import Finding, Undecided, not_applicable, passed, verdict
from .probe import Probe
from .catalogue import Context, check

GBT_BOUNDARY = "8.1.3.1 c) 边界防护: internal users reaching external networks"
GBT_WIRELESS = "8.1.3.1 d) 边界防护: wireless use only through controlled boundary devices"
GBT_ACCESS = "8.1.3.2 a) 访问控制: default deny at boundaries"
GBT_PORTS = "8.1.4.4 b) 入侵防范: close unneeded services and high-risk ports"
GBT_MALWARE = "8.1.4.5 恶意代码防范: anti-malware protection"


def _ip_list(value):
    for item in value:
        try:
            ipaddress.ip_address(str(item))
        except ValueError:
            return f"expected IP addresses, got {item!r}"
    return None


def net_list(value):
    for item in value:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            return f"expected networks like 10.20.0.0/16, got {item!r}"
    return None


# --- routes -----------------------------------------------------------------------------

def routes(probe: Probe) -> tuple[list[P.Route], list[str]] | None:
    """Unicast routes of every table (``ip -j route show table all``), else of
    the main table from /proc/net/route and /proc/net/ipv6_route. None when
    the host has no routing table to read."""
    out, sources = [], []
    for version, name, proc, parse in (
            (4, "ip-route-4.json", "/proc/net/route", P.parse_proc_route),
            (6, "ip-route-6.json", "/proc/net/ipv6_route", P.parse_proc_ipv6_route)):
        text, source = probe.command(name, ["ip", "-j", f"-{version}", "route", "show",
                                            "table", "all"])
        if text is not None:
            try:
                out += P.parse_ip_json_routes(text, version, source)
                sources.append(source)
                continue
            except ValueError:
                pass
        proc_text = probe.read(proc)
        if proc_text is not None:
            out += parse(proc_text, proc)
            sources.append(proc)
    return (out, sources) if sources else None


@check("net.default-route", rule="R-NET-1", severity="high", category="network",
       title="no default route except through an approved gateway",
       gbt=GBT_BOUNDARY, cis="CIS Controls v8 12.2 (secure network architecture), 13.4",
       params={"approved_gateways": Key(list, [], "Gateways a default route may use.",
                                        check=_ip_list)})
def default_route(probe: Probe, ctx: Context):
    """R-NET-1 (专网专用): a default route leads everywhere, so it must go through a
    gateway the policy approves (the private network's own boundary)."""
    got = routes(probe)
    if got is None:
        return not_applicable("no routing table (/proc/net/route absent, no ip command)")
    table, sources = got
    approved = {ipaddress.ip_address(g) for g in ctx.params["approved_gateways"]}
    findings, evidence = [], []
    for route in table:
        if not route.is_default:
            continue
        gws = [g for g in (route.gateway or "").split(",") if g]
        bad = [g for g in gws if ipaddress.ip_address(g) not in approved]
        if not gws:
            findings.append(Finding(f"default route straight out of {route.dev} (no gateway)",
                                    route.evidence, rule="R-NET-1"))
        elif bad:
            findings.append(Finding(f"default route via {', '.join(bad)} on {route.dev}: not an "
                                    "approved gateway", route.evidence, rule="R-NET-1"))
        else:
            evidence.append(f"approved: {route.evidence}")
    if not findings and not evidence:
        evidence.append(f"no default route in {', '.join(sources)}")
    return verdict(findings, evidence)


@check("net.public-routes", rule="R-NET-1", severity="high", category="network",
       title="no route to public address space",
       gbt=GBT_BOUNDARY, cis="CIS Controls v8 12.2, 13.4",
       params={"approved_subnets": Key(list, [], "Public networks a route may still reach "
                                                 "(e.g. a provincial insurance platform).",
                                       check=net_list)})
def public_routes(probe: Probe, ctx: Context):
    """R-NET-1: every non-default unicast route must stay inside private or
    special-purpose space (RFC 6890) or an approved subnet. 0.0.0.0/1 +
    128.0.0.0/1 (how VPNs replace a default route) are public routes."""
    got = routes(probe)
    if got is None:
        return not_applicable("no routing table (/proc/net/route absent, no ip command)")
    table, sources = got
    approved = [ipaddress.ip_network(n, strict=False) for n in ctx.params["approved_subnets"]]
    findings, evidence = [], []
    count = 0
    for route in table:
        if route.is_default:
            continue                     # net.default-route decides those
        count += 1
        if P.is_public(route.dst) and not P.covered_by(route.dst, approved):
            findings.append(Finding(f"route to public address space {route.dst} via "
                                    f"{route.gateway or route.dev}", route.evidence,
                                    rule="R-NET-1"))
    if not findings:
        evidence.append(f"{count} non-default route(s) in {', '.join(sources)}, all private, "
                        "special-purpose or approved")
    return verdict(findings, evidence)


# --- forwarding ---------------------------------------------------------------------------

FORWARD_KEYS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding",
                "net.ipv4.conf.default.forwarding", "net.ipv6.conf.all.forwarding",
                "net.ipv6.conf.default.forwarding")


def sysctl_settings(probe: Probe) -> tuple[list[P.SysctlSetting], list[str]]:
    """Settings in the order systemd-sysctl applies them at boot (later wins):
    ``*.conf`` of every sysctl.d directory sorted by file name, a name in an
    earlier directory hiding the same name in later ones. /etc/sysctl.conf
    counts only through a link such as Debian's /etc/sysctl.d/99-sysctl.conf;
    a file linked to /dev/null (or empty) masks the name."""
    listing = {}
    for directory in P.SYSCTL_DIRS:
        names = probe.listdir(directory)
        if names is not None:
            listing[directory] = names
    settings, files = [], []
    for directory, name in P.config_files_in_order(listing):
        path = f"{directory}/{name}"
        text = probe.read(path)
        if text is None:
            continue                       # dangling link: systemd-sysctl skips it too
        files.append(path)
        settings += P.parse_sysctl(text, path)
    return settings, files


FORWARD_PATTERNS = ("net.ipv4.conf.*.forwarding", "net.ipv6.conf.*.forwarding")
EXPLICIT_KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")


def forward_keys(settings: list[P.SysctlSetting]) -> list[str]:
    """FORWARD_KEYS and every per-interface forwarding key the files name."""
    keys = list(FORWARD_KEYS)
    for s in settings:
        if not s.is_glob and s.key not in keys and \
                any(P.sysctl_glob_match(p, s.key) for p in FORWARD_PATTERNS):
            keys.append(s.key)
    return keys


def boot_forwarding(probe: Probe, explicit: bool) -> tuple[list[Finding], list[str], list[str]]:
    """Findings and evidence on forwarding set by sysctl files at boot; with
    ``explicit`` (CIS), ip_forward and IPv6 all.forwarding must each be set
    to 0 in a file. Also returns the files read."""
    settings, files = sysctl_settings(probe)
    findings, evidence = [], []
    for key in forward_keys(settings):
        setting = P.sysctl_effective(settings, key)
        if setting is None:
            if explicit and key in EXPLICIT_KEYS:
                findings.append(Finding(
                    f"{key} is not explicitly set to 0 in a sysctl file (CIS; policy "
                    "net.forwarding require_explicit: true)",
                    f"no assignment in {', '.join(files) or 'any sysctl.d file'}",
                    rule="R-NET-1"))
            continue
        where = f"{setting.line.where()}: {setting.line.text}"
        if setting.key != key:
            where += f" (glob, applies to {key})"
        if setting.value.strip() != "0":
            findings.append(Finding(f"{key} = {setting.value} is set at boot", where,
                                    rule="R-NET-1"))
        else:
            evidence.append(where)
    findings += interface_globs(settings, findings)
    return findings, evidence, files


def interface_globs(settings: list[P.SysctlSetting], reported: list[Finding]) -> list[Finding]:
    """A glob such as 'net.ipv4.conf.e*.forwarding = 1' names no key of
    FORWARD_KEYS, yet systemd-sysctl (and udev, when an interface appears)
    turns forwarding on for every interface it matches. Each such glob with a
    value other than 0 is a finding, unless a glob over every interface
    ('conf.*.forwarding = 0') is applied after it or it already decided a
    key reported above."""
    table = P.sysctl_applied(settings)
    out = []
    for n, glob in enumerate(table):
        parts = glob.key.split(".")
        if not glob.is_glob or glob.value.strip() == "0" or len(parts) != 5 or \
                not all(fnmatch.fnmatchcase(word, parts[i])
                        for i, word in ((0, "net"), (2, "conf"), (4, "forwarding"))) or \
                not any(fnmatch.fnmatchcase(f, parts[1]) for f in ("ipv4", "ipv6")) or \
                any(f.evidence.startswith(f"{glob.line.where()}:") for f in reported):
            continue
        if any(later.is_glob and later.key == f"net.{parts[1]}.conf.*.forwarding"
               and later.value.strip() == "0" for later in table[n + 1:]):
            continue
        out.append(Finding(f"{glob.key} = {glob.value} turns forwarding on at boot for every "
                           "interface it matches", f"{glob.line.where()}: {glob.line.text}",
                           rule="R-NET-1"))
    return out


@check("net.forwarding", rule="R-NET-1", severity="high", category="network",
       title="IPv4/IPv6 forwarding off, at runtime and in sysctl files",
       gbt=GBT_BOUNDARY, cis="CIS Debian Linux Benchmark 'Ensure ip forwarding is disabled'",
       params={"require_explicit": Key(bool, False, "Fail unless net.ipv4.ip_forward and "
                                                    "net.ipv6.conf.all.forwarding are set to "
                                                    "0 in a sysctl file (CIS), not just 0 by "
                                                    "default.")})
def forwarding(probe: Probe, ctx: Context):
    """R-NET-1, R-NET-5: a host that forwards packets is a router between the
    private network and whatever else it touches. Boot-time settings follow
    systemd-sysctl's file precedence (sysctl_settings)."""
    findings, evidence = [], []
    runtime = [("/proc/sys/net/ipv4/ip_forward", "IPv4 forwarding"),
               ("/proc/sys/net/ipv6/conf/all/forwarding", "IPv6 forwarding")]
    for family in ("ipv4", "ipv6"):
        for iface in probe.listdir(f"/proc/sys/net/{family}/conf") or []:
            if iface != "all":
                runtime.append((f"/proc/sys/net/{family}/conf/{iface}/forwarding",
                                f"{family} forwarding on {iface}"))
    seen_runtime = False
    for path, what in runtime:
        value = probe.value(path)
        if value is None:
            continue
        seen_runtime = True
        if value != "0":
            findings.append(Finding(f"{what} is on now", f"{path} = {value}", rule="R-NET-1"))
    if seen_runtime and not findings:
        evidence.append("/proc/sys/net/ipv4/ip_forward = 0 and every */forwarding = 0")
    boot, boot_evidence, files = boot_forwarding(probe, ctx.params.get("require_explicit", False))
    findings += boot
    evidence += boot_evidence
    if not seen_runtime and not files:
        return not_applicable("neither /proc/sys/net nor any sysctl file to read")
    return verdict(findings, evidence)


# --- wireless ----------------------------------------------------------------------------------

WIRELESS_MODULES = ["cfg80211", "mac80211", "bluetooth", "btusb", "iwlwifi", "iwlmvm", "ath9k",
                    "ath10k_core", "ath11k", "brcmfmac", "rtw88_core", "rtw89_core", "rtl8xxxu",
                    "mt76", "rt2800usb", "mwifiex"]


@check("net.wireless", rule="R-NET-3", severity="high", category="network",
       title="no wireless hardware (by hardware class, not interface name)",
       gbt=GBT_WIRELESS, cis="CIS Debian Linux Benchmark 'Ensure wireless interfaces are "
                             "disabled', 'Ensure bluetooth services are not in use'",
       params={"modules": Key(list, WIRELESS_MODULES, "Wi-Fi/Bluetooth driver modules that "
                                                      "must not be loaded.", item_type=str)})
def wireless(probe: Probe, ctx: Context):
    """R-NET-3: a device with wireless capability may not join the network.
    Found by sysfs class (wireless/, phy80211, ieee80211, rfkill, bluetooth),
    so an interface renamed eth1 is still caught."""
    ifaces = probe.listdir("/sys/class/net")
    if ifaces is None:
        return not_applicable("no /sys/class/net (sysfs not mounted)")
    findings, evidence = [], []
    for iface in ifaces:
        for marker in ("wireless", "phy80211"):
            path = f"/sys/class/net/{iface}/{marker}"
            if probe.exists(path):
                findings.append(Finding(f"network interface {iface} is wireless",
                                        f"{path} exists", rule="R-NET-3"))
                break
    for phy in probe.listdir("/sys/class/ieee80211") or []:
        findings.append(Finding(f"802.11 radio {phy} present", f"/sys/class/ieee80211/{phy} exists",
                                rule="R-NET-3"))
    for hci in probe.listdir("/sys/class/bluetooth") or []:
        findings.append(Finding(f"Bluetooth adapter {hci} present",
                                f"/sys/class/bluetooth/{hci} exists", rule="R-NET-3"))
    for entry in probe.listdir("/sys/class/rfkill") or []:
        kind = probe.value(f"/sys/class/rfkill/{entry}/type") or "?"
        name = probe.value(f"/sys/class/rfkill/{entry}/name") or entry
        findings.append(Finding(f"radio {name} ({kind}) registered with rfkill",
                                f"/sys/class/rfkill/{entry}/type = {kind}", rule="R-NET-3"))
    modules_text = probe.read("/proc/modules")
    if modules_text is not None:
        loaded = P.parse_proc_modules(modules_text)
        for module in ctx.params["modules"]:
            name = P.module_name(module)
            if name in loaded:
                findings.append(Finding(f"wireless driver module {name} is loaded",
                                        f"/proc/modules: {loaded[name]}", rule="R-NET-3"))
    if not findings:
        evidence.append(f"{len(ifaces)} interface(s) ({', '.join(ifaces)}), none wireless; no "
                        "ieee80211, bluetooth or rfkill devices")
    return verdict(findings, evidence)


# --- listening sockets ------------------------------------------------------------------------

def listening_sockets(probe: Probe) -> tuple[list[P.Socket], list[str]]:
    """TCP LISTEN and bound UDP sockets of /proc/net/tcp, tcp6, udp, udp6, and
    the files read."""
    sockets, read = [], []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        text = probe.read(f"/proc/net/{proto}")
        if text is not None:
            read.append(f"/proc/net/{proto}")
            sockets += P.parse_proc_net_sockets(text, proto)
    return sockets, read


@check("net.listening-ports", rule="R-NET-5", severity="high", category="network",
       title="listening sockets only on the ports approved for the host's role",
       gbt=GBT_PORTS, cis="CIS Controls v8 4.8 (uninstall or disable unnecessary services)",
       params={"ignore_loopback": Key(bool, True, "Ignore sockets bound to 127.0.0.0/8 "
                                                  "or ::1 (unreachable from the network).")})
def listening_ports(probe: Probe, ctx: Context):
    """R-NET-5: /proc/net/tcp, tcp6 (LISTEN) and udp, udp6 (bound, unconnected)
    against the approved ports of the host's role (policy ``roles:``)."""
    sockets, read = listening_sockets(probe)
    if not read:
        return not_applicable("no /proc/net/tcp, tcp6, udp or udp6")
    findings, evidence, seen = [], [], set()
    ignored = 0
    for sock in sockets:
        if ctx.params["ignore_loopback"] and sock.loopback:
            ignored += 1
            continue
        ranges = ctx.ports.get(sock.transport, [])
        if P.port_allowed(sock.port, ranges):
            evidence.append(f"/proc/net/{sock.proto}:{sock.line}: {sock.endpoint()} approved")
            continue
        key = (sock.proto, sock.address, sock.port)
        if key in seen:
            continue
        seen.add(key)
        approved = ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ranges) or "none"
        findings.append(Finding(
            f"{sock.transport} port {sock.port} listening on {sock.address} is not approved for "
            f"role '{ctx.role}' (approved {sock.transport}: {approved})",
            f"/proc/net/{sock.proto}:{sock.line}: {sock.endpoint()} uid {sock.uid} "
            f"inode {sock.inode}", rule="R-NET-5"))
    if not findings:
        evidence.append(f"{len(sockets) - ignored} listening socket(s) in {', '.join(read)}, all "
                        f"approved for role '{ctx.role}'; {ignored} loopback-only ignored")
    return verdict(findings, evidence)


# --- firewall ----------------------------------------------------------------------------------

def ipv6_enabled(probe: Probe) -> bool:
    """Whether IPv6 packets can reach the host: ``all/disable_ipv6 = 1`` is not
    enough when an interface turned it back on afterwards (its own setting)."""
    if probe.value("/proc/sys/net/ipv6/conf/all/disable_ipv6") == "1":
        conf = "/proc/sys/net/ipv6/conf"
        return any(probe.value(f"{conf}/{iface}/disable_ipv6") == "0"
                   for iface in probe.listdir(conf) or [] if iface not in ("all", "default"))
    return probe.read("/proc/net/if_inet6") is not None or \
        probe.listdir("/proc/sys/net/ipv6") is not None


def nft_ruleset(probe: Probe) -> tuple[E.Ruleset | None, set, list[str], str]:
    """The loaded nftables ruleset, the dormant tables and notes, and its source
    (or, when it cannot be read, None and the reason in the source).

    nft 1.0.6 garbles or truncates ``-j`` output at a table's ``flags``: the
    text listing then says which tables are dormant, and the others are read
    one table at a time."""
    text, source = probe.command("nft-ruleset.json", ["nft", "-j", "list", "ruleset"])
    if text is None:
        return None, set(), [], source
    try:
        ruleset = E.Ruleset.from_json(text)
        flagged = any(t.get("flags") is not None for t in ruleset.tables.values())
    except ValueError:
        ruleset, flagged = None, True
    listing = None
    if flagged:
        listing, _ = probe.command("nft-ruleset.txt", ["nft", "list", "ruleset"])
    if ruleset is None:
        if listing is None:
            return None, set(), [], f"{source}: unreadable JSON, and no 'nft list ruleset'"
        ruleset = E.Ruleset()
        skip = E.dormant_from_text(listing)
        for family, name in E.tables_from_text(listing):
            if (family, name) in skip:
                continue
            part, where = probe.command(f"nft-table-{family}-{name}.json",
                                        ["nft", "-j", "list", "table", family, name])
            try:
                ruleset.merge(E.Ruleset.from_json(part or ""))
            except ValueError:
                return None, set(), [], f"{where}: unreadable JSON"
    dormant, notes = E.dormant_tables(ruleset, listing)
    return ruleset, dormant, notes, source


def _iptables(probe: Probe, merge, sources: list[str], problems: list[str], ctx,
              versions) -> None:
    """Judge the iptables tables (iptables-nft's or legacy) with the nftables
    evaluator. When ``iptables-save`` is iptables-nft (or shows nothing),
    legacy x_tables may be loaded beside it (iptables-nft only warns about
    them on stderr): ``iptables-legacy-save`` reads those, and a packet must
    pass both."""
    for version, name in ((4, "iptables-save"), (6, "ip6tables-save")):
        if version not in versions:
            continue
        text, source = probe.command(name, [name])
        if text is None:
            problems.append(source)
            continue
        saves = [(text, source)]
        if "(nf_tables)" in text or not _has_tables(text):
            legacy = name.replace("tables-save", "tables-legacy-save")
            saves.append(probe.command(legacy, [legacy]))   # None: no legacy tool
        for body, where in saves:
            if body is not None and _has_tables(body):
                ruleset, notes = IPT.ruleset_from_save(body, version)
                merge(_judge(ruleset, set(), [f"{where}: {n}" for n in notes], where, ctx,
                             (version,)))
                sources.append(where)


def _has_tables(save_text: str) -> bool:
    return any(line.startswith("*") for line in save_text.splitlines())


def _judge(ruleset, dormant, notes, source, ctx, versions) -> dict:
    """HookVerdicts of one ruleset for every hook and IP version."""
    out = {}
    for hook in E.HOOKS:
        for version in versions:
            answer = E.evaluate(ruleset, hook, version, ctx.ports, dormant=dormant,
                                source=source)
            evidence = answer.denied_by if not answer.open else \
                [f"{answer.witness} accepted by " + " then ".join(answer.via)] + \
                [f"assumed: {u}" for u in answer.unknown]
            out[(hook, version)] = P.HookVerdict(not answer.open, evidence + notes)
    return out


@check("net.firewall-default-deny", rule="R-NET-5", severity="high", category="network",
       title="no new inbound connection to an unapproved port, no forwarded traffic",
       gbt=GBT_ACCESS, cis="CIS Controls v8 4.4 (firewall on servers); CIS Debian Linux "
                           "Benchmark 'Ensure nftables default deny firewall policy'",
       params={})
def firewall_default_deny(probe: Probe, ctx: Context):
    """R-NET-5: with the loaded ruleset's real semantics (nftables_eval: every
    base chain by priority, rule order, jump/goto/return, dormant tables), no
    new tcp/udp connection from outside reaches a port not approved for the
    host's role on the input hook, and nothing new passes the forward hook,
    for IPv4 and (unless disabled) IPv6. A finding names the rule that lets
    the packet through. ``iptables-save``/``ip6tables-save`` (iptables-nft or
    legacy tables) are translated into the same model (iptables_model) and
    judged the same way; a packet must pass them as well, so they can only
    add a deny."""
    verdicts: dict[tuple[str, int], P.HookVerdict] = {}
    sources, problems = [], []

    def merge(found):
        for key, v in found.items():
            cur = verdicts.setdefault(key, P.HookVerdict(False))
            cur.evidence += v.evidence
            cur.denied = cur.denied or v.denied

    versions = (4, 6) if ipv6_enabled(probe) else (4,)
    ruleset, dormant, notes, source = nft_ruleset(probe)
    if ruleset is not None:
        sources.append(source)
        merge(_judge(ruleset, dormant, notes, source, ctx, versions))
    else:
        problems.append(source)
    _iptables(probe, merge, sources, problems, ctx, versions)
    if not sources:
        joined = "; ".join(problems)
        if probe.recorded:
            return not_applicable(f"recorded tree without a firewall recording ({joined})")
        if any("not permitted" in p or "Permission denied" in p for p in problems):
            raise Undecided(f"cannot read the firewall ruleset: {joined}")
        return verdict([Finding("no firewall ruleset can be read: no nftables or iptables "
                                "tool", joined, rule="R-NET-5")])
    return _firewall_verdict(verdicts, versions, sources, ctx)


def _firewall_verdict(verdicts, versions, sources, ctx):
    """pass/fail per hook and IP version from the merged verdicts."""
    findings, evidence = [], []
    for hook in E.HOOKS:
        for version in versions:
            v = verdicts.get((hook, version), P.HookVerdict(False))
            label = f"IPv{version} {hook}"
            if v.denied:
                evidence.append(f"{label} denied: " + "; ".join(v.evidence))
                continue
            what = (f"a new connection to a port not approved for role '{ctx.role}' gets in"
                    if hook == "input" else "new forwarded traffic passes")
            findings.append(Finding(
                f"{label} is not denied by default: {what}",
                "; ".join(v.evidence) or f"no base chain on the {hook} hook in "
                                         f"{', '.join(sources)} (everything accepted)",
                rule="R-NET-5"))
    if len(versions) == 1:
        evidence.append("IPv6 disabled on this host: IPv4 only")
    return verdict(findings, evidence)


# --- DNS ------------------------------------------------------------------------------------------

STUB_RESOLVERS = {"127.0.0.53", "127.0.0.54"}


@check("net.dns-resolvers", rule="R-NET-1", severity="medium", category="network",
       title="DNS resolvers only from the allowlist",
       gbt=GBT_BOUNDARY, cis="CIS Controls v8 9.2 (use DNS filtering services)",
       params={"allowed": Key(list, [], "Approved DNS servers (IP addresses). Empty: "
                                        "the check is n/a.", check=_ip_list)})
def dns_resolvers(probe: Probe, ctx: Context):
    """R-NET-1: name resolution goes to the private network's own resolvers,
    not a public DNS server. Behind systemd-resolved's stub (127.0.0.53) the
    real upstreams are in /run/systemd/resolve/resolv.conf."""
    allowed = {ipaddress.ip_address(a) for a in ctx.params["allowed"]}
    if not allowed:
        return not_applicable("the policy lists no approved resolvers (net.dns-resolvers "
                              "allowed: [])")
    text = probe.read("/etc/resolv.conf")
    if text is None:
        return passed("no /etc/resolv.conf: no DNS resolver configured")
    servers = P.parse_resolv_conf(text, "/etc/resolv.conf")
    if servers and all(s in STUB_RESOLVERS for s, _ in servers):
        upstream = probe.read("/run/systemd/resolve/resolv.conf")
        if upstream is not None:
            servers = P.parse_resolv_conf(upstream, "/run/systemd/resolve/resolv.conf")
    findings, evidence = [], []
    for server, line in servers:
        try:
            ok = ipaddress.ip_address(server) in allowed
        except ValueError:
            ok = False
        if ok:
            evidence.append(f"{line.where()}: {line.text}")
        else:
            findings.append(Finding(f"DNS resolver {server} is not in the allowlist",
                                    f"{line.where()}: {line.text}", rule="R-NET-1"))
    if not servers:
        evidence.append("/etc/resolv.conf names no nameserver")
    return verdict(findings, evidence)


# --- antivirus ----------------------------------------------------------------------------------------

AV_PROCESSES = ["clamonacc", "wdavdaemon", "falcon-sensor", "ds_agent", "savd", "kesl",
                "mfetpd", "rtvscand", "oaeventd"]
AV_PATHS = ["/usr/sbin/clamonacc", "/usr/bin/clamonacc", "/opt/microsoft/mdatp/sbin/wdavdaemon",
            "/opt/CrowdStrike/falconctl", "/opt/ds_agent/ds_agent", "/opt/kaspersky/kesl",
            "/opt/sophos-spl", "/opt/McAfee/ens/tp/bin/mfetpd"]


@check("av.realtime", rule="R-NET-4", severity="high", category="antivirus",
       title="real-time (on-access) antivirus running where policy requires",
       gbt=GBT_MALWARE, cis="CIS Controls v8 10.1 (deploy and maintain anti-malware software)",
       params={"required": Key(bool, True, "Fail when no real-time antivirus runs."),
               "processes": Key(list, AV_PROCESSES, "Process names (/proc/*/comm) of on-access "
                                                    "scanners.", item_type=str),
               "paths": Key(list, AV_PATHS, "Installed files that show a scanner (used for "
                                            "recorded trees without processes).", item_type=str),
               "trusted_paths": Key(list, [], "Scanner executables to accept although no "
                                              "package owns them (vendor installers).",
                                    item_type=str),
               "max_signature_age_days": Key(int, 7, "Fail when ClamAV's daily signatures are "
                                                     "older (0: only report the age).", min=0)})
def antivirus(probe: Probe, ctx: Context):
    """R-NET-4: an on-access scanner must be *running* (clamd alone scans only on
    request; clamonacc is ClamAV's real-time part), and be the real one: its
    executable (/proc/PID/exe) carries the name and an installed package owns
    it (opskit.policy.antivirus), not a renamed copy of another program."""
    if not ctx.params["required"]:
        return not_applicable("the policy does not require antivirus here (av.realtime "
                              "required: false)")
    names = set(ctx.params["processes"])
    procs = probe.processes()
    if probe.recorded and not procs:
        installed = [p for p in ctx.params["paths"] if probe.exists(p)]
        if installed:
            return _signatures(probe, ctx, [f"recorded tree without processes: {installed[0]} "
                                            "installed"])
        return verdict([Finding("no real-time antivirus installed",
                                f"none of {', '.join(ctx.params['paths'])} exists",
                                rule="R-NET-4")])
    try:
        found = AV.candidates(probe, names)
    except LookupError as exc:
        raise Undecided(str(exc)) from None
    judged = [(c, *AV.judge(c, ctx.params["trusted_paths"])) for c in found]
    real = [(c, why) for c, ok, why in judged if ok]
    if real:
        return _signatures(probe, ctx, [why for _, why in real])
    unsure = [why for _, ok, why in judged if ok is None]
    if unsure:
        raise Undecided("; ".join(unsure))
    if judged:
        return verdict([Finding("a process named like a scanner is not the real scanner", why,
                                rule="R-NET-4") for _, _, why in judged])
    return verdict([Finding("no real-time antivirus process running",
                            f"{len(procs)} processes, none named "
                            f"{', '.join(sorted(names))}", rule="R-NET-4")])


def _signatures(probe: Probe, ctx: Context, evidence: list[str]):
    """Pass with ``evidence``, plus ClamAV's signature age (a finding when too old)."""
    got = AV.clamav_signature_age(probe)
    if got is None:
        return passed(evidence)
    days, path = got
    limit = ctx.params["max_signature_age_days"]
    if limit and days > limit:
        return verdict([Finding(f"ClamAV signatures are {days:.0f} days old (policy allows "
                                f"{limit})", f"{path} modified {days:.1f} days ago",
                                rule="R-NET-4")])
    return passed(evidence + [f"ClamAV signatures {days:.1f} days old ({path})"])
