"""The mlps3 checks against the real components as oracles (GB/T 22239-2019
8.1.4; R-SEC-1, R-ACC-7), each scenario applied in a throwaway mount
namespace so nothing on the machine changes:

* sshd: ``sshd -T`` with the scenario's /etc/ssh mounted over the machine's
  (tests/fixtures/policy/sshd-scenarios/*.txt) -- the effective value of
  every keyword the checks read must equal opskit's reading of the files;
* PAM: ``pamtester`` really authenticating against the scenario's
  /etc/pam.d, /etc/security, passwd and shadow: after five wrong passwords
  the right one is refused exactly when opskit says pam_faillock locks
  (mlps.auth.login-lockout), and a weak new password gets 'BAD PASSWORD'
  exactly when opskit says pam_pwquality enforces (password-complexity);
* ``systemctl --root`` is-enabled over unit links (unneeded-services,
  auditd, time-sync);
* ``bash -l`` for TMOUT readonly and umask (shell-timeout, umask);
* ``apt-get -s upgrade`` on this machine for pending security updates.
"""
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from opskit.hosts.local import LocalHost
from opskit.policy.catalogue import Context, catalogue
from opskit.policy.model import FAIL, PASS
from opskit.policy.mlps import facts as F
from opskit.policy.mlps import parse as M
from opskit.policy.probe import Probe
from tests.fixtures.policy.trees import Link, write
from tests.harness.mountns import build_tree, header, run_with_binds, tool

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "policy"
SSHD_KEYS = ("permitrootlogin", "passwordauthentication", "permitemptypasswords",
             "clientaliveinterval", "clientalivecountmax", "maxauthtries",
             "authenticationmethods", "kbdinteractiveauthentication", "usepam",
             "ciphers", "macs", "kexalgorithms")


def probe_of(tree) -> Probe:
    return Probe(LocalHost("scenario", sysroot=str(tree)))


def run_check(check_id: str, tree, **params):
    spec = catalogue()[check_id]
    values = {k: v.default for k, v in spec.params.items()}
    values.update(params)
    return spec.func(probe_of(tree), Context(values))


# --- sshd -T ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host_key(tmp_path_factory):
    keygen = tool("ssh-keygen")
    path = tmp_path_factory.mktemp("hostkey") / "ssh_host_ed25519_key"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def sshd_t(tree: Path) -> dict[str, list[str]]:
    sshd = tool("/usr/sbin/sshd", "sshd")
    proc = run_with_binds({"/etc/ssh": str(tree / "etc/ssh")}, [sshd, "-T"])
    out: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value)
    return out


def sshd_tree(tmp_path: Path, host_key, text: str) -> Path:
    tree = tmp_path / "tree"
    build_tree(tree, text)
    ssh = tree / "etc/ssh"
    (ssh / "sshd_config.d").mkdir(exist_ok=True)
    shutil.copy(host_key, ssh / "ssh_host_ed25519_key")
    os.chmod(ssh / "ssh_host_ed25519_key", 0o600)
    config = (ssh / "sshd_config").read_text()
    (ssh / "sshd_config").write_text("HostKey /etc/ssh/ssh_host_ed25519_key\n" + config)
    recorded = tree / ".opskit-recorded"
    recorded.mkdir(exist_ok=True)
    # no firewall rules: only sshd itself can refuse outside sources
    (recorded / "nft-ruleset.json").write_text('{"nftables": []}')
    return tree


def test_sshd_corpus_is_large_enough():
    assert len(list((FIXTURES / "sshd-scenarios").glob("*.txt"))) >= 10


@pytest.mark.parametrize("path", sorted((FIXTURES / "sshd-scenarios").glob("*.txt")),
                         ids=lambda p: p.stem)
def test_sshd_reading_equals_sshd_T(tmp_path, host_key, path):
    text = path.read_text()
    tree = sshd_tree(tmp_path, host_key, text)
    real = sshd_t(tree)
    ours = F.sshd_files(probe_of(tree))
    detail = f"\nscenario {path.name}: {header(text).get('what')}\n{text}"
    for key in SSHD_KEYS:
        # sshd 9.2 prints prohibit-password under its old name
        want = {"without-password": "prohibit-password"}.get(real[key][0], real[key][0])
        assert ours.get(key)[0] == want, f"{key}: opskit {ours.get(key)} sshd -T {real[key]}" \
            + detail
    assert [v for v, _ in ours.all("allowusers")] == real.get("allowusers", []), detail


# --- sshd -T -C: what each connection really gets, Match blocks applied ------------------------

MATCH_USERS = ("root", "alice", "bob", "deploy")
MATCH_SPECS = [f"user={u},host=client.example,addr={a},laddr=10.20.9.1,lport={p}"
               for u in MATCH_USERS for a in ("10.20.9.5", "203.0.113.5") for p in (22, 2222)]
APPROVED = "10.20.9.0/24"


def _sources_bound(t: dict) -> bool:
    import ipaddress
    entries = [e for line in t.get("allowusers", []) for e in line.split()]
    return bool(entries) and all(
        "@" in e and ipaddress.ip_network(e.partition("@")[2], strict=False).subnet_of(
            ipaddress.ip_network(APPROVED)) for e in entries)


# check -> (is this connection's real configuration compliant?, whose connections count)
MATCH_CHECKS = {
    "mlps.auth.ssh-root-login": (lambda t: t["permitrootlogin"][0] == "no", "all"),
    "mlps.auth.ssh-password-auth": (lambda t: t["passwordauthentication"][0] == "no", "all"),
    "mlps.auth.ssh-empty-passwords": (lambda t: t["permitemptypasswords"][0] == "no", "all"),
    "mlps.auth.ssh-max-auth-tries": (lambda t: int(t["maxauthtries"][0]) <= 4, "all"),
    "mlps.auth.ssh-idle-timeout": (lambda t: 0 < int(t["clientaliveinterval"][0]) * int(
        t["clientalivecountmax"][0]) <= 900, "all"),
    "mlps.auth.admin-mfa": (lambda t: M.methods_need_two(t["authenticationmethods"][0]), "sudo"),
    "mlps.intrusion.management-sources": (_sources_bound, "all"),
}


def sshd_t_for(tree: Path, spec: str) -> dict[str, list[str]]:
    """``sshd -T -C spec`` with the scenario's /etc/ssh, passwd and group (so
    Match Group resolves membership as on that host)."""
    binds = {"/etc/ssh": str(tree / "etc/ssh"), "/etc/passwd": str(tree / "etc/passwd"),
             "/etc/group": str(tree / "etc/group")}
    proc = run_with_binds(binds, [tool("/usr/sbin/sshd", "sshd"), "-T", "-C", spec])
    out: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value)
    return out


def test_sshd_match_corpus_is_large_enough():
    assert len(list((FIXTURES / "sshd-match-scenarios").glob("*.txt"))) >= 8


@pytest.mark.parametrize("path", sorted((FIXTURES / "sshd-match-scenarios").glob("*.txt")),
                         ids=lambda p: p.stem)
def test_sshd_verdicts_equal_what_every_connection_gets(tmp_path, host_key, path):
    """Each check passes exactly when sshd -T -C shows every connection (users
    root, alice, bob, deploy; an approved and an outside address; ports 22 and
    2222) compliant: a Match block opening anything for anyone is a failure,
    and a host that is compliant for everyone passes. Judged both from the
    files and from a recorded plain ``sshd -T`` (a live host's reading)."""
    text = path.read_text()
    tree = sshd_tree(tmp_path, host_key, text)
    truth = {spec: sshd_t_for(tree, spec) for spec in MATCH_SPECS}
    admins = F.members(probe_of(tree), "sudo")
    detail = f"\nscenario {path.name}: {header(text).get('what')}"
    for mode in ("files", "sshd -T"):
        if mode == "sshd -T":
            plain = run_with_binds({"/etc/ssh": str(tree / "etc/ssh")},
                                   [tool("/usr/sbin/sshd", "sshd"), "-T"], check=False)
            # empty where plain -T fails (a Match LocalPort needs a connection)
            (tree / ".opskit-recorded/sshd-T").write_text(plain.stdout)
        for check, (compliant, whose) in MATCH_CHECKS.items():
            bad = [spec for spec, t in truth.items()
                   if (whose == "all" or spec.split(",")[0][5:] in admins) and not compliant(t)]
            ours = run_check(check, tree, approved_sources=[APPROVED]) \
                if check.startswith("mlps.intrusion") else run_check(check, tree)
            want = FAIL if bad else PASS
            assert ours.status == want, (
                f"{check} ({mode}): opskit {ours.status}, sshd -T -C says {want}"
                + (f" (not compliant for {bad[0]})" if bad else "") + detail
                + f"\nopskit: {[f.message for f in ours.findings][:3] or ours.evidence[:3]}")


# --- PAM with pamtester ------------------------------------------------------------------------

USER, UID, PASSWORD = "mlpsuser", 4242, "Correct-Horse-7!"


def pam_tree(root: Path, files: dict) -> Path:
    """/etc/pam.d, /etc/security, passwd, shadow, group for one scenario."""
    hashed = subprocess.run([tool("openssl"), "passwd", "-6", PASSWORD], check=True,
                            capture_output=True, text=True).stdout.strip()
    base = {"/etc/passwd": f"root:x:0:0::/root:/bin/bash\n{USER}:x:{UID}:{UID}::/tmp:/bin/sh\n",
            "/etc/shadow": f"root:*:19700:0:99999:7:::\n{USER}:{hashed}:19700:0:99999:7:::\n",
            "/etc/group": f"root:x:0:\n{USER}:x:{UID}:\n",
            "/etc/security/faillock.conf": "", "/etc/security/pwquality.conf": ""}
    base.update(files)
    write(root, base)
    (root / "etc/faillock").mkdir(exist_ok=True)
    # tally out of /run; nodelay: no 2-s wait per wrong password (it changes no verdict)
    with open(root / "etc/security/faillock.conf", "a") as fh:
        fh.write(f"\ndir = {root}/etc/faillock\nnodelay\n")
    return root


def pam_binds(tree: Path) -> dict:
    return {"/etc/pam.d": str(tree / "etc/pam.d"), "/etc/security": str(tree / "etc/security"),
            "/etc/passwd": str(tree / "etc/passwd"), "/etc/shadow": str(tree / "etc/shadow"),
            "/etc/group": str(tree / "etc/group")}


def locked_after_five_failures(tree: Path) -> bool:
    pamtester = tool("pamtester")
    attempt = f"{shlex.quote(pamtester)} sshd {USER} authenticate"
    script = "; ".join([f"echo wrong | {attempt} >/dev/null 2>&1"] * 5 +
                       [f"echo {shlex.quote(PASSWORD)} | {attempt} >/dev/null 2>&1; echo rc=$?"])
    proc = run_with_binds(pam_binds(tree), ["sh", "-c", script])
    assert "rc=" in proc.stdout, proc.stderr
    return "rc=0" not in proc.stdout


# success=2 skips authfail and pam_deny (man pam_faillock's layout with Debian's tail)
UNIX = "auth [success=2 default=ignore] pam_unix.so nodelay\n"
PREAUTH = "auth required pam_faillock.so preauth\n"
AUTHFAIL = "auth [default=die] pam_faillock.so authfail\n"
TAIL = "auth requisite pam_deny.so\nauth required pam_permit.so\n"
FAILLOCK_SCENARIOS = {
    "faillock-deny3-conf": ({"/etc/pam.d/sshd": "@include common-auth\n",
                             "/etc/pam.d/common-auth": PREAUTH + UNIX + AUTHFAIL + TAIL,
                             "/etc/security/faillock.conf": "deny = 3\nunlock_time = 900\n"},
                            True),
    "faillock-deny10": ({"/etc/pam.d/sshd": "@include common-auth\n",
                         "/etc/pam.d/common-auth": PREAUTH + UNIX + AUTHFAIL + TAIL,
                         "/etc/security/faillock.conf": "deny = 10\nunlock_time = 900\n"}, False),
    "faillock-args-override-conf": ({"/etc/pam.d/sshd": "@include common-auth\n",
                                     "/etc/pam.d/common-auth": PREAUTH.replace(
                                         "preauth", "preauth deny=4") + UNIX +
                                     AUTHFAIL.replace("authfail", "authfail deny=4") + TAIL,
                                     "/etc/security/faillock.conf": "deny = 10\n"}, True),
    "faillock-no-preauth": ({"/etc/pam.d/sshd": "@include common-auth\n",
                             "/etc/pam.d/common-auth": UNIX + AUTHFAIL + TAIL,
                             "/etc/security/faillock.conf": "deny = 3\n"}, False),
    "faillock-in-substack": ({"/etc/pam.d/sshd": "auth substack lockout\n",
                              "/etc/pam.d/lockout": PREAUTH + UNIX + AUTHFAIL + TAIL,
                              "/etc/security/faillock.conf": "deny = 5\n"}, True),
    "faillock-only-in-other-service": ({"/etc/pam.d/sshd": UNIX.replace("success=2",
                                                                        "success=1") + TAIL,
                                        "/etc/pam.d/login": PREAUTH + UNIX + AUTHFAIL + TAIL,
                                        "/etc/security/faillock.conf": "deny = 3\n"}, False),
}


@pytest.mark.parametrize("name", sorted(FAILLOCK_SCENARIOS))
def test_faillock_verdict_equals_pam(tmp_path, name):
    files, expect = FAILLOCK_SCENARIOS[name]
    tree = pam_tree(tmp_path / "tree", files)
    real = locked_after_five_failures(tree)
    assert real == expect, f"{name}: the scenario's expectation is wrong (PAM locked={real})"
    ours = run_check("mlps.auth.login-lockout", tree, services=["sshd"], max_deny=5,
                     min_unlock_time=0)
    assert (ours.status == PASS) == real, f"{name}: PAM locked={real}, opskit {ours.status}: " \
                                          f"{[f.message for f in ours.findings]} {ours.evidence}"


WEAK_CLASSES, WEAK_SHORT = "kqzvtrwmplhx", "Kq7!zV"       # 1 class; 6 characters


def pwquality_complains(tree: Path, new: str) -> bool:
    """Change the scenario user's password as that user (pam_unix cannot
    write the shadow file then, so nothing is changed): does the stack say
    BAD PASSWORD for ``new``?"""
    pamtester, setpriv = tool("pamtester"), tool("setpriv")
    answers = "\n".join([PASSWORD] + [new] * 8) + "\n"
    script = (f"printf %s {shlex.quote(answers)} | {shlex.quote(setpriv)} --reuid={UID} "
              f"--regid={UID} --clear-groups {shlex.quote(pamtester)} passwd {USER} chauthtok 2>&1")
    proc = run_with_binds(pam_binds(tree), ["sh", "-c", script], check=False)
    return "BAD PASSWORD" in proc.stdout + proc.stderr


PWQ = "password requisite pam_pwquality.so retry=1\n"
PUNIX = "password [success=1 default=ignore] pam_unix.so obscure use_authtok try_first_pass nodelay " \
        "yescrypt\npassword requisite pam_deny.so\npassword required pam_permit.so\n"
PWQ_SCENARIOS = {
    "pwquality-conf-strict": ({"/etc/pam.d/passwd": "@include common-password\n",
                               "/etc/pam.d/common-password": PWQ + PUNIX,
                               "/etc/security/pwquality.conf": "minlen = 8\nminclass = 3\n"},
                              True),
    "pwquality-defaults-no-classes": ({"/etc/pam.d/passwd": "@include common-password\n",
                                       "/etc/pam.d/common-password": PWQ + PUNIX}, False),
    "pwquality-not-in-stack": ({"/etc/pam.d/passwd": "@include common-password\n",
                                "/etc/pam.d/common-password": PUNIX,
                                "/etc/security/pwquality.conf": "minlen = 8\nminclass = 3\n"},
                               False),
    "pwquality-args-override": ({"/etc/pam.d/passwd": "@include common-password\n",
                                 "/etc/pam.d/common-password": PWQ.replace(
                                     "retry=1", "retry=1 minclass=3") + PUNIX}, True),
}


@pytest.mark.parametrize("name", sorted(PWQ_SCENARIOS))
def test_pwquality_verdict_equals_pam(tmp_path, name):
    if not os.path.exists("/lib/x86_64-linux-gnu/security/pam_pwquality.so") and \
            not os.path.exists("/usr/lib/x86_64-linux-gnu/security/pam_pwquality.so"):
        pytest.fail("pam_pwquality.so missing (apt package libpam-pwquality; scripts/test "
                    "installs it)", pytrace=False)
    files, expect = PWQ_SCENARIOS[name]
    tree = pam_tree(tmp_path / "tree", files)
    # enforced = both a one-class and a short password are refused
    real = pwquality_complains(tree, WEAK_CLASSES) and pwquality_complains(tree, WEAK_SHORT)
    assert real == expect, f"{name}: the scenario's expectation is wrong (PAM refused={real})"
    ours = run_check("mlps.auth.password-complexity", tree, services=["passwd"], minlen=8,
                     minclass=3)
    assert (ours.status == PASS) == real, f"{name}: PAM refused={real}, opskit {ours.status}: " \
                                          f"{[f.message for f in ours.findings]}"


# --- systemctl is-enabled ------------------------------------------------------------------------

UNIT = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
UNIT_SCENARIOS = {
    "enabled": {"/etc/systemd/system/multi-user.target.wants/cups.service":
                Link("/lib/systemd/system/cups.service")},
    "disabled": {},
    "masked": {"/etc/systemd/system/cups.service": Link("/dev/null"),
               "/etc/systemd/system/multi-user.target.wants/cups.service":
               Link("/lib/systemd/system/cups.service")},
    "wanted-by-other-target": {"/etc/systemd/system/graphical.target.wants/cups.service":
                               Link("/lib/systemd/system/cups.service")},
}


@pytest.mark.parametrize("name", sorted(UNIT_SCENARIOS))
def test_unit_state_equals_systemctl(tmp_path, name):
    systemctl = tool("systemctl")
    tree = tmp_path / "tree"
    write(tree, {"/lib/systemd/system/cups.service": UNIT, "/etc/systemd/system": {},
                 **UNIT_SCENARIOS[name]})
    proc = subprocess.run([systemctl, f"--root={tree}", "is-enabled", "cups.service"],
                          capture_output=True, text=True)
    real = proc.stdout.strip()
    ours, evidence = F.unit_state(probe_of(tree), "cups.service")
    assert ours == real, f"{name}: systemctl says {real!r}, opskit {ours!r} ({evidence})"
    result = run_check("mlps.intrusion.unneeded-services", tree, units=["cups.service"])
    assert (result.status == FAIL) == (real == "enabled")


# --- bash -l: TMOUT and umask -------------------------------------------------------------------

SHELL_SCENARIOS = {
    "readonly-in-profile-d": ({"/etc/profile.d/tmout.sh": "readonly TMOUT=600\nexport TMOUT\n",
                               "/etc/profile.d/umask.sh": "umask 027\n"}, (True, True)),
    "not-readonly": ({"/etc/profile.d/tmout.sh": "TMOUT=600\nexport TMOUT\n"}, (False, False)),
    "declare-r-and-later-weaker-umask": ({"/etc/profile.d/a.sh": "declare -r TMOUT=300\n"
                                                                "umask 027\n",
                                          "/etc/profile.d/b.sh": "umask 022\n"}, (True, False)),
    "too-long": ({"/etc/profile.d/tmout.sh": "readonly TMOUT=3600\n"}, (False, False)),
}


def bash_login(tree: Path) -> tuple[str, bool, str]:
    bash = tool("bash")
    binds = {"/etc/profile.d": str(tree / "etc/profile.d"), "/etc/profile": "/etc/profile",
             "/etc/bash.bashrc": str(tree / "etc/bash.bashrc")}
    proc = run_with_binds(binds, ["env", "-i", "HOME=/tmp", bash, "-l", "-c",
                                  'echo "T=$TMOUT"; readonly -p | grep -c "TMOUT=" ; umask'])
    lines = proc.stdout.split()
    return lines[0][2:], lines[1] != "0", lines[2]


@pytest.mark.parametrize("name", sorted(SHELL_SCENARIOS))
def test_shell_settings_equal_bash(tmp_path, name):
    files, (timeout_ok, umask_ok) = SHELL_SCENARIOS[name]
    tree = tmp_path / "tree"
    write(tree, {"/etc/profile": Path("/etc/profile").read_text(), "/etc/bash.bashrc": "",
                 "/etc/profile.d/.keep": "", "/etc/login.defs": "UMASK 027\n", **files})
    tmout, readonly, mask = bash_login(tree)
    real_timeout = bool(tmout) and 0 < int(tmout) <= 900 and readonly
    real_umask = int(mask, 8) & 0o027 == 0o027
    assert (real_timeout, real_umask) == (timeout_ok, umask_ok), \
        f"{name}: bash says TMOUT={tmout} readonly={readonly} umask={mask}"
    assert (run_check("mlps.auth.shell-timeout", tree).status == PASS) == real_timeout
    assert (run_check("mlps.access.umask", tree).status == PASS) == real_umask


# --- apt-get -s upgrade ------------------------------------------------------------------------------

def test_pending_security_updates_equal_apt_on_this_machine():
    apt = tool("apt-get")
    proc = subprocess.run([apt, "-s", "-o", "Debug::NoLocking=1", "upgrade"],
                          capture_output=True, text=True, timeout=120)
    real = {line.split()[1] for line in proc.stdout.splitlines()
            if line.startswith("Inst ") and "-security" in line.lower()}
    result = run_check("mlps.intrusion.security-updates", "/", max_list_age_days=100000) \
        if False else catalogue()["mlps.intrusion.security-updates"].func(
            Probe(LocalHost("local")), Context({"max_pending": 0, "max_list_age_days": 100000}))
    shown = " ".join(f.evidence for f in result.findings)
    count = int(result.findings[0].message.split()[0]) if result.findings else 0
    assert count == len(real), f"apt: {sorted(real)}\nopskit: {shown}"
    assert all(f"{name} " in shown for name in sorted(real)[:8]), shown
