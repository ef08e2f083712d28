"""The mlps3 profile (GB/T 22239-2019 8.1.4, R-SEC-1) against recorded host
trees: a compliant tree passes every check (manual items stay manual, never
pass), and every check fails on at least one way of breaking it -- the traps
included (a Match block outliving its Include, a pwquality line that is only
'optional', login.defs' last assignment, a masked unit)."""
import os
import time

import pytest

from opskit.hosts import LocalHost
from opskit.policy.catalogue import catalogue
from opskit.policy.fleet import check_host
from opskit.policy.model import FAIL, MANUAL, NA, PASS
from opskit.policy.policyfile import load_policy
from tests.fixtures.policy.mlps_tree import (COMMON_AUTH, COMMON_PASSWORD, MLPS_SITE, SSHD_CONFIG,
                                             mlps_tree)
from tests.fixtures.policy.trees import POLICY, Link, TCP_HEADER, tcp_line, write

MLPS = sorted(c for c, s in catalogue().items() if "mlps3" in s.profiles)


@pytest.fixture
def tree(tmp_path):
    return mlps_tree(tmp_path / "host")


def report(tree, policy=MLPS_SITE):
    return check_host(LocalHost("rec", sysroot=tree), load_policy(explicit=policy,
                                                                  profile="mlps3"))


def run(tree, check_id):
    result = report(tree).result(check_id)
    assert result is not None, f"{check_id} not planned"
    return result


def text(result):
    return " | ".join([f"{f.message} <- {f.evidence}" for f in result.findings] +
                      result.evidence + [result.reason])


def test_at_least_40_checks_each_citing_a_clause_and_remediation():
    assert len(MLPS) >= 40
    for check_id in MLPS:
        spec = catalogue()[check_id]
        assert spec.gbt.startswith("GB/T 22239-2019 8.1.4."), check_id
        assert spec.remediation and spec.rule.startswith("R-"), check_id


def test_compliant_tree_passes_every_check(tree):
    got = {r.check: r.status for r in report(tree).results}
    assert set(MLPS) <= set(got)
    bad = {c: s for c, s in got.items() if s not in (PASS, MANUAL)}
    assert bad == {}
    manual = {c for c, s in got.items() if s == MANUAL}
    assert manual == {"mlps.trust.verification", "mlps.integrity.important-data",
                      "mlps.confidentiality.storage", "mlps.residual.memory",
                      "mlps.privacy.personal-info", "mlps.backup.local-remote"}
    for r in report(tree).results:
        if r.status == MANUAL:
            assert r.reason.endswith("?") or "?" in r.reason, "a manual item asks a question"
        else:
            assert r.evidence, f"{r.check}: a pass must say what decided it"


def test_baseline_unchanged_without_profile(tree):
    plain = check_host(LocalHost("rec", sysroot=tree), load_policy(explicit=POLICY))
    assert not [r.check for r in plain.results if r.check.startswith("mlps.")]
    assert len(plain.results) == len([s for s in catalogue().values() if not s.profiles])


def test_management_sources_without_networks_is_manual_not_pass(tree):
    shipped_only = os.path.join(os.path.dirname(MLPS_SITE), "policy.yaml")
    result = report(tree, shipped_only).result("mlps.intrusion.management-sources")
    assert result.status == MANUAL and "approved_sources" in result.reason


HASH = "$y$j9T$abc$def"
OLD = time.time() - 40 * 86400

# check id -> (files to change, text the finding must contain)
BREAKS = {
    "mlps.auth.empty-passwords": ({"/etc/shadow": "root::19700:0:90:7:::\n"}, "root has an empty"),
    "mlps.auth.unique-uid0": ({"/etc/passwd": "root:x:0:0::/root:/bin/bash\n"
                                              "toor:x:0:0::/root:/bin/sh\n"}, "toor has UID 0"),
    "mlps.auth.unique-ids": ({"/etc/passwd": "root:x:0:0::/root:/bin/bash\n"
                                             "a:x:1000:1000::/h:/bin/sh\nb:x:1000:1000::/h:/bin/sh\n"},
                             "UID 1000 is shared by a and b"),
    "mlps.auth.password-complexity": ({"/etc/security/pwquality.conf": "minlen = 12\n"},
                                      "requires 0 character class"),
    "mlps.auth.password-max-age": ({"/etc/login.defs": "PASS_MAX_DAYS 90\nPASS_MAX_DAYS 99999\n"},
                                   "PASS_MAX_DAYS is 99999"),
    "mlps.auth.account-password-age": ({"/etc/shadow": f"alice:{HASH}:19700:0:99999:7:::\n"},
                                       "password of alice expires after 99999"),
    "mlps.auth.login-lockout": ({"/etc/security/faillock.conf": "deny = 10\n"},
                                "lock after 10 failures"),
    "mlps.auth.shell-timeout": ({"/etc/profile.d/tmout.sh": "TMOUT=600\nexport TMOUT\n"},
                                "not readonly"),
    "mlps.auth.ssh-idle-timeout": ({"/etc/ssh/sshd_config": SSHD_CONFIG.replace(
        "ClientAliveInterval 300", "ClientAliveInterval 0")}, "idle sessions never end"),
    "mlps.auth.ssh-empty-passwords": ({"/etc/ssh/sshd_config": "PermitEmptyPasswords yes\n"
                                       + SSHD_CONFIG}, "PermitEmptyPasswords is yes"),
    "mlps.auth.ssh-max-auth-tries": ({"/etc/ssh/sshd_config": "MaxAuthTries 10\n" + SSHD_CONFIG},
                                     "MaxAuthTries 10"),
    "mlps.auth.no-cleartext-listeners": ({"/proc/net/tcp": TCP_HEADER + tcp_line(0, "00000000",
                                                                                  23)},
                                         "telnet (tcp/23) is listening"),
    "mlps.auth.no-cleartext-packages": ({"/var/lib/dpkg/status": "Package: telnetd\nStatus: "
                                         "install ok installed\nVersion: 0.17-44\n\n"},
                                        "telnetd 0.17-44 is installed"),
    "mlps.auth.ssh-root-login": ({"/etc/ssh/sshd_config": SSHD_CONFIG.replace(
        "PermitRootLogin no", "PermitRootLogin without-password")}, "prohibit-password"),
    "mlps.auth.ssh-password-auth": ({"/etc/ssh/sshd_config": SSHD_CONFIG.replace(
        "PasswordAuthentication no\n", "")}, "PasswordAuthentication is yes"),
    "mlps.auth.ssh-crypto": ({"/etc/ssh/sshd_config": "Ciphers aes128-cbc,aes256-ctr\n"
                              + SSHD_CONFIG}, "weak aes128-cbc"),
    "mlps.auth.admin-mfa": ({"/etc/ssh/sshd_config": SSHD_CONFIG.replace(
        "AuthenticationMethods publickey,keyboard-interactive",
        "AuthenticationMethods publickey,password publickey")}, "can log in with one factor"),
    "mlps.access.default-accounts": ({"/etc/shadow": f"games:{HASH}:19700:0:90:7:::\n",
                                      "/etc/passwd": "root:x:0:0::/root:/bin/bash\n"
                                                     "games:x:5:60::/:/bin/sh\n"},
                                     "games has a login shell and a usable password"),
    "mlps.access.role-separation": ({"/etc/group": "sysadm:x:2000:alice\naudadm:x:2001:alice\n"
                                                   "secadm:x:2002:carol\n"},
                                    "alice holds admin and audit roles"),
    "mlps.access.shared-accounts": ({"/etc/passwd": "root:x:0:0::/root:/bin/bash\n"
                                                    "operator:x:1005:1005::/h:/bin/bash\n"},
                                    "generic account operator can log in"),
    "mlps.access.account-files": ({}, "/etc/shadow is mode 0644"),
    "mlps.access.sudoers-files": ({}, "/etc/sudoers.d/10-admins is mode 0644"),
    "mlps.access.ssh-host-keys": ({}, "ssh_host_ed25519_key is mode 0644"),
    "mlps.access.cron-files": ({}, "/etc/cron.d is mode 0755"),
    "mlps.access.umask": ({"/etc/profile.d/zz.sh": "umask 022\n"}, "get umask 022"),
    "mlps.access.sudo-least-privilege": ({"/etc/sudoers.d/20-ops": "bob ALL=(ALL) NOPASSWD: ALL\n"},
                                         "sudo without a password"),
    "mlps.audit.auditd": ({"/etc/systemd/system/multi-user.target.wants/auditd.service": None},
                          "auditd.service is disabled"),
    "mlps.audit.rules": ({"/etc/audit/rules.d/50-mlps.rules": "-w /etc/passwd -p wa\n"},
                         "no audit rule records time changes"),
    "mlps.audit.retention": ({"/etc/rsyslog.d/90-remote.conf": "*.* /var/log/all\n",
                              "/etc/logrotate.d/rsyslog": "/var/log/auth.log\n{\n rotate 4\n"
                                                          " weekly\n}\n"},
                             "/var/log/auth.log is kept 28 days"),
    "mlps.audit.time-sync": ({"/etc/chrony/chrony.conf": "# server 10.20.0.123\n"},
                             "names no time source"),
    "mlps.audit.record-protection": ({"/etc/audit/rules.d/50-mlps.rules": "-w /etc/passwd\n"},
                                     "not immutable"),
    "mlps.intrusion.minimal-install": ({"/var/lib/dpkg/status": "Package: gdb\nStatus: install "
                                        "ok installed\nVersion: 13.1-3\n\n"}, "gdb 13.1-3"),
    "mlps.intrusion.unneeded-services": ({"/etc/systemd/system/multi-user.target.wants/"
                                          "cups.service": "[Unit]\n"}, "cups.service is enabled"),
    "mlps.intrusion.management-sources": ({"/etc/ssh/sshd_config": SSHD_CONFIG.replace(
        "bob@10.20.9.0/24", "bob")}, "accepts new connections from outside 10.20.9.0/24"),
    "mlps.intrusion.security-updates": ({"/var/lib/dpkg/status": "Package: libc6\nStatus: "
                                         "install ok installed\nVersion: 2.36-9+deb12u4\n\n"},
                                        "libc6 2.36-9+deb12u4 -> 2.36-9+deb12u10"),
    "mlps.intrusion.ids-fim": ({"/var/lib/aide/aide.db": None}, "no file-integrity"),
    "mlps.intrusion.aslr": ({"/proc/sys/kernel/randomize_va_space": "1\n"},
                            "randomize_va_space = 1"),
    "mlps.malware.signatures": ({}, "signatures are 40 days old"),
    "mlps.integrity.db-transport": ({"/etc/postgresql/15/main/pg_hba.conf":
                                     "host all all 10.20.0.0/16 scram-sha-256\n"},
                                    "unencrypted connections from 10.20.0.0/16"),
    "mlps.residual.swap": ({"/proc/swaps": "Filename Type Size Used Priority\n/dev/sda2 "
                                           "partition 1 0 -2\n"}, "swap on /dev/sda2"),
    "mlps.residual.core-dumps": ({"/etc/security/limits.d/mlps.conf": "* soft core 0\n"},
                                 "no '* hard core 0' limit"),
}
CHMOD = {"mlps.access.account-files": ("/etc/shadow", 0o644),
         "mlps.access.sudoers-files": ("/etc/sudoers.d/10-admins", 0o644),
         "mlps.access.ssh-host-keys": ("/etc/ssh/ssh_host_ed25519_key", 0o644),
         "mlps.access.cron-files": ("/etc/cron.d", 0o755)}
AGED = {"mlps.malware.signatures": "/var/lib/clamav/daily.cld"}
MANUAL_ONLY = {"mlps.trust.verification", "mlps.integrity.important-data",
               "mlps.confidentiality.storage", "mlps.residual.memory",
               "mlps.privacy.personal-info", "mlps.backup.local-remote"}


def test_every_judged_check_has_a_failing_scenario():
    assert set(MLPS) - MANUAL_ONLY == set(BREAKS)


@pytest.mark.parametrize("check_id", sorted(BREAKS))
def test_check_fails_when_broken(tree, check_id):
    files, expected = BREAKS[check_id]
    write(tree, files)
    if check_id in CHMOD:
        path, mode = CHMOD[check_id]
        os.chmod(os.path.join(tree, path.lstrip("/")), mode)
    if check_id in AGED:
        os.utime(os.path.join(tree, AGED[check_id].lstrip("/")), (OLD, OLD))
    result = run(tree, check_id)
    assert result.status == FAIL, text(result)
    assert expected in text(result)
    assert all(f.evidence for f in result.findings)


# --- traps: what a naive reading gets wrong ------------------------------------------------

def test_pwquality_optional_is_not_enforced(tree):
    write(tree, {"/etc/pam.d/common-password": COMMON_PASSWORD.replace(
        "requisite\t\t\tpam_pwquality", "optional\tpam_pwquality")})
    result = run(tree, "mlps.auth.password-complexity")
    assert result.status == FAIL and "not enforced" in text(result)


def test_pwquality_found_through_substack_and_module_args_win(tree):
    write(tree, {"/etc/pam.d/passwd": "password substack common-password\n",
                 "/etc/pam.d/common-password": COMMON_PASSWORD.replace(
                     "retry=3", "retry=3 minlen=6")})
    result = run(tree, "mlps.auth.password-complexity")
    assert result.status == FAIL and "minlen 6 < 8" in text(result)


def test_negative_credits_count_as_required_classes(tree):
    write(tree, {"/etc/security/pwquality.conf": "minlen = 10\ndcredit = -1\nucredit = -1\n"
                                                 "lcredit = -1\n"})
    assert run(tree, "mlps.auth.password-complexity").status == PASS


def test_pwquality_missing_from_included_stack_fails(tree):
    write(tree, {"/etc/pam.d/common-password": COMMON_PASSWORD.split("\n", 1)[1]})
    result = run(tree, "mlps.auth.password-complexity")
    assert result.status == FAIL and "no pam_pwquality" in text(result)


def test_faillock_without_authfail_does_not_count(tree):
    write(tree, {"/etc/pam.d/common-auth": COMMON_AUTH.replace(
        "auth\t[default=die]\t\t\tpam_faillock.so authfail\n", "")})
    result = run(tree, "mlps.auth.login-lockout")
    assert result.status == FAIL and "no pam_faillock authfail" in text(result)


def test_faillock_module_args_override_conf(tree):
    write(tree, {"/etc/pam.d/common-auth": COMMON_AUTH.replace("preauth", "preauth deny=3 "
                                                               "unlock_time=60")})
    result = run(tree, "mlps.auth.login-lockout")
    assert result.status == FAIL and "lock lasts 60 s" in text(result)


def test_sshd_first_value_wins_and_include_is_read_in_place(tree):
    write(tree, {"/etc/ssh/sshd_config.d/10-site.conf": "PermitRootLogin yes\n"})
    result = run(tree, "mlps.auth.ssh-root-login")
    assert result.status == FAIL and "10-site.conf:1" in text(result)


def test_sshd_match_ends_with_the_included_file(tree):
    # sshd -T agrees (tests/integration): the drop-in's Match does not swallow
    # the rest of sshd_config, but a Match in sshd_config itself does
    write(tree, {"/etc/ssh/sshd_config.d/10-site.conf": "Match User backup\n"
                                                        "  X11Forwarding no\n"})
    assert run(tree, "mlps.auth.ssh-root-login").status == PASS
    write(tree, {"/etc/ssh/sshd_config.d/10-site.conf": None,
                 "/etc/ssh/sshd_config": "Match User backup\n  X11Forwarding no\n"
                                         + SSHD_CONFIG})
    result = run(tree, "mlps.auth.ssh-root-login")
    assert result.status == FAIL and "default" in text(result)


def test_admin_mfa_through_match_group_and_through_pam_otp(tree):
    cfg = SSHD_CONFIG.replace("AuthenticationMethods publickey,keyboard-interactive\n", "")
    write(tree, {"/etc/ssh/sshd_config": cfg + "Match Group sysadm,sudo\n"
                 "  AuthenticationMethods publickey,password\n"})
    assert run(tree, "mlps.auth.admin-mfa").status == PASS
    # an OTP in PAM counts only where every login passes PAM: publickey (on by
    # default) logs in without it, so 'any' with keys on is one factor
    write(tree, {"/etc/ssh/sshd_config": cfg,
                 "/etc/pam.d/sshd": "auth required pam_google_authenticator.so\n"
                                    "@include common-auth\n"})
    result = run(tree, "mlps.auth.admin-mfa")
    assert result.status == FAIL and "skipped by a method that does not use PAM" in text(result)
    write(tree, {"/etc/ssh/sshd_config": "PubkeyAuthentication no\n" + cfg})
    assert run(tree, "mlps.auth.admin-mfa").status == PASS
    write(tree, {"/etc/ssh/sshd_config": SSHD_CONFIG})     # publickey,keyboard-interactive
    assert run(tree, "mlps.auth.admin-mfa").status == PASS
    write(tree, {"/etc/pam.d/sshd": "auth optional pam_google_authenticator.so\n"})
    assert run(tree, "mlps.auth.admin-mfa").status == PASS     # publickey + a password: two
    write(tree, {"/etc/ssh/sshd_config": cfg + "AuthenticationMethods password,keyboard-interactive\n"})
    result = run(tree, "mlps.auth.admin-mfa")       # one password asked twice: one factor
    assert result.status == FAIL and "one factor" in text(result)


def test_masked_unit_is_not_enabled(tree):
    write(tree, {"/etc/systemd/system/multi-user.target.wants/chrony.service": None,
                 "/etc/systemd/system/chrony.service": Link("/dev/null")})
    result = run(tree, "mlps.audit.time-sync")
    assert result.status == FAIL and "no time synchronisation service" in text(result)


def test_retention_local_keep_logs_and_half_year_rotation_passes(tree):
    write(tree, {"/etc/rsyslog.d/90-remote.conf": None,
                 "/etc/logrotate.conf": "weekly\nrotate 4\ninclude /etc/logrotate.d\n",
                 "/etc/logrotate.d/rsyslog": "/var/log/syslog\n/var/log/auth.log\n{\n"
                                             "\trotate 26\n}\n"})
    result = run(tree, "mlps.audit.retention")
    assert result.status == PASS, text(result)
    assert "/var/log/auth.log: 182 days" in text(result)


def test_security_updates_use_debian_version_order(tree):
    # 1:9.2p1 (epoch) is newer than 9.9p1: nothing pending
    write(tree, {"/var/lib/dpkg/status": "Package: openssh-server\nStatus: install ok "
                                         "installed\nVersion: 1:9.2p1-2+deb12u3\n\n"
                                         "Package: libc6\nStatus: install ok installed\n"
                                         "Version: 2.36-9+deb12u10\n\n"})
    assert run(tree, "mlps.intrusion.security-updates").status == PASS
    write(tree, {"/var/lib/dpkg/status": "Package: openssh-server\nStatus: install ok "
                                         "installed\nVersion: 1:9.2p1-2+deb12u2\n\n"})
    assert run(tree, "mlps.intrusion.security-updates").status == FAIL


def test_swap_on_dm_crypt_passes(tree):
    write(tree, {"/proc/swaps": "Filename Type Size Used Priority\n/dev/dm-1 partition 1 0 -2\n",
                 "/sys/block/dm-1/dm/uuid": "CRYPT-PLAIN-cswap\n"})
    assert run(tree, "mlps.residual.swap").status == PASS


def test_no_database_is_na(tree):
    write(tree, {"/etc/postgresql": None})
    assert run(tree, "mlps.integrity.db-transport").status == NA


def test_shadow_hashes_never_in_evidence(tree):
    write(tree, {"/etc/shadow": f"alice:{HASH}:19700:0:99999:7:::\n"})
    result = run(tree, "mlps.auth.account-password-age")
    assert HASH not in text(result) and "(hash)" in text(result)


def test_umask_from_login_defs_only_through_pam_umask(tree):
    write(tree, {"/etc/profile.d/umask.sh": None})
    result = run(tree, "mlps.access.umask")
    assert result.status == FAIL and "default umask 022" in text(result)
    write(tree, {"/etc/pam.d/common-session": "session optional pam_umask.so\n",
                 "/etc/pam.d/sshd": "@include common-auth\n@include common-session\n"})
    result = run(tree, "mlps.access.umask")
    assert result.status == PASS and "login.defs:3: UMASK" in text(result)


def test_db_transport_ssl_off_only_matters_with_network_clients(tree):
    write(tree, {"/etc/postgresql/15/main/postgresql.conf": "ssl = off\n",
                 "/etc/postgresql/15/main/pg_hba.conf": "local all all peer\n"
                                                        "host all all 127.0.0.1/32 md5\n"})
    assert run(tree, "mlps.integrity.db-transport").status == PASS
    write(tree, {"/etc/postgresql/15/main/pg_hba.conf": "hostssl all all 10.0.0.0/8 md5\n"})
    result = run(tree, "mlps.integrity.db-transport")
    assert result.status == FAIL and "ssl is off while" in text(result)


def test_management_sources_through_the_firewall(tree):
    """sshd admits everyone; the nftables evaluator decides: port 22 only from
    the approved network passes, from anywhere fails (8.1.4.4 c)."""
    import json
    from tests.fixtures.policy.trees import NFT_DENY
    ruleset = json.loads(json.dumps(NFT_DENY))
    rule = ruleset["nftables"][-1]["rule"]
    rule["expr"].insert(0, {"match": {"op": "==", "left": {"payload": {"protocol": "ip",
                                                                       "field": "saddr"}},
                                      "right": {"prefix": {"addr": "10.20.9.0", "len": 24}}}})
    write(tree, {"/etc/ssh/sshd_config": SSHD_CONFIG.replace(
                     "AllowUsers alice@10.20.9.0/24 bob@10.20.9.0/24\n", ""),
                 "/.opskit-recorded/nft-ruleset.json": json.dumps(ruleset)})
    result = run(tree, "mlps.intrusion.management-sources")
    assert result.status == PASS, text(result)
    assert "from outside the approved networks denied" in text(result)
    write(tree, {"/.opskit-recorded/nft-ruleset.json": json.dumps(NFT_DENY)})
    result = run(tree, "mlps.intrusion.management-sources")
    assert result.status == FAIL and "tcp dport 22 accept" in text(result)
