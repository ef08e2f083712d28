"""入侵防范 intrusion prevention, GB/T 22239-2019 8.1.4.4 (R-SEC-1; R-SEC-3
vulnerability fixes)."""
from __future__ import annotations

import ipaddress

from opskit.core.schema import Key

from .. import nftables_eval as E
from ..network import net_list
from ..model import Finding, manual, not_applicable, passed, verdict
from ..probe import Probe
from ..catalogue import Context
from . import facts as F
from . import parse as M
from .common import mlps, no_dpkg

A = ("8.1.4.4 a)", "应遵循最小安装的原则，仅安装需要的组件和应用程序")
B = ("8.1.4.4 b)", "应关闭不需要的系统服务、默认共享和高危端口")
C = ("8.1.4.4 c)", "应通过设定终端接入方式或网络地址范围对通过网络进行管理的管理终端进行限制")
E_ = ("8.1.4.4 e)", "应能发现可能存在的已知漏洞，并在经过充分测试评估后，及时修补漏洞")
F_ = ("8.1.4.4 f)", "应能够检测到对重要节点进行入侵的行为，并在发生严重入侵事件时提供报警")

DENIED_PACKAGES = ["gcc", "g++", "clang", "cpp", "make", "build-essential", "gdb", "strace",
                   "ltrace", "valgrind", "tcpdump", "nmap", "netcat-traditional",
                   "netcat-openbsd", "ncat", "socat", "john", "hydra", "tshark", "wireshark",
                   "telnet", "ftp", "rsh-client"]


@mlps("mlps.intrusion.minimal-install", clause=A[0], requirement=A[1], severity="medium",
      title="minimal installation: no compiler, debugger or attack tool (deny list per role)",
      cis="CIS Controls v8 2.5, 2.7 (allowlist authorised software)",
      params={"denied": Key(list, DENIED_PACKAGES, "Packages no server of this role may have.",
                            item_type=str),
              "allowed": Key(list, [], "Exceptions for this role/group.", item_type=str)},
      remediation="apt-get purge the listed packages (build on a build host); exceptions go in "
                  "the policy's 'allowed' for that group")
def minimal_install(probe: Probe, ctx: Context):
    """A compiler or debugger on a server lets an intruder build and inject
    tools in place."""
    pkgs = F.packages(probe)
    if pkgs is None:
        return no_dpkg()
    allowed = set(ctx.params["allowed"])
    found = [p for p in ctx.params["denied"] if p in pkgs and p not in allowed]
    return verdict([Finding(f"{p} {pkgs[p]} is installed", f"/var/lib/dpkg/status: Package: "
                                                           f"{p} (install ok installed)")
                    for p in found], f"/var/lib/dpkg/status: {len(pkgs)} packages, none of "
                                     f"the {len(ctx.params['denied'])} denied")


UNNEEDED = ["avahi-daemon.service", "cups.service", "cups-browsed.service", "rpcbind.service",
            "rpcbind.socket", "nfs-server.service", "smbd.service", "nmbd.service",
            "vsftpd.service", "telnet.socket", "inetd.service", "xinetd.service",
            "openbsd-inetd.service", "bluetooth.service", "isc-dhcp-server.service",
            "snmpd.service", "squid.service", "dovecot.service", "slapd.service",
            "apache2.service", "nginx.service", "autofs.service", "rsync.service",
            "tftpd-hpa.service"]


@mlps("mlps.intrusion.unneeded-services", clause=B[0], requirement=B[1], severity="medium",
      title="no unneeded service enabled (systemctl is-enabled over the unit links)",
      cis="CIS Debian 12 2.1.x (server services not in use)",
      params={"units": Key(list, UNNEEDED, "Units no server of this role may enable.",
                           item_type=str),
              "allowed": Key(list, [], "Exceptions for this role/group.", item_type=str)},
      remediation="systemctl disable --now UNIT (or mask it); purge the package if unused")
def unneeded_services(probe: Probe, ctx: Context):
    """Enabled means started at boot: a link in a *.wants/*.requires
    directory under /etc/systemd/system (or /run); a mask wins."""
    if probe.listdir("/etc/systemd/system") is None:
        return not_applicable("no /etc/systemd/system: not a systemd host")
    findings, masked = [], []
    allowed = set(ctx.params["allowed"])
    for unit in ctx.params["units"]:
        if unit in allowed:
            continue
        state, where = F.unit_state(probe, unit)
        if state == "enabled":
            findings.append(Finding(f"{unit} is enabled", where))
        elif state == "masked":
            masked.append(where)
    return verdict(findings, [f"none of {len(ctx.params['units'])} unneeded units enabled"]
                   + masked)


def sshd_restriction(probe: Probe, approved: list) -> tuple[bool, list[str]]:
    """Does sshd itself refuse logins from outside ``approved``? True when every
    AllowUsers entry, global and in every Match block, carries @host inside
    the approved networks."""
    config = F.sshd_effective(probe)
    # a Match block's AllowUsers replaces the global list for its connections
    lists = config.all_candidates("allowusers")
    allow = [(v, w) for value, w in lists[0] for v in value.split()]
    if not allow:
        return False, ["sshd: no AllowUsers restriction"]
    ok = all(_bound(lst, approved) for lst in lists)
    return ok, [f"{w}" for _, w in allow[:4]] + [w for lst in lists[1:] for _, w in lst[:2]]


def _bound(entries: list, approved: list) -> bool:
    """Every AllowUsers pattern in ``entries`` is tied (@net) to an approved network."""
    for value, _ in entries:
        for entry in value.split():
            _, at, host = entry.partition("@")
            try:
                net = ipaddress.ip_network(host, strict=False) if at else None
            except ValueError:
                net = None
            if net is None or not any(net.version == a.version and net.subnet_of(a)
                                      for a in approved):
                return False
    return True


def firewall_restriction(probe: Probe, approved: list, port: int) -> tuple[bool | None, list[str]]:
    """Is a new TCP connection to ``port`` from outside ``approved`` dropped by
    the loaded nftables ruleset (the nftables evaluator)? None: no ruleset."""
    from ..network import ipv6_enabled, nft_ruleset
    ruleset, dormant, notes, source = nft_ruleset(probe)
    if ruleset is None:
        return None, [source]
    evidence = []
    versions = (4, 6) if ipv6_enabled(probe) else (4,)
    for version in versions:
        nets = [n for n in approved if n.version == version]
        answer = E.evaluate_sources(ruleset, version, [(port, port)], nets, dormant=dormant,
                                    source=source)
        if answer.open:
            return False, [f"IPv{version}: {answer.witness} accepted by " + " then ".join(
                answer.via)] + [f"assumed: {u}" for u in answer.unknown]
        evidence.append(f"IPv{version} port {port} from outside the approved networks denied: "
                        + "; ".join(answer.denied_by[:2]))
    return True, evidence + notes


@mlps("mlps.intrusion.management-sources", clause=C[0], requirement=C[1], severity="high",
      title="SSH administration only from approved source networks (sshd AllowUsers@net or "
            "the firewall)", commands={"sshd-T": F.SSHD_T},
      cis="CIS Controls v8 12.8, 4.4 (dedicated administration resources)",
      params={"approved_sources": Key(list, [], "Management networks (e.g. the operations "
                                                "LAN 10.20.9.0/24). Empty: manual.",
                                      check=net_list),
              "port": Key(int, 22, "The SSH port.", min=1)},
      remediation="restrict in nftables ('tcp dport 22 ip saddr 10.20.9.0/24 accept' before a "
                  "drop) or in sshd ('AllowUsers *@10.20.9.0/24'); list the networks in the "
                  "policy's approved_sources")
def management_sources(probe: Probe, ctx: Context):
    """A new SSH connection from an address outside approved_sources must be
    refused: by sshd (every AllowUsers pattern bound to an approved network)
    or by the loaded firewall ruleset, judged by the nftables evaluator."""
    approved = [ipaddress.ip_network(str(n), strict=False)
                for n in ctx.params["approved_sources"]]
    if not approved:
        return manual("Which networks may administer this host? List them in the policy "
                      "(mlps.intrusion.management-sources approved_sources) so opskit can "
                      "check sshd and the firewall against them.")
    if not F.sshd_installed(probe):
        return not_applicable("no sshd")
    ok, evidence = sshd_restriction(probe, approved)
    if ok:
        return passed(evidence)
    fw, fw_evidence = firewall_restriction(probe, approved, ctx.params["port"])
    if fw:
        return passed(fw_evidence)
    if fw is None and probe.recorded:
        return not_applicable(f"recorded tree without a firewall recording, and sshd does not "
                              f"restrict sources ({'; '.join(evidence)})")
    nets = ", ".join(str(n) for n in approved)
    return verdict([Finding(f"SSH (port {ctx.params['port']}) accepts new connections from "
                            f"outside {nets}", "; ".join(evidence + fw_evidence))])


SECURITY_PACKAGES = ["sh", "-c", "for f in /var/lib/apt/lists/*security*_Packages*; do "
                     "[ -e \"$f\" ] || continue; /usr/lib/apt/apt-helper cat-file \"$f\" | "
                     "grep -E '^(Package|Version):'; done"]
LISTS = "/var/lib/apt/lists"


def security_candidates(probe: Probe) -> tuple[dict[str, str] | None, str]:
    """Newest version of every package in the security suite's lists."""
    text, source = probe.command("apt-security-packages", SECURITY_PACKAGES)
    if text is None and probe.recorded:
        plain = [p for p in F.glob(probe, f"{LISTS}/*security*_Packages")]
        if not plain:
            return None, source
        text, source = "\n".join(probe.read(p) or "" for p in plain), ", ".join(plain)
    if text is None:
        return None, source
    return M.parse_packages_list(text), source


def lists_date(probe: Probe) -> tuple[float | None, str]:
    """When the security suite's InRelease was fetched (its mtime)."""
    for path in F.glob(probe, f"{LISTS}/*security*InRelease"):
        st = probe.stat(path)
        if st is not None:
            return F.age_days(st.mtime), path
    return None, f"no {LISTS}/*security*InRelease"


@mlps("mlps.intrusion.security-updates", clause=E_[0], requirement=E_[1], rule="R-SEC-3",
      severity="high", title="no pending security update; package lists fresh",
      cis="CIS Debian 12 1.2.2.1 'Ensure updates, patches, and additional security software "
          "are installed'", commands={"apt-security-packages": SECURITY_PACKAGES},
      params={"max_pending": Key(int, 0, "Security updates that may be pending.", min=0),
              "max_list_age_days": Key(int, 7, "Oldest acceptable apt lists (days since the "
                                               "security suite was fetched).", min=1)},
      remediation="apt-get update && apt-get upgrade (after testing, per R-SEC-5); point apt at "
                  "the internal mirror of bookworm-security")
def security_updates(probe: Probe, ctx: Context):
    """R-SEC-3: an installed package older than the version in the security
    suite is a known, fixed vulnerability (Debian version order, as
    ``apt-get -s upgrade`` computes it). apt records no publication date per
    package: the age reported is how old the lists are -- the oldest pending
    update is at least that old -- and stale lists fail, since they hide
    newer fixes."""
    pkgs = F.packages(probe)
    if pkgs is None:
        return no_dpkg()
    candidates, source = security_candidates(probe)
    if candidates is None:
        return verdict([Finding("no security suite in the apt lists: updates cannot be "
                                "judged", source, rule="R-SEC-3")])
    pending = sorted((name, have, candidates[name]) for name, have in pkgs.items()
                     if name in candidates and M.compare_versions(candidates[name], have) > 0)
    age, where = lists_date(probe)
    age_text = f"{age:.0f} days" if age is not None else "unknown"
    findings = []
    if len(pending) > ctx.params["max_pending"]:
        shown = ", ".join(f"{n} {h} -> {c}" for n, h, c in pending[:8])
        more = f" and {len(pending) - 8} more" if len(pending) > 8 else ""
        findings.append(Finding(f"{len(pending)} security update(s) pending; the oldest is at "
                                f"least {age_text} old (lists {where})",
                                f"{source}: {shown}{more}", rule="R-SEC-3"))
    if age is not None and age > ctx.params["max_list_age_days"]:
        findings.append(Finding(f"apt lists are {age_text} old: newer fixes are not seen",
                                where, rule="R-SEC-3"))
    return verdict(findings, f"{source}: every installed package at or above the security "
                             f"suite's version; lists {age_text} old ({where})")


IDS_PROCESSES = ["wazuh-agentd", "ossec-agentd", "osqueryd", "samhain", "tripwire",
                 "falcon-sensor", "auditbeat", "suricata", "snort"]
AIDE_DBS = ["/var/lib/aide/aide.db", "/var/lib/aide/aide.db.gz"]


@mlps("mlps.intrusion.ids-fim", clause=F_[0], requirement=F_[1], severity="high",
      title="file-integrity or intrusion detection present and recent (AIDE database age, or "
            "an agent running)",
      params={"max_db_age_days": Key(int, 7, "Oldest acceptable AIDE database/check.", min=1),
              "agents": Key(list, IDS_PROCESSES, "Process names of IDS/FIM agents.",
                            item_type=str)},
      remediation="apt-get install aide; aideinit; keep /etc/cron.daily/aide (or "
                  "dailyaidecheck.timer) enabled -- or run the site's HIDS agent")
def ids_fim(probe: Probe, ctx: Context):
    """An agent process running counts; otherwise AIDE's database must exist
    and be younger than max_db_age_days (the daily check rewrites it)."""
    agents = F.running(probe, ctx.params["agents"]) if not probe.recorded else []
    if agents:
        return passed(f"/proc/{agents[0][0]}/comm = {agents[0][1]}")
    dbs = [(p, probe.stat(p)) for p in AIDE_DBS]
    dbs = [(p, st) for p, st in dbs if st is not None]
    if not dbs:
        installed = probe.exists("/usr/bin/aide") or probe.exists("/usr/sbin/aide")
        what = "AIDE installed but never initialised (no database)" if installed else \
            "no file-integrity or intrusion-detection tool"
        return verdict([Finding(what, f"none of {', '.join(AIDE_DBS)}; no "
                                      f"{', '.join(ctx.params['agents'][:4])}, ... running")])
    path, st = max(dbs, key=lambda d: d[1].mtime)
    age = F.age_days(st.mtime)
    if age > ctx.params["max_db_age_days"]:
        return verdict([Finding(f"AIDE database is {age:.0f} days old: no recent check",
                                f"{path} mtime {age:.1f} days ago")])
    return passed(f"{path} updated {age:.1f} days ago")


@mlps("mlps.intrusion.aslr", clause=F_[0], requirement=F_[1], severity="medium",
      title="address space layout randomisation fully on (kernel.randomize_va_space = 2)",
      cis="CIS Debian 12 1.5.1 'Ensure address space layout randomization is enabled'",
      remediation="'kernel.randomize_va_space = 2' in /etc/sysctl.d/60-mlps.conf; sysctl "
                  "--system")
def aslr(probe: Probe, ctx: Context):
    """Without ASLR, memory-corruption exploits know their addresses."""
    value = F.sysctl_runtime(probe, "kernel.randomize_va_space")
    if value is None:
        return not_applicable("no /proc/sys/kernel/randomize_va_space")
    if value != "2":
        return verdict([Finding(f"kernel.randomize_va_space = {value}",
                                f"/proc/sys/kernel/randomize_va_space = {value}")])
    return passed("/proc/sys/kernel/randomize_va_space = 2")

