"""安全审计 security audit, GB/T 22239-2019 8.1.4.3 (R-SEC-1, R-SEC-4; R-AUD-4
records kept at least 6 months)."""
from __future__ import annotations

import re

from opskit.core.schema import Key

from .. import parsers as P
from ..model import Finding, not_applicable, passed, verdict
from ..probe import Probe
from ..catalogue import Context
from . import facts as F
from . import parse as M
from .common import mlps

A = ("8.1.4.3 a)", "应启用安全审计功能，审计覆盖到每个用户，对重要的用户行为和重要安全事件进行"
                   "审计")
B = ("8.1.4.3 b)", "审计记录应包括事件的日期和时间、用户、事件类型、事件是否成功及其他与审计"
                   "相关的信息")
C = ("8.1.4.3 c)", "应对审计记录进行保护，定期备份，避免受到未预期的删除、修改或覆盖等")
AUDITCTL = ["sh", "-c", "command -v auditctl >/dev/null || exit 127; auditctl -l"]


@mlps("mlps.audit.auditd", clause=A[0], requirement=A[1], severity="high",
      title="auditd installed, enabled at boot and running",
      cis="CIS Debian 12 6.3.1.1-6.3.1.2 (auditd installed and enabled)",
      remediation="apt-get install auditd audispd-plugins; systemctl enable --now auditd")
def auditd(probe: Probe, ctx: Context):
    """The kernel audit trail covers every user only while auditd runs."""
    findings, evidence = [], []
    state, where = F.unit_state(probe, "auditd.service")
    if state == "not-found" and not probe.exists("/sbin/auditd") and \
            not probe.exists("/usr/sbin/auditd"):
        return verdict([Finding("auditd is not installed", "no /usr/sbin/auditd, no "
                                                           "auditd.service")])
    (evidence if state == "enabled" else findings).append(
        where if state == "enabled" else Finding(f"auditd.service is {state}", where))
    if not probe.recorded:
        procs = F.running(probe, ["auditd"])
        if procs:
            evidence.append(f"/proc/{procs[0][0]}/comm = auditd")
        else:
            findings.append(Finding("auditd is not running", f"{len(probe.processes())} "
                                                             "processes, none named auditd"))
    return verdict(findings, evidence)


# what each event class must be watched by (any one pattern)
EVENTS = {
    "logins": [r"/var/log/lastlog", r"/var/run/faillock", r"/run/faillock", r"/var/log/wtmp",
               r"/var/log/btmp", r"/var/log/faillog", r"/var/run/utmp"],
    "privilege use": [r"/etc/sudoers", r"/usr/bin/sudo", r"/bin/su\b", r"/usr/bin/su\b",
                      r"execve.*euid=0", r"euid=0.*execve", r"/var/log/sudo"],
    "account changes": [r"/etc/passwd", r"/etc/shadow", r"/etc/group", r"/etc/gshadow",
                        r"/etc/security/opasswd"],
    "time changes": [r"adjtimex", r"settimeofday", r"clock_settime", r"/etc/localtime"],
}


def audit_rules(probe: Probe) -> tuple[list[str], str]:
    """Loaded rules (``auditctl -l`` on a live host with root) else the
    rules.d files augenrules loads at boot; (lines with place, source)."""
    text, source = probe.command("auditctl", AUDITCTL)
    if text is not None and "No rules" not in text:
        return [f"auditctl -l: {ln}" for ln in text.splitlines() if ln.strip()], "auditctl -l"
    files = F.glob(probe, "/etc/audit/rules.d/*.rules") or F.glob(probe, "/etc/audit/audit.rules")
    rules = []
    for path in files:
        rules += [f"{ln.where()}: {ln.text}" for ln in P.logical_lines(probe.read(path) or "",
                                                                       path)]
    return rules, ", ".join(files) or "no /etc/audit/rules.d/*.rules"


@mlps("mlps.audit.rules", clause=A[0], requirement=A[1], severity="high",
      title="audit rules cover logins, privilege use, account and time changes",
      cis="CIS Debian 12 6.3.3.x (audit rules: sudoers, time, identity, logins, sudo log)",
      commands={"auditctl": AUDITCTL},
      remediation="add rules in /etc/audit/rules.d/50-mlps.rules, e.g. '-w /var/log/lastlog "
                  "-p wa -k logins', '-w /etc/sudoers -p wa -k scope', '-w /etc/passwd -p wa -k "
                  "identity', '-a always,exit -F arch=b64 -S adjtimex,settimeofday,"
                  "clock_settime -k time-change'; augenrules --load")
def rules(probe: Probe, ctx: Context):
    """Each event class needs at least one rule watching it."""
    lines, source = audit_rules(probe)
    if not lines and not F.sshd_installed(probe) and probe.read("/etc/audit/auditd.conf") is None:
        return verdict([Finding("no audit rules (auditd not installed)", source)])
    findings, evidence = [], []
    for event, patterns in EVENTS.items():
        hit = next((ln for ln in lines if any(re.search(p, ln) for p in patterns)), None)
        if hit:
            evidence.append(f"{event}: {hit}")
        else:
            findings.append(Finding(f"no audit rule records {event}", f"{source}: nothing "
                                                                      f"matching {patterns[0]}"
                                                                      ", ..."))
    return verdict(findings, evidence)


REMOTE_SYSLOG = re.compile(r"(^|\s)@@?[\w.\[\]:-]+|type\s*=\s*\"omfwd\"|omrelp")


def remote_forwarding(probe: Probe) -> list[str]:
    """Where logs go to another host: rsyslog forwarding, audisp-remote,
    systemd-journal-upload."""
    found = []
    for path in ["/etc/rsyslog.conf"] + F.glob(probe, "/etc/rsyslog.d/*.conf"):
        for line in P.logical_lines(probe.read(path) or "", path):
            if REMOTE_SYSLOG.search(line.text):
                found.append(f"{line.where()}: {line.text}")
    plugin = F.conf_dir_settings(probe, "/etc/audit/plugins.d/au-remote.conf", None)
    remote = F.conf_dir_settings(probe, "/etc/audit/audisp-remote.conf", None)
    if plugin.get("active", ("",))[0] == "yes" and remote.get("remote_server", ("",))[0]:
        found.append(f"{plugin['active'][1]}; {remote['remote_server'][1]}")
    state, where = F.unit_state(probe, "systemd-journal-upload.service")
    if state == "enabled":
        found.append(where)
    return found


def rotations(probe: Probe) -> list[M.Rotation]:
    defaults = {"rotate": 0, "period": None}
    out = M.parse_logrotate(probe.read("/etc/logrotate.conf") or "", "/etc/logrotate.conf",
                            defaults)
    for path in F.glob(probe, "/etc/logrotate.d/*"):
        out += M.parse_logrotate(probe.read(path) or "", path, dict(defaults))
    return out


AUTH_LOGS = ["/var/log/auth.log", "/var/log/secure"]


@mlps("mlps.audit.retention", clause=C[0], requirement=C[1], rule="R-AUD-4", severity="high",
      title="logs kept at least 6 months: forwarded to a log host, or rotated locally for "
            "180 days (auditd keep_logs)",
      params={"min_days": Key(int, 180, "Days the records must be kept.", min=1)},
      remediation="forward to the central log host (rsyslog '*.* @@loghost:514' or "
                  "audisp-remote) -- or keep locally: auditd.conf 'max_log_file_action = "
                  "keep_logs', logrotate 'weekly' + 'rotate 26' for auth.log")
def retention(probe: Probe, ctx: Context):
    """R-AUD-4: forwarding to a remote log host counts (the host keeps them);
    otherwise auditd must never delete (max_log_file_action keep_logs) and
    logrotate must keep the authentication log for min_days."""
    forward = remote_forwarding(probe)
    if forward:
        return passed([f"forwarded: {f}" for f in forward])
    findings, evidence = [], []
    conf = F.conf_dir_settings(probe, "/etc/audit/auditd.conf", None)
    action, where = conf.get("max_log_file_action", ("", "/etc/audit/auditd.conf absent"))
    if action.lower() == "keep_logs":
        evidence.append(where)
    else:
        findings.append(Finding(f"auditd max_log_file_action {action or '(unset)'} deletes "
                                "old audit logs and nothing is forwarded", where, rule="R-AUD-4"))
    rot = rotations(probe)
    for log in AUTH_LOGS:
        covering = [r for r in rot if M.covers(r, log)]
        if not covering:
            continue
        r = covering[-1]
        if r.days is None or r.days < ctx.params["min_days"]:
            kept = r.days if r.days is not None else "an unknown number of"
            findings.append(Finding(f"{log} is kept {kept} days (policy "
                                    f"{ctx.params['min_days']})", r.where, rule="R-AUD-4"))
        else:
            evidence.append(f"{log}: {r.days} days ({r.where})")
    journal = F.conf_dir_settings(probe, "/etc/systemd/journald.conf",
                                  "/etc/systemd/journald.conf.d")
    if not any(M.covers(r, log) for r in rot for log in AUTH_LOGS):
        keep = journal.get("MaxRetentionSec", ("", ""))
        findings.append(Finding("no rotation keeps an authentication log for "
                                f"{ctx.params['min_days']} days, and no forwarding",
                                f"no logrotate stanza for {', '.join(AUTH_LOGS)}; journald "
                                f"{keep[1] or 'MaxRetentionSec unset (size-based only)'}",
                                rule="R-AUD-4"))
    return verdict(findings, evidence)


NTP_SERVICES = {"chrony.service": ("/etc/chrony/chrony.conf", r"^(server|pool|peer)\s"),
                "systemd-timesyncd.service": ("/etc/systemd/timesyncd.conf", r"^NTP=\S"),
                "ntpsec.service": ("/etc/ntpsec/ntp.conf", r"^(server|pool)\s"),
                "ntp.service": ("/etc/ntp.conf", r"^(server|pool)\s")}
CHRONYC = ["sh", "-c", "command -v chronyc >/dev/null || exit 127; chronyc -n tracking"]


def ntp_sources(probe: Probe, conf: str, pattern: str) -> list[str]:
    paths = [conf] + F.glob(probe, conf.rsplit(".", 1)[0] + ".conf.d/*.conf") + \
        F.glob(probe, "/etc/chrony/sources.d/*.sources")
    out = []
    for path in paths:
        for line in P.logical_lines(probe.read(path) or "", path, continuation=False):
            if re.search(pattern, line.text):
                out.append(f"{line.where()}: {line.text}")
    return out


@mlps("mlps.audit.time-sync", clause=B[0], requirement=B[1], severity="medium",
      title="clock synchronised: an NTP client enabled with a configured source (and, where "
            "it can be asked, a small offset)",
      cis="CIS Debian 12 2.3.1.1 'Ensure a single time synchronization daemon is in use'",
      commands={"chronyc": CHRONYC},
      params={"max_offset": Key(float, 1.0, "Largest clock offset in seconds.", check=None)},
      remediation="configure the site NTP servers (chrony.conf 'server ntp1.example iburst' or "
                  "timesyncd.conf 'NTP=...') and enable the service")
def time_sync(probe: Probe, ctx: Context):
    """Audit records are only comparable with a synchronised clock: a
    time-sync daemon enabled (systemctl is-enabled semantics), an explicit
    source in its config (a compiled-in fallback pool is not one the site
    chose), and chronyc's offset below max_offset when chrony answers."""
    findings, evidence = [], []
    enabled = []
    for unit, (conf, pattern) in NTP_SERVICES.items():
        state, where = F.unit_state(probe, unit)
        if state != "enabled":
            continue
        sources = ntp_sources(probe, conf, pattern)
        enabled.append(unit)
        if sources:
            evidence += [where] + sources[:3]
        else:
            findings.append(Finding(f"{unit} is enabled but {conf} names no time source",
                                    f"{where}; no server/pool/NTP= in {conf}"))
    if not enabled:
        return verdict([Finding("no time synchronisation service is enabled",
                                f"none of {', '.join(NTP_SERVICES)} enabled")])
    text, source = probe.command("chronyc", CHRONYC)
    if text and "chrony.service" in enabled:
        m = re.search(r"System time\s*:\s*([\d.]+) seconds", text)
        if m and float(m.group(1)) > ctx.params["max_offset"]:
            findings.append(Finding(f"clock offset {m.group(1)} s (policy "
                                    f"{ctx.params['max_offset']} s)", f"{source}: {m.group(0)}"))
        elif m:
            evidence.append(f"{source}: {m.group(0)}")
    elif probe.exists("/run/systemd/timesync/synchronized"):
        evidence.append("/run/systemd/timesync/synchronized exists (timesyncd synchronised)")
    return verdict(findings, evidence)


@mlps("mlps.audit.record-protection", clause=C[0], requirement=C[1], severity="high",
      title="audit records protected: log files closed to others, audit rules immutable "
            "(-e 2)",
      cis="CIS Debian 12 6.3.4.x (audit log file permissions), 6.3.3.20 (audit configuration "
          "immutable)", commands={"auditctl": AUDITCTL},
      params={"require_immutable": Key(bool, True, "Require '-e 2' (rules locked until "
                                                   "reboot).")},
      remediation="chmod 0700 /var/log/audit; chmod 0600 /var/log/audit/*; chmod 0640 "
                  "/var/log/auth.log; '-e 2' as the last line of /etc/audit/rules.d/99-finalize"
                  ".rules")
def record_protection(probe: Probe, ctx: Context):
    """Only root (and group adm for syslog files) may read or change audit
    records, and with -e 2 not even root can switch auditing off unseen."""
    findings, evidence = [], []
    names = {a.uid: a.name for a in F.passwd(probe)} or {0: "root"}
    specs = [("/var/log/audit", 0o750), ("/var/log/audit/audit.log", 0o640),
             ("/var/log/auth.log", 0o640), ("/var/log/secure", 0o600)]
    for path, max_mode in specs:
        problem, shown = F.mode_finding(probe, path, max_mode, ("root", "syslog"), names)
        if problem:
            findings.append(Finding(problem, shown))
        elif not shown.endswith("absent"):
            evidence.append(shown)
    if ctx.params["require_immutable"]:
        lines, source = audit_rules(probe)
        lock = [ln for ln in lines if re.search(r"(^|: )-e\s+2\b|enabled 2", ln)]
        if lock:
            evidence.append(lock[-1])
        else:
            findings.append(Finding("audit rules are not immutable (no '-e 2')", source))
    if not probe.exists("/var/log/audit") and not findings:
        findings.append(Finding("no /var/log/audit: no audit records to protect",
                                "/var/log/audit absent"))
    return verdict(findings, evidence)
