"""sudo rights as sudo decides them, one test per numbered case of issue #19 (R-ACC-4).

Each case goes through the Linux collector (what ``perms snapshot`` records) on a
recorded host tree; tests/integration/perms/test_sudo_eval.py puts the same trees to the
real sudo.
"""
import os

from opskit.hosts import LocalHost
from opskit.perms.linux import collect_linux
from opskit.hosts.sudoers.evaluate import HostIdentity, SudoUser, check, evaluate
from opskit.perms.sudoers import SudoItem, covers, parse_rule
from tests.fixtures.policy.trees import write

PASSWD = ("root:x:0:0::/root:/bin/bash\nann:x:2001:2001::/home/ann:/bin/bash\n"
          "bob:x:2002:2002::/home/bob:/bin/bash\ncarl:x:2003:2003::/home/carl:/bin/bash\n")
GROUP = "root:x:0:\nann:x:2001:\nbob:x:2002:\ncarl:x:2003:\nops:x:2100:ann,bob\ndev:x:2200:bob\n"
# the sudoers trees of the numbered cases (also asked of the real sudo)
CASES = {
    1: {"/etc/sudoers": "Host_Alias OTHERHOSTS = db9, db9.example, 10.9.0.0/16\n"
                        "ann OTHERHOSTS = (root) ALL\nann h1 = (root) /usr/bin/id\n"},
    2: {"/etc/sudoers": "ann ALL = (root) NOPASSWD: /usr/bin/true, (pgx) /usr/bin/whoami\n"},
    3: {"/etc/sudoers": "Defaults:ann !authenticate\nDefaults!/usr/bin/date !authenticate\n"
                        "Defaults exempt_group=dev\n"
                        "ann, carl, bob ALL = (root) /usr/bin/id, /usr/bin/date\n"},
    4: {"/etc/sudoers": "User_Alias X = !ann, %ops\nCmnd_Alias NOTID = !/usr/bin/id\n"
                        "X ALL = (root) /usr/bin/true\ncarl ALL = (root) ALL, !NOTID\n"},
    5: {"/etc/sudoers": "@include /etc/sudoers.d/site/%h\n@include /etc/sudo\\ local\n",
        "/etc/sudoers.d/site/h1": "ann ALL = (root) /usr/bin/id\n",
        "/etc/sudo local": "bob ALL = (root) /usr/bin/date\n"},
    6: {"/etc/sudoers": "# ann's old rule, removed \\\ncarl ALL = (root) /usr/bin/whoami\n"},
    7: {"/etc/sudoers": "@includedir /etc/sudoers.d\nann ALL = (root) /usr/bin/true\n",
        "/etc/sudoers.d/world": ("ann ALL = (root) NOPASSWD: ALL\n", 0o666),
        "/etc/sudoers.d/owned": ("bob ALL = (root) NOPASSWD: ALL\n", 0o440, 2002, 0),
        "/etc/sudoers.d/groupw": ("carl ALL = (root) NOPASSWD: ALL\n", 0o460, 0, 2100),
        "/etc/sudoers.d/rootgw": ("carl ALL = (root) /usr/bin/id\n", 0o460, 0, 0)},
    8: {"/etc/sudoers": "@includedir /etc/sudoers.d\n",
        "/etc/sudoers.d/sub/inner": "ann ALL = (ALL) NOPASSWD: ALL\n",
        "/etc/sudoers.d/10-ann": "ann ALL = (root) /usr/bin/id\n"},
}


def host_tree(tmp_path, files: dict) -> dict:
    """Collect a host whose sysroot has ``files`` (text or (text, mode[, uid, gid]))."""
    plain = {p: (c[0] if isinstance(c, tuple) else c) for p, c in files.items()}
    write(tmp_path, {"/etc/passwd": PASSWD, "/etc/group": GROUP, "/etc/hostname": "h1\n",
                     "/etc/hosts": "10.1.2.3 h1.example.test h1\n", **plain})
    for path, c in files.items():
        real = os.path.join(tmp_path, path.lstrip("/"))
        if isinstance(c, tuple):
            mode, uid, gid = (tuple(c[1:]) + (0, 0))[:3]
            os.chown(real, uid, gid)
            os.chmod(real, mode)
        else:
            os.chmod(real, 0o440)
    return collect_linux(LocalHost("h1", sysroot=str(tmp_path)))


def rules(data, login, where="sudo"):
    return [i["rule"] for i in data[where].get(login, [])]


def test_1_rules_for_other_hosts_are_apart(tmp_path):
    data = host_tree(tmp_path, CASES[1])
    assert rules(data, "ann") == ["h1=(root) /usr/bin/id"]
    assert rules(data, "ann", "sudo_elsewhere") == [
        "db9,db9.example,10.9.0.0/16=(root) ALL"]
    assert data["identity"]["hostname"] == "h1"
    assert data["identity"]["fqdn"] == "h1.example.test"


def test_2_tags_carry_over_a_new_runas(tmp_path):
    data = host_tree(tmp_path, CASES[2])
    assert rules(data, "ann") == ["ALL=(root) NOPASSWD: /usr/bin/true",
                                  "ALL=(pgx) NOPASSWD: /usr/bin/whoami"]


def test_3_defaults_that_remove_authentication(tmp_path):
    data = host_tree(tmp_path, CASES[3])
    by = {(login, i["command"]): i for login in ("ann", "bob", "carl")
          for i in data["sudo"][login]}
    assert "NOPASSWD" in by[("ann", "/usr/bin/id")]["tags"]             # Defaults:ann
    assert by[("ann", "/usr/bin/id")]["reason"].startswith("Defaults:ann !authenticate")
    assert "NOPASSWD" in by[("bob", "/usr/bin/id")]["tags"]             # exempt_group=dev
    assert by[("bob", "/usr/bin/id")]["reason"] == "exempt_group=dev"
    assert "NOPASSWD" not in by[("carl", "/usr/bin/id")]["tags"]        # must NOT pass
    assert "NOPASSWD" in by[("carl", "/usr/bin/date")]["tags"]          # Defaults!/usr/bin/date


def test_4_last_match_wins_and_double_negation(tmp_path):
    data = host_tree(tmp_path, CASES[4])
    assert rules(data, "ann") == ["ALL=(root) /usr/bin/true"]          # !ann, %ops -> ann in
    assert rules(data, "carl") == ["ALL=(root) ALL", "ALL=(root) /usr/bin/id"]  # !!id: allowed
    assert "dave" not in data["sudo"]


def test_5_includes_with_host_placeholder_and_escaped_space(tmp_path):
    data = host_tree(tmp_path, CASES[5])
    assert rules(data, "ann") == ["ALL=(root) /usr/bin/id"]
    assert rules(data, "bob") == ["ALL=(root) /usr/bin/date"]
    assert data["sudo_files"] == ["/etc/sudoers", "/etc/sudoers.d/site/h1", "/etc/sudo local"]


def test_6_a_comment_never_continues(tmp_path):
    data = host_tree(tmp_path, CASES[6])
    assert rules(data, "carl") == ["ALL=(root) /usr/bin/whoami"]


def test_7_files_sudo_refuses_are_skipped_with_a_warning(tmp_path):
    data = host_tree(tmp_path, CASES[7])
    assert rules(data, "ann") == ["ALL=(root) /usr/bin/true"]
    assert "bob" not in data["sudo"]
    assert rules(data, "carl") == ["ALL=(root) /usr/bin/id"]      # group root may write
    text = "\n".join(data["warnings"])
    assert "/etc/sudoers.d/world is world writable" in text
    assert "/etc/sudoers.d/owned is owned by uid 2002, should be 0" in text
    assert "/etc/sudoers.d/groupw is owned by gid 2100, should be 0" in text


def test_8_subdirectories_of_an_includedir_are_skipped_silently(tmp_path):
    data = host_tree(tmp_path, CASES[8])
    assert rules(data, "ann") == ["ALL=(root) /usr/bin/id"]
    assert not [w for w in data["warnings"] if "sudoers" in w]


def test_evaluate_api_for_other_modules():
    tree = {"/etc/sudoers": "Host_Alias H = h1, 10.1.2.0/24\n"
                            "ann H = (root) NOPASSWD: /usr/bin/id, (pgx) /usr/bin/whoami\n"
                            "ann !h1 = (root) ALL\n"}
    host = HostIdentity("h1", "h1.example.test", ("10.1.2.3/24",))
    ann = SudoUser("ann", 2001, 2001, frozenset({"ann"}), frozenset({2001}))
    rights = evaluate(tree, ann, host)
    assert [(r.runas, r.command, r.nopasswd, r.source) for r in rights] == [
        ("root", "/usr/bin/id", True, "/etc/sudoers:2"),
        ("pgx", "/usr/bin/whoami", True, "/etc/sudoers:2")]
    assert [r.here for r in evaluate(tree, ann, host, elsewhere=True)] == [True, True, False]
    assert check(tree, ann, host, "root", "/usr/bin/date").allowed is False
    other = HostIdentity("h2", "", ("10.1.2.9/24",))               # same network: H matches
    assert check(tree, ann, other, "root", "/usr/bin/id").allowed is True
    # '!h1' alone matches no host (sudo: '!' only excludes), so h2 gets no ALL
    assert check(tree, ann, other, "root", "/usr/bin/date").allowed is False


def test_declared_rules_and_coverage():
    declared = parse_rule("ALL=(postgres) /usr/bin/psql, /usr/bin/pg_dump")
    assert [d.text() for d in declared] == ["ALL=(postgres) /usr/bin/psql",
                                            "ALL=(postgres) /usr/bin/pg_dump"]
    full = parse_rule("ALL=(ALL:ALL) ALL")[0]
    psql = SudoItem("db1", "postgres", (), "/usr/bin/psql")
    assert covers(full, psql) and covers(declared[0], SudoItem("ALL", "postgres", (),
                                                               "/usr/bin/psql"))
    narrow = SudoItem("db1", "postgres", (), "/usr/bin/psql")
    everywhere = SudoItem("ALL", "postgres", (), "/usr/bin/psql")
    assert covers(declared[0], psql) and not covers(narrow, everywhere)   # host lists
    assert covers(narrow, everywhere, ignore_hosts=True)
    # NOPASSWD (R-ACC-4: password-free rights must be declared) is more than declared
    assert not covers(declared[0], SudoItem("ALL", "postgres", ("NOPASSWD",), "/usr/bin/psql"))
    assert covers(declared[0], SudoItem("ALL", "root", (), "!/bin/sh"))
    assert not covers(declared[0], SudoItem("ALL", "root", (), "/usr/bin/psql"))
