"""身份鉴别 identification and authentication, GB/T 22239-2019 8.1.4.1 (R-SEC-1;
R-ACC-7 for administrators' multi-factor authentication)."""
from __future__ import annotations

from opskit.core.schema import Key

from .. import parsers as P
from ..model import FAIL, PASS, Finding, not_applicable, passed, verdict
from ..network import listening_sockets
from ..probe import Probe
from ..catalogue import Context
from . import facts as F
from . import parse as M
from .common import mlps, no_dpkg

A = ("8.1.4.1 a)", "应对登录的用户进行身份标识和鉴别，身份标识具有唯一性，身份鉴别信息具有"
                   "复杂度要求并定期更换")
B = ("8.1.4.1 b)", "应具有登录失败处理功能，应配置并启用结束会话、限制非法登录次数和当登录连接"
                   "超时自动退出等相关措施")
C = ("8.1.4.1 c)", "当进行远程管理时，应采取必要措施防止鉴别信息在网络传输过程中被窃听")
D = ("8.1.4.1 d)", "应采用口令、密码技术、生物技术等两种或两种以上组合的鉴别技术对用户进行"
                   "身份鉴别，且其中一种鉴别技术至少应使用密码技术来实现")
CMD_SSHD = {"sshd-T": F.SSHD_T}


def _shadow_or_na(probe: Probe):
    rows = F.shadow(probe)
    if rows is None:
        return None, not_applicable("no /etc/shadow to read (or not readable)")
    return rows, None


@mlps("mlps.auth.empty-passwords", clause=A[0], requirement=A[1], severity="critical",
      title="no account has an empty password",
      cis="CIS Debian 12 7.2.2 'Ensure /etc/shadow password fields are not empty'",
      remediation="passwd -l USER (lock) or set a password; never leave the shadow field empty")
def empty_passwords(probe: Probe, ctx: Context):
    """An empty shadow password field lets anyone log in as that user."""
    rows, na = _shadow_or_na(probe)
    if na:
        return na
    findings = [Finding(f"account {s.name} has an empty password", f"{s.line.where()}: "
                        f"{s.line.text}") for s in rows if s.password == ""]
    return verdict(findings, f"/etc/shadow: {len(rows)} account(s), none with an empty "
                             "password field")


@mlps("mlps.auth.unique-uid0", clause=A[0], requirement=A[1], severity="critical",
      title="root is the only account with UID 0",
      cis="CIS Debian 12 7.2.9 'Ensure root is the only UID 0 account'",
      remediation="give the other UID-0 account its own UID (usermod -u) or remove it; "
                  "administrators use sudo under their own names")
def unique_uid0(probe: Probe, ctx: Context):
    """A second UID 0 account is root under another name: actions cannot be
    attributed to a person (身份标识唯一)."""
    rows = F.passwd(probe)
    if not rows:
        return not_applicable("no /etc/passwd")
    zero = [a for a in rows if a.uid == 0]
    findings = [Finding(f"account {a.name} has UID 0 besides root", f"{a.line.where()}: "
                        f"{a.line.text}") for a in zero if a.name != "root"]
    return verdict(findings, [f"{a.line.where()}: {a.line.text}" for a in zero])


@mlps("mlps.auth.unique-ids", clause=A[0], requirement=A[1], severity="high",
      title="user names and UIDs are unique",
      cis="CIS Debian 12 7.2.5, 7.2.7 'Ensure no duplicate UIDs / user names exist'",
      remediation="give each account its own UID and name (usermod -u / -l)")
def unique_ids(probe: Probe, ctx: Context):
    """Two accounts sharing a UID (or name) are one identity to the kernel."""
    rows = F.passwd(probe)
    if not rows:
        return not_applicable("no /etc/passwd")
    findings, seen_uid, seen_name = [], {}, {}
    for a in rows:
        if a.uid in seen_uid and a.uid != 0:
            findings.append(Finding(f"UID {a.uid} is shared by {seen_uid[a.uid].name} and "
                                    f"{a.name}", f"{a.line.where()}: {a.line.text}"))
        if a.name in seen_name:
            findings.append(Finding(f"user name {a.name} appears twice",
                                    f"{a.line.where()}: {a.line.text}"))
        seen_uid.setdefault(a.uid, a)
        seen_name.setdefault(a.name, a)
    return verdict(findings, f"/etc/passwd: {len(rows)} accounts, names and UIDs unique")


# --- password quality and age ----------------------------------------------------------------

CLASS_CREDITS = ("dcredit", "ucredit", "lcredit", "ocredit")


def pwquality_settings(probe: Probe, entry) -> dict[str, tuple[str, str]]:
    """pwquality.conf, then pwquality.conf.d/*.conf, then the module's
    arguments (libpwquality reads them in this order; later wins)."""
    out = F.conf_dir_settings(probe, "/etc/security/pwquality.conf",
                              "/etc/security/pwquality.conf.d")
    for arg in entry.args:
        key, eq, value = arg.partition("=")
        if eq:
            out[key] = (value, entry.where())
    return out


def _int(value: str, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@mlps("mlps.auth.password-complexity", clause=A[0], requirement=A[1], severity="high",
      title="pam_pwquality enforces length and character classes in the passwd stack",
      cis="CIS Debian 12 5.3.3.2 'Configure pam_pwquality module'",
      params={"services": Key(list, ["passwd"], "PAM services whose password stack is "
                                                "checked.", item_type=str),
              "minlen": Key(int, 8, "Shortest password allowed.", min=1),
              "minclass": Key(int, 3, "Character classes required (digits, upper, lower, "
                                      "other).", min=1)},
      remediation="apt-get install libpam-pwquality; in /etc/security/pwquality.conf set "
                  "minlen = 8 and minclass = 3 (and enforce_for_root); make sure "
                  "/etc/pam.d/common-password has 'password requisite pam_pwquality.so'")
def password_complexity(probe: Probe, ctx: Context):
    """pam_pwquality (or pam_passwdqc) must be in the password stack the
    service really runs (@include, include and substack followed), required or
    requisite, with minlen and character classes at least the policy's."""
    findings, evidence = [], []
    for service in ctx.params["services"]:
        entries, files = F.pam(probe, service, ("password",))
        if not files:
            findings.append(Finding(f"no PAM configuration for service {service}",
                                    f"/etc/pam.d/{service} and /etc/pam.d/other absent"))
            continue
        quality = [e for e in entries if e.module in ("pam_pwquality.so", "pam_cracklib.so")]
        if not quality:
            findings.append(Finding(f"no pam_pwquality in the password stack of {service}",
                                    f"stack read from {', '.join(files)}"))
            continue
        entry = quality[0]
        if entry.control not in ("required", "requisite") and "default=die" not in entry.control \
                and "default=bad" not in entry.control:
            findings.append(Finding(f"pam_pwquality is '{entry.control}' in {service}: its "
                                    "verdict is not enforced", entry.where()))
            continue
        settings = pwquality_settings(probe, entry)
        minlen = _int(settings.get("minlen", ("8",))[0], 8)
        required = sum(1 for c in CLASS_CREDITS if _int(settings.get(c, ("0",))[0], 0) < 0)
        minclass = max(_int(settings.get("minclass", ("0",))[0], 0), required)
        shown = "; ".join(f"{k}={v} ({w})" for k, (v, w) in settings.items()
                          if k in ("minlen", "minclass") + CLASS_CREDITS) or "library defaults"
        if minlen < ctx.params["minlen"]:
            findings.append(Finding(f"{service}: pam_pwquality minlen {minlen} < "
                                    f"{ctx.params['minlen']}", f"{entry.where()}; {shown}"))
        if minclass < ctx.params["minclass"]:
            findings.append(Finding(f"{service}: pam_pwquality requires {minclass} character "
                                    f"class(es), policy {ctx.params['minclass']}",
                                    f"{entry.where()}; {shown}"))
        evidence.append(f"{service}: {entry.where()}; minlen {minlen}, classes {minclass} "
                        f"({shown})")
    return verdict(findings, evidence)


MAX_DAYS = Key(int, 90, "Longest password lifetime in days.", min=1)


@mlps("mlps.auth.password-max-age", clause=A[0], requirement=A[1], severity="medium",
      title="login.defs PASS_MAX_DAYS within the policy (new accounts)",
      cis="CIS Debian 12 5.4.1.1 'Ensure password expiration is configured'",
      params={"max_days": MAX_DAYS},
      remediation="set 'PASS_MAX_DAYS 90' in /etc/login.defs")
def password_max_age(probe: Probe, ctx: Context):
    """PASS_MAX_DAYS is what useradd writes into each new account's shadow
    entry (the last assignment in login.defs counts)."""
    defs = F.login_defs(probe)
    if probe.read("/etc/login.defs") is None:
        return not_applicable("no /etc/login.defs")
    value, where = defs.get("PASS_MAX_DAYS", ("99999", "/etc/login.defs: PASS_MAX_DAYS unset "
                                                        "(no expiry)"))
    days = _int(value, 99999)
    if days < 0 or days > ctx.params["max_days"]:
        return verdict([Finding(f"PASS_MAX_DAYS is {value}, more than "
                                f"{ctx.params['max_days']} days", where)])
    return passed(where)


@mlps("mlps.auth.account-password-age", clause=A[0], requirement=A[1], severity="medium",
      title="every account with a password expires it within the policy (shadow field 5)",
      cis="CIS Debian 12 5.4.1.1 'Ensure password expiration is configured'",
      params={"max_days": MAX_DAYS},
      remediation="chage --maxdays 90 USER for each listed account")
def account_password_age(probe: Probe, ctx: Context):
    """login.defs only applies to accounts created after it: each existing
    account with a usable password must carry a maximum age itself."""
    rows, na = _shadow_or_na(probe)
    if na:
        return na
    limit = ctx.params["max_days"]
    findings, checked = [], 0
    for s in rows:
        if s.locked or s.password == "":
            continue
        checked += 1
        days = _int(s.max, -1)
        if s.max == "" or days < 0 or days > limit:
            findings.append(Finding(f"password of {s.name} expires after "
                                    f"{s.max or 'never'} days (policy {limit})",
                                    f"{s.line.where()}: {s.line.text}"))
    return verdict(findings, f"/etc/shadow: {checked} account(s) with a password, each "
                             f"with a maximum age <= {limit} days")


# --- login failures and session timeouts --------------------------------------------------------

@mlps("mlps.auth.login-lockout", clause=B[0], requirement=B[1], severity="high",
      title="pam_faillock locks an account after repeated failures (sshd and login stacks)",
      cis="CIS Debian 12 5.3.3.1 'Configure pam_faillock module'",
      params={"services": Key(list, ["sshd", "login"], "PAM services checked.", item_type=str),
              "max_deny": Key(int, 5, "Most failures allowed before the lock.", min=1),
              "min_unlock_time": Key(int, 600, "Shortest lock in seconds (0 = until an "
                                               "administrator unlocks).", min=0)},
      remediation="add 'auth required pam_faillock.so preauth' before pam_unix and 'auth "
                  "[default=die] pam_faillock.so authfail' after it in common-auth, 'account "
                  "required pam_faillock.so' in common-account; deny = 5, unlock_time = 900 in "
                  "/etc/security/faillock.conf")
def login_lockout(probe: Probe, ctx: Context):
    """The auth stack each service runs must contain pam_faillock both before
    the password check (preauth: refuse a locked account) and after it
    (authfail: count the failure); deny and unlock_time from faillock.conf,
    overridden by the module arguments."""
    findings, evidence = [], []
    conf = F.conf_dir_settings(probe, "/etc/security/faillock.conf", None)
    for service in ctx.params["services"]:
        entries, files = F.pam(probe, service, ("auth",))
        if not files:
            continue
        lock = [e for e in entries if e.module == "pam_faillock.so"]
        modes = {m for e in lock for m in ("preauth", "authfail") if e.arg(m) is not None}
        if not lock or modes != {"preauth", "authfail"}:
            missing = ", ".join(sorted({"preauth", "authfail"} - modes))
            findings.append(Finding(f"{service}: no pam_faillock {missing} in the auth stack",
                                    f"auth stack read from {', '.join(files)}"))
            continue
        settings = dict(conf)
        for e in lock:
            for key in ("deny", "unlock_time"):
                if e.arg(key):
                    settings[key] = (e.arg(key), e.where())
        deny, deny_where = settings.get("deny", ("3", "pam_faillock default deny=3"))
        unlock, unlock_where = settings.get("unlock_time", ("600", "pam_faillock default "
                                                                    "unlock_time=600"))
        deny_n, unlock_n = _int(deny, 3), _int(unlock.replace("never", "0"), 600)
        if deny_n == 0 or deny_n > ctx.params["max_deny"]:
            findings.append(Finding(f"{service}: lock after {deny} failures (policy "
                                    f"{ctx.params['max_deny']})", deny_where))
        if unlock_n and unlock_n < ctx.params["min_unlock_time"]:
            findings.append(Finding(f"{service}: lock lasts {unlock} s (policy "
                                    f"{ctx.params['min_unlock_time']} s)", unlock_where))
        evidence.append(f"{service}: {lock[0].where()}; deny={deny} ({deny_where}); "
                        f"unlock_time={unlock} ({unlock_where})")
    if not findings and not evidence:
        return not_applicable(f"no PAM configuration for {', '.join(ctx.params['services'])}")
    return verdict(findings, evidence)


SHELL_FILES = ("/etc/profile", "/etc/bash.bashrc")


def shell_lines(probe: Probe):
    """Logical lines of the files a login shell reads (/etc/profile,
    /etc/profile.d/*.sh, /etc/bash.bashrc)."""
    paths = list(SHELL_FILES[:1]) + F.glob(probe, "/etc/profile.d/*.sh") + list(SHELL_FILES[1:])
    for path in paths:
        text = probe.read(path)
        if text is not None:
            yield from P.logical_lines(text, path)


@mlps("mlps.auth.shell-timeout", clause=B[0], requirement=B[1], severity="medium",
      title="idle shells end: TMOUT set, readonly, within the policy",
      cis="CIS Debian 12 5.4.3.2 'Ensure default user shell timeout is configured'",
      params={"max_seconds": Key(int, 900, "Longest idle time in seconds.", min=1)},
      remediation="create /etc/profile.d/tmout.sh with 'readonly TMOUT=600' and "
                  "'export TMOUT'")
def shell_timeout(probe: Probe, ctx: Context):
    """TMOUT must be set (a positive number no larger than the policy) and
    readonly, so a user cannot switch it off."""
    import re
    value, where, readonly = None, None, None
    for line in shell_lines(probe):
        text = line.text
        m = re.search(r"(?:^|[\s;])(?:export\s+|readonly\s+|declare\s+-[a-z]*\s+|typeset\s+"
                      r"-[a-z]*\s+)?TMOUT=(\d+)", text)
        if m:
            value, where = int(m.group(1)), f"{line.where()}: {text}"
        if re.search(r"(?:^|[\s;])(?:readonly|declare\s+-[a-z]*r[a-z]*|typeset\s+-[a-z]*r"
                     r"[a-z]*)\s+(?:[A-Za-z_]+\s+)*TMOUT\b", text):
            readonly = f"{line.where()}: {text}"
    findings = []
    if value is None:
        findings.append(Finding("TMOUT is not set", "no TMOUT= in /etc/profile, "
                                                    "/etc/profile.d/*.sh, /etc/bash.bashrc"))
    elif value == 0 or value > ctx.params["max_seconds"]:
        findings.append(Finding(f"TMOUT={value}: idle shells stay open longer than "
                                f"{ctx.params['max_seconds']} s", where))
    if value is not None and readonly is None:
        findings.append(Finding("TMOUT is not readonly: a user can unset it", where))
    return verdict(findings, [w for w in (where, readonly) if w])


def _sshd_or_na(probe: Probe):
    if not F.sshd_installed(probe):
        return None, not_applicable("no sshd (/etc/ssh/sshd_config and /usr/sbin/sshd absent)")
    return F.sshd_effective(probe), None


@mlps("mlps.auth.ssh-idle-timeout", clause=B[0], requirement=B[1], severity="medium",
      title="sshd ends idle sessions (ClientAliveInterval x ClientAliveCountMax)",
      cis="CIS Debian 12 5.1.7 'Ensure sshd ClientAliveInterval and ClientAliveCountMax are "
          "configured'", commands=CMD_SSHD,
      params={"max_seconds": Key(int, 900, "Longest unanswered idle time in seconds.", min=1)},
      remediation="in /etc/ssh/sshd_config: 'ClientAliveInterval 300' and "
                  "'ClientAliveCountMax 3' (or less)")
def ssh_idle_timeout(probe: Probe, ctx: Context):
    """sshd drops a client that does not answer ClientAliveCountMax probes sent
    every ClientAliveInterval seconds; 0 disables it (effective config)."""
    config, na = _sshd_or_na(probe)
    if na:
        return na
    intervals = config.candidates("clientaliveinterval")
    counts = config.candidates("clientalivecountmax")
    findings = []
    # a Match block may set one and leave the other global: judge every pairing
    for interval, w1 in intervals:
        for count, w2 in counts:
            i, c = _int(interval, 0), _int(count, 3)
            if i <= 0 or c <= 0:
                findings.append(Finding(f"sshd ClientAliveInterval {interval} / CountMax {count}: "
                                        "idle sessions never end", f"{w1}; {w2}"))
            elif i * c > ctx.params["max_seconds"]:
                findings.append(Finding(f"sshd ends idle sessions after {i * c} s (policy "
                                        f"{ctx.params['max_seconds']} s)", f"{w1}; {w2}"))
    return verdict(findings, [w for _, w in intervals + counts])


def _sshd_value_check(probe, key, good, message):
    config, na = _sshd_or_na(probe)
    if na:
        return na
    found = config.candidates(key)      # global and every Match block's value
    return verdict([Finding(message.format(value=value), where) for value, where in found
                    if value.lower() not in good], [where for _, where in found])


@mlps("mlps.auth.ssh-empty-passwords", clause=A[0], requirement=A[1], severity="critical",
      title="sshd refuses empty passwords (PermitEmptyPasswords no)",
      cis="CIS Debian 12 5.1.19 'Ensure sshd PermitEmptyPasswords is disabled'",
      commands=CMD_SSHD, remediation="'PermitEmptyPasswords no' in /etc/ssh/sshd_config")
def ssh_empty_passwords(probe: Probe, ctx: Context):
    """PermitEmptyPasswords yes lets an account without a password log in."""
    return _sshd_value_check(probe, "permitemptypasswords", ("no",),
                             "sshd PermitEmptyPasswords is {value}")


@mlps("mlps.auth.ssh-max-auth-tries", clause=B[0], requirement=B[1], severity="medium",
      title="sshd limits authentication attempts per connection (MaxAuthTries)",
      cis="CIS Debian 12 5.1.14 'Ensure sshd MaxAuthTries is configured'", commands=CMD_SSHD,
      params={"max_tries": Key(int, 4, "Most attempts per connection.", min=1)},
      remediation="'MaxAuthTries 4' in /etc/ssh/sshd_config")
def ssh_max_auth_tries(probe: Probe, ctx: Context):
    """限制非法登录次数: sshd drops the connection after MaxAuthTries failures."""
    config, na = _sshd_or_na(probe)
    if na:
        return na
    found = config.candidates("maxauthtries")
    return verdict([Finding(f"sshd MaxAuthTries {value} (policy {ctx.params['max_tries']})", where)
                    for value, where in found if _int(value, 6) > ctx.params["max_tries"]],
                   [where for _, where in found])


# --- remote administration over encrypted channels ------------------------------------------------

CLEARTEXT_PORTS = {("tcp", 21): "ftp", ("tcp", 23): "telnet", ("tcp", 512): "rexec",
                   ("tcp", 513): "rlogin", ("tcp", 514): "rsh", ("udp", 69): "tftp",
                   ("tcp", 20): "ftp-data", ("tcp", 992): "telnets"}
CLEARTEXT_PACKAGES = ["telnetd", "inetutils-telnetd", "telnetd-ssl", "rsh-server",
                      "rsh-redone-server", "rlogin-server", "vsftpd", "proftpd-basic",
                      "pure-ftpd", "inetutils-ftpd", "tftpd", "tftpd-hpa", "atftpd",
                      "openbsd-inetd", "inetutils-inetd", "xinetd"]


@mlps("mlps.auth.no-cleartext-listeners", clause=C[0], requirement=C[1], severity="critical",
      title="no telnet, rsh, rlogin, rexec, ftp or tftp socket is listening",
      cis="CIS Debian 12 2.2 'Ensure telnet/ftp/tftp server services are not in use'",
      remediation="stop and purge the service (apt-get purge telnetd vsftpd ...); administer "
                  "over SSH only")
def no_cleartext_listeners(probe: Probe, ctx: Context):
    """/proc/net/tcp*, udp*: a listener on a clear-text remote-access port
    sends credentials readable on the wire."""
    sockets, read = listening_sockets(probe)
    if not read:
        return not_applicable("no /proc/net/tcp, tcp6, udp or udp6")
    findings = []
    for sock in sockets:
        name = CLEARTEXT_PORTS.get((sock.transport, sock.port))
        if name:
            findings.append(Finding(f"{name} ({sock.transport}/{sock.port}) is listening on "
                                    f"{sock.address}", f"/proc/net/{sock.proto}:{sock.line}: "
                                                       f"{sock.endpoint()} uid {sock.uid}"))
    return verdict(findings, f"{len(sockets)} socket(s) in {', '.join(read)}; none on ports "
                             f"{', '.join(str(p) for _, p in sorted(CLEARTEXT_PORTS))}")


@mlps("mlps.auth.no-cleartext-packages", clause=C[0], requirement=C[1], severity="high",
      title="no telnet, rsh, ftp or tftp server package installed",
      cis="CIS Debian 12 2.2 'Ensure ... server services are not in use'",
      params={"packages": Key(list, CLEARTEXT_PACKAGES, "Server packages that must not be "
                                                        "installed.", item_type=str)},
      remediation="apt-get purge the listed packages")
def no_cleartext_packages(probe: Probe, ctx: Context):
    """A clear-text server installed but stopped is one 'systemctl start' away."""
    pkgs = F.packages(probe)
    if pkgs is None:
        return no_dpkg()
    found = [p for p in ctx.params["packages"] if p in pkgs]
    return verdict([Finding(f"package {p} {pkgs[p]} is installed",
                            f"/var/lib/dpkg/status: Package: {p} (install ok installed)")
                    for p in found], f"/var/lib/dpkg/status: none of "
                                     f"{', '.join(ctx.params['packages'])} installed")


@mlps("mlps.auth.ssh-root-login", clause=C[0], requirement=C[1], severity="high",
      title="sshd PermitRootLogin as the policy says (default: no)",
      cis="CIS Debian 12 5.1.20 'Ensure sshd PermitRootLogin is disabled'", commands=CMD_SSHD,
      params={"allowed": Key(list, ["no"], "Accepted PermitRootLogin values.", item_type=str)},
      remediation="'PermitRootLogin no' in /etc/ssh/sshd_config; administrators log in under "
                  "their own names and use sudo")
def ssh_root_login(probe: Probe, ctx: Context):
    """Direct root login hides who acted (身份标识唯一) and exposes the most
    powerful account to password guessing."""
    return _sshd_value_check(probe, "permitrootlogin", [v.lower() for v in ctx.params["allowed"]],
                             "sshd PermitRootLogin is {value}")


@mlps("mlps.auth.ssh-password-auth", clause=C[0], requirement=C[1], severity="medium",
      title="sshd PasswordAuthentication as the policy says (default: no)",
      cis="CIS Debian 12 5.1 (key-based authentication)", commands=CMD_SSHD,
      params={"allow_passwords": Key(bool, False, "Allow password logins over SSH.")},
      remediation="'PasswordAuthentication no' in /etc/ssh/sshd_config once every "
                  "administrator has a key (or set allow_passwords: true in the policy)")
def ssh_password_auth(probe: Probe, ctx: Context):
    """Passwords over SSH are encrypted but guessable; the policy decides."""
    good = ("yes", "no") if ctx.params["allow_passwords"] else ("no",)
    result = _sshd_value_check(probe, "passwordauthentication", good,
                               "sshd PasswordAuthentication is {value}")
    if ctx.params["allow_passwords"] or result.status not in (PASS, FAIL):
        return result
    return verdict(result.findings + _passwords_through_pam(F.sshd_effective(probe)),
                   result.evidence)


def _passwords_through_pam(config) -> list[Finding]:
    """PasswordAuthentication no does not stop passwords: with UsePAM yes,
    keyboard-interactive asks what the PAM stack asks, a password on Debian.
    Fine only where every AuthenticationMethods value wants a key first."""
    usepam, w_pam = config.get("usepam")
    kbd = [(v, w) for v, w in config.candidates("kbdinteractiveauthentication") if v == "yes"]
    if usepam != "yes" or not kbd:
        return []
    methods = config.candidates("authenticationmethods")
    if all(v != "any" and all("publickey" in alt.split(",") for alt in v.split())
           for v, _ in methods):
        return []
    return [Finding("sshd takes passwords through keyboard-interactive (UsePAM yes, "
                    "KbdInteractiveAuthentication yes)", f"{w_pam}; {kbd[0][1]}")]


WEAK_CRYPTO = ("cbc", "arcfour", "3des", "hmac-md5", "hmac-sha1-96", "umac-64",
               "diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1",
               "diffie-hellman-group-exchange-sha1")


@mlps("mlps.auth.ssh-crypto", clause=C[0], requirement=C[1], severity="medium",
      title="sshd offers no weak cipher, MAC or key exchange",
      cis="CIS Debian 12 5.1.4, 5.1.12, 5.1.15 (sshd Ciphers, KexAlgorithms, MACs)",
      commands=CMD_SSHD,
      remediation="set Ciphers, MACs and KexAlgorithms in /etc/ssh/sshd_config to strong "
                  "ones (aes256-gcm@openssh.com, chacha20-poly1305@openssh.com, "
                  "hmac-sha2-512-etm@openssh.com, curve25519-sha256)")
def ssh_crypto(probe: Probe, ctx: Context):
    """CBC ciphers, MD5/SHA1-96 MACs and SHA-1 key exchange are breakable; the
    effective lists come from ``sshd -T`` (the files list only overrides)."""
    config, na = _sshd_or_na(probe)
    if na:
        return na
    findings, evidence = [], []
    for key in ("ciphers", "macs", "kexalgorithms"):
        value, where = config.get(key)
        if not value:
            evidence.append(f"{key}: OpenSSH defaults ({where})")
            continue
        weak = [a for a in value.split(",") if any(w in a for w in WEAK_CRYPTO)]
        if weak:
            findings.append(Finding(f"sshd {key} include weak {', '.join(weak)}", where))
        else:
            evidence.append(where)
    return verdict(findings, evidence)


# --- multi-factor authentication for administrators -------------------------------------------------

OTP_MODULES = ("pam_google_authenticator.so", "pam_oath.so", "pam_u2f.so", "pam_yubico.so",
               "pam_duo.so", "pam_radius_auth.so", "pam_totp.so", "pam_otpw.so", "pam_privacyidea.so")


@mlps("mlps.auth.admin-mfa", clause=D[0], requirement=D[1], rule="R-ACC-7", severity="high",
      title="administrators log in with two factors (sshd AuthenticationMethods or a PAM "
            "OTP module)", commands=CMD_SSHD,
      cis="CIS Controls v8 6.5 'Require MFA for administrative access'",
      params={"admin_groups": Key(list, ["sudo", "wheel", "sysadm"], "Groups whose members "
                                                                     "administer the host.",
                                  item_type=str)},
      remediation="'AuthenticationMethods publickey,keyboard-interactive' (globally or in "
                  "'Match Group sudo') with an OTP module (pam_google_authenticator, pam_oath) "
                  "in /etc/pam.d/sshd; or 'AuthenticationMethods publickey,password'")
def admin_mfa(probe: Probe, ctx: Context):
    """R-ACC-7: every SSH login of an administrator needs two factors. For
    each member of the admin groups, every AuthenticationMethods value sshd
    can give that login (the Match blocks that may apply to them, in order,
    then the global value) must ask for two factors, or all of them must go
    through keyboard-interactive with an OTP module required in sshd's PAM
    auth stack (UsePAM yes)."""
    config, na = _sshd_or_na(probe)
    if na:
        return na
    entries, files = F.pam(probe, "sshd", ("auth",))
    otp = [e for e in entries if e.module in OTP_MODULES and
           (e.control in ("required", "requisite") or "default=die" in e.control)]
    usepam, w_pam = config.get("usepam")
    kbd = config.candidates("kbdinteractiveauthentication")
    via_pam = bool(otp) and usepam == "yes" and all(v == "yes" for v, _ in kbd)
    findings, evidence = [], []
    for user, groups in _admin_logins(probe, ctx.params["admin_groups"]):
        who = (f"administrator {user}" if user else
               f"a member of {', '.join(sorted(groups))}" if groups else "any user")
        for value, where in M.values_for(config, "authenticationmethods", user, groups):
            if M.methods_need_two(value, otp=via_pam):
                evidence.append(f"{who}: {where}")
            elif via_pam and _through_pam(config, value):
                evidence.append(f"{who}: {where}; {otp[0].where()}; {w_pam}")
            else:
                findings.append(Finding(f"{who} can log in with one factor", "; ".join(
                    [where] + _one_factor_why(otp, files, usepam, kbd)), rule="R-ACC-7"))
    return verdict(findings, evidence)


def _admin_logins(probe: Probe, admin_groups: list) -> list[tuple[str | None, set[str]]]:
    """(user, every group of theirs) for each member of the admin groups; a
    group without members stands for its future members (user unknown); no
    admin group at all: any user (None, no group)."""
    groups = F.groups(probe)
    primary = {gid: name for name, (gid, _, _) in groups.items()}
    logins: dict = {}
    for group in [g for g in admin_groups if g in groups]:
        members = F.members(probe, group)
        if not members:
            logins[(None, group)] = {group}
        for user in members:
            mine = {g for g, (_, listed, _) in groups.items() if user in listed}
            mine |= {primary[a.gid] for a in F.passwd(probe) if a.name == user and a.gid in primary}
            logins[(user, "")] = mine | {group}
    if not logins:          # no admin group here: judge what any login can get
        return [(None, set())]
    return [(user, mine) for (user, _), mine in sorted(logins.items(), key=lambda kv: str(kv[0]))]


def _through_pam(config, value: str) -> bool:
    """Does every login allowed by AuthenticationMethods ``value`` pass the PAM
    auth stack? Each alternative names keyboard-interactive, or ("any") no
    method that skips PAM (publickey, hostbased, GSSAPI, password) is on."""
    if value != "any":
        return all("keyboard-interactive" in {m.split(":")[0] for m in alt.split(",")}
                   for alt in value.split())
    return all(v == "no" for key in ("pubkeyauthentication", "hostbasedauthentication",
                                     "gssapiauthentication", "passwordauthentication")
               for v, _ in config.candidates(key))


def _one_factor_why(otp: list, files: list, usepam: str, kbd: list) -> list[str]:
    if not otp:
        return [f"no OTP module ({', '.join(m[:-3] for m in OTP_MODULES[:3])}, ...) in the "
                f"sshd auth stack ({', '.join(files) or '/etc/pam.d/sshd absent'})"]
    kbd_values = "/".join(sorted({v for v, _ in kbd}))
    if usepam != "yes" or kbd_values != "yes":
        return [f"{otp[0].where()} but UsePAM {usepam} / KbdInteractiveAuthentication {kbd_values}"]
    return [f"{otp[0].where()} is skipped by a method that does not use PAM (publickey, "
            "password, ...)"]
