"""访问控制 access control, GB/T 22239-2019 8.1.4.2 (R-SEC-1; R-ACC-2 separation
of duties, R-ACC-4 least privilege)."""
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

A = ("8.1.4.2 a)", "应对登录的用户分配账户和权限")
B = ("8.1.4.2 b)", "应重命名或删除默认账户，修改默认账户的默认口令")
C = ("8.1.4.2 c)", "应及时删除或停用多余的、过期的账户，避免共享账户的存在")
D = ("8.1.4.2 d)", "应授予管理用户所需的最小权限，实现管理用户的权限分离")
E = ("8.1.4.2 e)", "应由授权主体配置访问控制策略，访问控制策略规定主体对客体的访问规则")

# Debian's system accounts: none may log in or hold a usable password
DEFAULT_ACCOUNTS = ["daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news",
                    "uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody",
                    "_apt", "systemd-network", "systemd-timesync", "messagebus", "sshd",
                    "postgres", "guest", "test", "ftp", "operator"]


@mlps("mlps.access.default-accounts", clause=B[0], requirement=B[1], severity="high",
      title="default and system accounts cannot log in (no shell, no usable password)",
      cis="CIS Debian 12 7.2.8 'Ensure system accounts are secured'",
      params={"accounts": Key(list, DEFAULT_ACCOUNTS, "Default accounts that must be disabled.",
                              item_type=str),
              "uid_below": Key(int, 1000, "Every other account below this UID (except root) "
                                          "counts as a system account too.", min=1)},
      remediation="usermod -s /usr/sbin/nologin -L ACCOUNT (or userdel it)")
def default_accounts(probe: Probe, ctx: Context):
    """A default account with a login shell and a usable password is a known
    name with a guessable or shipped password."""
    rows = F.passwd(probe)
    if not rows:
        return not_applicable("no /etc/passwd")
    shadow = {s.name: s for s in F.shadow(probe) or []}
    names = set(ctx.params["accounts"])
    findings, checked = [], 0
    for a in rows:
        if a.name == "root" or not (a.name in names or a.uid < ctx.params["uid_below"]):
            continue
        checked += 1
        s = shadow.get(a.name)
        usable = s is not None and not s.locked
        if M.can_login(a) and usable:
            findings.append(Finding(f"default/system account {a.name} has a login shell and a "
                                    "usable password", f"{a.line.where()}: {a.line.text}; "
                                                       f"{s.line.where()}: {s.line.text}"))
        elif M.can_login(a) and a.name in names:
            findings.append(Finding(f"default account {a.name} has login shell {a.shell} "
                                    "(password locked)", f"{a.line.where()}: {a.line.text}"))
    return verdict(findings, f"/etc/passwd, /etc/shadow: {checked} default/system account(s), "
                             "none can log in")


ROLES = {"admin": ["sysadm"], "audit": ["audadm"], "security": ["secadm"]}


@mlps("mlps.access.role-separation", clause=D[0], requirement=D[1], rule="R-ACC-2",
      severity="high", title="separate administrator, auditor and security-officer roles "
                             "(三权分立), no person in two",
      params={"roles": Key(dict, ROLES, "Role -> the groups that hold it (admin, audit, "
                                        "security).")},
      remediation="create the groups (groupadd sysadm audadm secadm), put each person in one; "
                  "name the groups in the policy (mlps.access.role-separation roles)")
def role_separation(probe: Probe, ctx: Context):
    """R-ACC-2: system administration, audit and security administration are
    held by different people; each role group must exist and have members,
    and nobody may be in two roles."""
    groups = F.groups(probe)
    if not groups:
        return not_applicable("no /etc/group")
    findings, evidence, holders = [], [], {}
    for role, names in ctx.params["roles"].items():
        names = [names] if isinstance(names, str) else list(names)
        present = [g for g in names if g in groups]
        people = set().union(*(F.members(probe, g) for g in present)) if present else set()
        if not present:
            findings.append(Finding(f"no group for the {role} role", f"none of "
                                    f"{', '.join(names)} in /etc/group"))
        elif not people:
            findings.append(Finding(f"the {role} role ({', '.join(present)}) has no members",
                                    "; ".join(f"{groups[g][2].where()}: {groups[g][2].text}"
                                              for g in present)))
        else:
            evidence.append(f"{role}: {', '.join(present)} = {', '.join(sorted(people))}")
        for person in people:
            holders.setdefault(person, []).append(role)
    for person, roles in sorted(holders.items()):
        if len(roles) > 1:
            findings.append(Finding(f"{person} holds {' and '.join(roles)} roles", "; ".join(
                evidence)))
    return verdict(findings, evidence)


SHARED_NAMES = ["admin", "administrator", "user", "guest", "test", "operator", "support",
                "service", "shared", "public", "temp", "ops", "dba", "oracle", "yibao"]


@mlps("mlps.access.shared-accounts", clause=C[0], requirement=C[1], severity="medium",
      title="no generic (shared) login account; named accounts only",
      params={"names": Key(list, SHARED_NAMES, "Account names that stand for a team, not a "
                                               "person.", item_type=str)},
      remediation="give each person a named account (opskit users ...), lock the generic one "
                  "(usermod -L -s /usr/sbin/nologin); 'opskit perms check' maps accounts to "
                  "people")
def shared_accounts(probe: Probe, ctx: Context):
    """A login-capable account named for a function rather than a person is
    shared; whether a personal-looking account is shared too is for
    'opskit perms' (the declared account-to-person model)."""
    rows = F.passwd(probe)
    if not rows:
        return not_applicable("no /etc/passwd")
    names = {n.lower() for n in ctx.params["names"]}
    findings = [Finding(f"generic account {a.name} can log in ({a.shell})",
                        f"{a.line.where()}: {a.line.text}")
                for a in rows if a.name.lower() in names and M.can_login(a)]
    return verdict(findings, f"/etc/passwd: no login-capable account named "
                             f"{', '.join(sorted(names)[:5])}, ...")


def _modes(probe: Probe, specs):
    """specs: (path or glob, max mode, owners). Returns findings, evidence."""
    findings, evidence = [], []
    for pattern, max_mode, owners in specs:
        for path in F.glob(probe, pattern):
            problem, shown = F.mode_finding(probe, path, max_mode, owners, _uid_names(probe))
            if problem:
                findings.append(Finding(problem, shown))
            elif not shown.endswith("absent"):
                evidence.append(shown)
    return findings, evidence


def _uid_names(probe: Probe) -> dict:
    return {a.uid: a.name for a in F.passwd(probe)} or {0: "root"}


@mlps("mlps.access.account-files", clause=E[0], requirement=E[1], severity="high",
      title="/etc/shadow, gshadow (0640), passwd, group (0644) owned by root",
      cis="CIS Debian 12 7.1.1-7.1.8 (permissions on /etc/passwd, shadow, group, gshadow)",
      remediation="chown root:shadow /etc/shadow /etc/gshadow; chmod 0640 /etc/shadow "
                  "/etc/gshadow; chmod 0644 /etc/passwd /etc/group")
def account_files(probe: Probe, ctx: Context):
    """Password hashes are readable by root (and group shadow) only."""
    findings, evidence = _modes(probe, [("/etc/shadow", 0o640, ("root",)),
                                        ("/etc/gshadow", 0o640, ("root",)),
                                        ("/etc/shadow-", 0o640, ("root",)),
                                        ("/etc/passwd", 0o644, ("root",)),
                                        ("/etc/group", 0o644, ("root",))])
    if not findings and not evidence:
        return not_applicable("no /etc/shadow or /etc/passwd")
    return verdict(findings, evidence)


@mlps("mlps.access.sudoers-files", clause=E[0], requirement=E[1], severity="high",
      title="/etc/sudoers and /etc/sudoers.d/* mode 0440 or stricter, owned by root",
      cis="CIS Debian 12 5.2 (sudo)", remediation="chown root:root /etc/sudoers "
                                                  "/etc/sudoers.d/*; chmod 0440 them")
def sudoers_files(probe: Probe, ctx: Context):
    """Whoever can write sudoers can make themselves root."""
    if probe.read("/etc/sudoers") is None:
        return not_applicable("sudo not installed (/etc/sudoers absent)")
    findings, evidence = _modes(probe, [("/etc/sudoers", 0o440, ("root",)),
                                        ("/etc/sudoers.d/*", 0o440, ("root",)),
                                        ("/etc/sudoers.d", 0o750, ("root",))])
    return verdict(findings, evidence)


@mlps("mlps.access.ssh-host-keys", clause=E[0], requirement=E[1], severity="high",
      title="SSH host private keys mode 0600 (or 0640 group ssh_keys), owned by root",
      cis="CIS Debian 12 5.1.2 'Ensure permissions on SSH private host key files are "
          "configured'", remediation="chown root:root /etc/ssh/ssh_host_*_key; chmod 0600 them")
def ssh_host_keys(probe: Probe, ctx: Context):
    """A readable host key lets anyone impersonate the server."""
    keys = F.glob(probe, "/etc/ssh/ssh_host_*_key")
    if not keys:
        return not_applicable("no /etc/ssh/ssh_host_*_key")
    findings, evidence = _modes(probe, [(k, 0o640, ("root",)) for k in keys])
    for k in keys:
        st = probe.stat(k)
        if st is not None and st.mode & 0o040 and not _group_is(probe, st.gid, "ssh_keys"):
            findings.append(Finding(f"{k} is group-readable by gid {st.gid} (only ssh_keys "
                                    "may be)", f"{k} mode {st.mode & 0o777:04o}"))
    return verdict(findings, evidence)


def _group_is(probe: Probe, gid: int, name: str) -> bool:
    entry = F.groups(probe).get(name)
    return bool(entry and entry[0] == gid)


@mlps("mlps.access.cron-files", clause=E[0], requirement=E[1], severity="medium",
      title="cron files owned by root and closed to others (/etc/crontab 0600, cron dirs "
            "0700)", cis="CIS Debian 12 2.4.1.2-2.4.1.8 (permissions on cron files)",
      remediation="chown root:root /etc/crontab /etc/cron.*; chmod 0600 /etc/crontab; "
                  "chmod 0700 /etc/cron.d /etc/cron.daily /etc/cron.hourly /etc/cron.weekly "
                  "/etc/cron.monthly")
def cron_files(probe: Probe, ctx: Context):
    """Jobs in these files run as root: others must not read or change them."""
    specs = [("/etc/crontab", 0o600, ("root",))] + [
        (f"/etc/cron.{d}", 0o700, ("root",)) for d in ("d", "hourly", "daily", "weekly",
                                                        "monthly")]
    findings, evidence = _modes(probe, specs)
    if not findings and not evidence:
        return not_applicable("no cron files (/etc/crontab, /etc/cron.*)")
    return verdict(findings, evidence)


def _umask_ok(value: str, required: int) -> bool:
    try:
        return int(value, 8) & required == required
    except ValueError:
        return False


def pam_umask(probe: Probe) -> tuple[str | None, str]:
    """The umask pam_umask sets at login (its umask= argument, else login.defs
    UMASK), or None when no login session stack (sshd, login) runs it."""
    for service in ("sshd", "login"):
        entries, _ = F.pam(probe, service, ("session",))
        for e in entries:
            if e.module == "pam_umask.so":
                if e.arg("umask"):
                    return e.arg("umask"), e.where()
                value, where = F.login_defs(probe).get("UMASK", ("022", "/etc/login.defs: "
                                                                        "UMASK unset (022)"))
                return value, f"{e.where()} -> {where}"
    return None, "no pam_umask in the sshd/login session stacks"


@mlps("mlps.access.umask", clause=A[0], requirement=A[1], severity="medium",
      title="login sessions get umask 027 or stricter (pam_umask/login.defs, then shell "
            "startup files)",
      cis="CIS Debian 12 5.4.3.3 'Ensure default user umask is configured'",
      params={"umask": Key(str, "027", "Bits that must be masked (octal).")},
      remediation="'umask 027' in /etc/profile.d/umask.sh (and 'UMASK 027' in /etc/login.defs "
                  "with 'session optional pam_umask.so' in common-session)")
def umask(probe: Probe, ctx: Context):
    """The umask a login shell ends up with: pam_umask's (if a login session
    stack runs it) and then the last ``umask`` in /etc/profile, profile.d,
    bash.bashrc; without either it stays 022. login.defs UMASK alone does
    nothing on Debian unless pam_umask is in the session stack."""
    from .auth import shell_lines
    required = int(ctx.params["umask"], 8)
    value, where = pam_umask(probe)
    for line in shell_lines(probe):
        m = re.search(r"(?:^|[\s;])umask\s+([0-7]{3,4})\b", line.text)
        if m:
            value, where = m.group(1), f"{line.where()}: {line.text}"
    if value is None:
        return verdict([Finding("login sessions keep the default umask 022", where)])
    if not _umask_ok(value, required):
        return verdict([Finding(f"login sessions get umask {value}, weaker than "
                                f"{ctx.params['umask']}", where)])
    return passed(where)


NOPASSWD = re.compile(r"NOPASSWD\s*:|!authenticate")


@mlps("mlps.access.sudo-least-privilege", clause=D[0], requirement=D[1], rule="R-ACC-4",
      severity="medium", title="sudo asks for a password (no NOPASSWD, no !authenticate)",
      cis="CIS Debian 12 5.2.4 'Ensure users must provide password for privilege escalation'",
      remediation="remove NOPASSWD and '!authenticate' from /etc/sudoers and "
                  "/etc/sudoers.d/*; grant only the commands each post needs")
def sudo_least_privilege(probe: Probe, ctx: Context):
    """R-ACC-4: a NOPASSWD rule turns any session of that user (or a stolen
    one) into root without re-authentication."""
    text = probe.read("/etc/sudoers")
    if text is None:
        return not_applicable("sudo not installed (/etc/sudoers absent)")
    findings, files = [], ["/etc/sudoers"] + [
        p for p in F.glob(probe, "/etc/sudoers.d/*") if "." not in p.rsplit("/", 1)[1]
        and not p.endswith("~")]
    for path in files:
        for line in P.logical_lines(probe.read(path) or "", path):
            if NOPASSWD.search(line.text):
                findings.append(Finding("sudo without a password", f"{line.where()}: "
                                                                   f"{line.text}"))
    return verdict(findings, f"no NOPASSWD or !authenticate in {', '.join(files)}")
