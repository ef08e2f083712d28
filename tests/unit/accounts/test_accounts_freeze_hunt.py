"""The freeze hunts (R-ACC-6, issue #20): on a sysroot account database with real
shadow-utils and visudo, every channel a departing insider could have planted is
found and closed, or listed so that the certificate says 'incomplete' (exit 1).
Each case here failed on the freeze before #20."""
import os
import time

import pytest

from opskit.accounts import sudo_grants
from opskit.accounts.freeze import freeze_fleet
from opskit.accounts.provision import Settings, plan_fleet
from tests.harness.accounts import BASE_ROSTER, EXAMPLE_KEY, passwd_line, sysroot_host

SETTINGS = Settings(host_timeout=60)
KEY_BLOB = EXAMPLE_KEY.split()[1]
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE90aGVyIGtleSBvZiBzb21lYm9keSBlbHNlIGhlcmU= ops"
SECOND = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNlY29uZCBrZXkgb2YgemhhbmcgaGlkZGVuIGF3YXk= x"


def _write(root, path, text, mode=0o644, uid=None):
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as fh:
        fh.write(text)
    os.chmod(full, mode)
    if uid is not None:
        os.chown(full, uid, -1)
    return full


@pytest.fixture
def host(tmp_path):
    root, spec, roster = sysroot_host(tmp_path, "h1", BASE_ROSTER)
    assert plan_fleet([spec], roster, [roster.person("zhang.wei"), roster.person("li.na")],
                      SETTINGS, apply=True).exit_code == 0
    uid = int(passwd_line(root, "zhang.wei")[2])
    _write(root, "/etc/sudoers", "Defaults env_reset\n@includedir /etc/sudoers.d\n", 0o440)
    return root, spec, roster, uid


def freeze(spec, roster, **kw):
    return freeze_fleet([spec], roster.person("zhang.wei"), SETTINGS, reason="departure",
                        since=kw.pop("since", int(time.time()) + 3600), **kw)


def test_their_key_in_roots_authorized_keys_is_taken_out_by_blob(host):
    root, spec, roster, uid = host
    # the same key with another comment and options in front: matched by blob
    keys = _write(root, "/root/.ssh/authorized_keys",
                  f"{OTHER}\nfrom=\"10.0.0.0/8\" ssh-ed25519 {KEY_BLOB} backup@nas\n", 0o600)
    second = _write(root, "/home/zhang.wei/.ssh/authorized_keys2", f"{SECOND}\n", 0o600, uid)
    # a key only in their second file, planted for the service account: theirs too
    svc = _write(root, "/home/li.na/.ssh/authorized_keys", f"{OTHER}\n{SECOND}\n", 0o600)
    run = freeze(spec, roster)
    assert run.exit_code == 0, run.hosts[0].remaining
    assert open(keys).read() == f"{OTHER}\n", "only their key line is removed"
    assert oct(os.stat(keys).st_mode & 0o777) == "0o600"
    assert open(svc).read() == f"{OTHER}\n"
    assert not os.path.exists(second), "a second key file of theirs is moved away too"
    found = run.hosts[0].found
    assert found["keys_in_other_accounts"] == {"/root/.ssh/authorized_keys": 1,
                                               "/home/li.na/.ssh/authorized_keys": 1}
    assert "/home/zhang.wei/.ssh/authorized_keys2" in found["authorized_keys"]
    evidence = os.listdir(os.path.join(root, "var/lib/opskit/frozen/zhang.wei"))
    assert any(e.endswith("root-authorized_keys") for e in evidence), evidence


@pytest.mark.parametrize("rule", ["#{uid} ALL=(ALL) ALL", "%zhang.wei ALL=(ALL) ALL",
                                  "User_Alias OPS = li.na, #{uid}\nOPS ALL=(ALL) ALL"])
def test_sudo_rules_by_uid_group_and_alias_are_taken_out(host, rule):
    root, spec, roster, uid = host
    path = _write(root, "/etc/sudoers.d/local", rule.format(uid=uid) + "\n", 0o440)
    run = freeze(spec, roster)
    assert run.exit_code == 0, run.hosts[0].remaining
    left = sudo_grants.scan({"/etc/sudoers.d/local": open(path).read()},
                            sudo_grants.Who("zhang.wei", uid, "zhang.wei", uid))
    assert left.grants == [], open(path).read()
    assert "li.na" in open(path).read() or "User_Alias" not in rule


def test_sudo_reads_files_with_tilde_inside_but_skips_dots_and_trailing_tilde(host):
    root, spec, roster, uid = host
    read = _write(root, "/etc/sudoers.d/a~b", "zhang.wei ALL=(ALL) ALL\n", 0o440)
    skipped = _write(root, "/etc/sudoers.d/x.bak", "zhang.wei ALL=(ALL) ALL\n", 0o440)
    skipped2 = _write(root, "/etc/sudoers.d/old~", "zhang.wei ALL=(ALL) ALL\n", 0o440)
    run = freeze(spec, roster)
    assert run.exit_code == 0, run.hosts[0].remaining
    assert open(read).read().startswith("# opskit freeze")
    assert open(skipped).read() == open(skipped2).read() == "zhang.wei ALL=(ALL) ALL\n"


def test_a_rule_for_all_users_is_listed_and_blocks(host):
    root, spec, roster, uid = host
    _write(root, "/etc/sudoers.d/everyone", "ALL ALL=(ALL) NOPASSWD: /bin/sh\n", 0o440)
    run = freeze(spec, roster)
    assert run.exit_code == 1 and run.certificate()["result"] == "incomplete"
    assert any("everyone" in r and "edit by hand" in r for r in run.hosts[0].remaining)


def test_system_cron_linger_user_timers_and_setuid_files(host):
    root, spec, roster, uid = host
    crond = _write(root, "/etc/cron.d/backup", "* * * * * root /usr/bin/true\n"
                   "*/5 * * * * zhang.wei /usr/bin/curl x\n"
                   "@reboot root /home/zhang.wei/bin/agent\n")
    owned = _write(root, "/etc/cron.d/mine", "* * * * * root /usr/bin/true\n", uid=uid)
    linger = _write(root, "/var/lib/systemd/linger/zhang.wei", "")
    timer = _write(root, "/home/zhang.wei/.config/systemd/user/beacon.timer", "[Timer]\n",
                   uid=uid)
    shell = _write(root, "/home/zhang.wei/.cache/sh", "#!/bin/sh\n", 0o4755, uid=uid)
    run = freeze(spec, roster)
    assert run.exit_code == 0, run.hosts[0].remaining
    text = open(crond).read().splitlines()
    assert text[0] == "* * * * * root /usr/bin/true"
    assert text[1].startswith("# opskit freeze") and text[2].startswith("# opskit freeze")
    assert not os.path.exists(owned) and not os.path.exists(linger)
    assert not os.path.exists(timer)
    assert os.stat(shell).st_mode & 0o6000 == 0


def test_a_root_setuid_file_in_tmp_during_tenure_is_listed_not_complete(host):
    root, spec, roster, uid = host
    since = int(time.time()) - 5
    planted = _write(root, "/tmp/.x", "#!/bin/sh\n", 0o4755)
    run = freeze(spec, roster, since=since)
    assert run.exit_code == 1
    assert any("/tmp/.x" in r for r in run.hosts[0].remaining)
    assert os.stat(planted).st_mode & 0o4000, "root's file: listed, not touched"


def test_tenure_changes_where_root_runs_code_block_until_reviewed(host):
    root, spec, roster, uid = host
    _write(root, "/etc/sudoers.d/opskit-zhang_wei", "zhang.wei ALL=(ALL) ALL\n", 0o440)
    time.sleep(1.1)
    since = int(time.time())
    time.sleep(1.1)
    job = _write(root, "/etc/cron.d/innocent", "* * * * * root /usr/local/bin/sync\n")
    _write(root, "/etc/motd", "hello\n")
    run = freeze(spec, roster, since=since)
    host_result = run.hosts[0]
    assert run.exit_code == 1, host_result.remaining
    assert [r for r in host_result.remaining if r.startswith("review")] == [
        "review /etc/cron.d/innocent: runs as root and changed during their tenure (since "
        f"{since}); confirm with --reviewed /etc/cron.d/innocent"]
    assert "/etc/motd" in host_result.found["tenure_changed"]
    again = freeze(spec, roster, since=since, reviewed=["/etc/cron.d/innocent"])
    assert again.exit_code == 0 and again.certificate()["reviewed"] == ["/etc/cron.d/innocent"]
    assert os.path.exists(job)


def test_sudo_scan_unit_cases():
    who = sudo_grants.Who("ann", 2811, "staff", 50, ("wheel",), (10,))
    files = {"/etc/sudoers": "#2811 ALL=(ALL) ALL\n# ann comment\n%wheel ALL=ALL\n"
                             "User_Alias A = bob, B\nUser_Alias B = ann\nA ALL=ALL\n"
                             "Defaults:ann !lecture\n%staff ALL=ALL\nbob, ann ALL=ALL\n"}
    scan = sudo_grants.scan(files, who)
    got = sorted((g.first, g.token, g.how, g.action) for g in scan.grants)
    assert got == [(1, "#2811", "name", "remove"), (3, "%wheel", "supplementary", "groups"),
                   (5, "ann", "name", "manual"), (6, "A", "alias", "manual"),
                   (8, "%staff", "primary", "manual"), (9, "ann", "name", "remove")]
    assert scan.mentions == ["/etc/sudoers:7: Defaults:ann !lecture"]
    edited = sudo_grants.edit(files["/etc/sudoers"], scan.grants, "gone")
    assert edited.splitlines()[0] == "# gone: #2811 ALL=(ALL) ALL"
    assert edited.splitlines()[8] == "bob ALL=ALL"
    # which files of an includedir sudo reads: the parser's rule, the one the freeze uses
    from opskit.hosts.sudoers.parse import dir_entries
    assert dir_entries({f"/etc/sudoers.d/{n}": "" for n in ("a~b", "x~", "a.b", "c")},
                       "/etc/sudoers.d") == ["/etc/sudoers.d/a~b", "/etc/sudoers.d/c"]


def test_sudo_scan_uses_sudos_own_semantics_negation_last_match_and_other_hosts():
    """The evaluator decides who gets in (opskit.hosts.sudoers): an entry negated later
    or an alias excluding the person grants nothing; a rule for another host still does."""
    who = sudo_grants.Who("ann", 2811, "staff", 50, ("wheel",), (10,))
    files = {"/etc/sudoers": "ALL, !ann ALL=(ALL) ALL\nUser_Alias NOTANN = ALL, !#2811\n"
                             "NOTANN ALL=ALL\nann db9 = (root) /usr/bin/psql\n"
                             "#includedir /etc/sudoers.d\n",
             "/etc/sudoers.d/x.bak": "ann ALL=ALL\n",
             "/etc/sudoers.d/ok~ay": "%#50 ALL=ALL\n"}
    got = sorted((g.file, g.first, g.token, g.how, g.action)
                 for g in sudo_grants.scan(files, who).grants)
    assert got == [("/etc/sudoers", 4, "ann", "name", "remove"),
                   ("/etc/sudoers.d/ok~ay", 1, "%#50", "primary", "manual")]
