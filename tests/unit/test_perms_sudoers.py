"""sudoers as sudo reads it: includes, includedirs, aliases, user lists (R-ACC-4)."""
from opskit.hosts import LocalHost
from opskit.hosts.userdb import read_userdb
from opskit.perms.sudoers import SudoItem, covers, parse_rule, read_sudoers
from tests.fixtures.policy.trees import write

PASSWD = ("root:x:0:0::/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/bash\n"
          "bob:x:1002:1002::/home/bob:/bin/bash\ncarol:x:1003:500::/home/carol:/bin/bash\n"
          "dave:x:1004:1004::/home/dave:/bin/bash\n")
GROUP = "root:x:0:\nwheel:x:10:alice,bob\nops:x:500:\nalice:x:1001:\n"


def tree(tmp_path, files):
    write(tmp_path, {"/etc/passwd": PASSWD, "/etc/group": GROUP, **files})
    host = LocalHost("h", sysroot=str(tmp_path))
    return read_sudoers(host, read_userdb(host))


def rules(result, login):
    return [i.text() for i in result.items.get(login, [])]


def test_includes_includedir_and_aliases(tmp_path):
    result = tree(tmp_path, {
        "/etc/sudoers": "Defaults env_reset\n#include sudoers.local\n@includedir /etc/sudoers.d\n"
                        "# a comment: #includedir is a directive, this is not\n",
        "/etc/sudoers.local": "User_Alias ADMINS = alice, %ops : AUDITORS = dave\n"
                              "Cmnd_Alias SHUTDOWN = /sbin/reboot, /sbin/poweroff\n"
                              "Runas_Alias DB = postgres, pgadmin\n"
                              "Host_Alias DBH = db1, db2\n"
                              "ADMINS ALL=(ALL:ALL) ALL\n"
                              "AUDITORS DBH = (DB) NOPASSWD: /usr/bin/psql, \\\n"
                              "   SHUTDOWN\n",
        "/etc/sudoers.d/10-wheel": "%wheel ALL=(root) /usr/bin/systemctl restart nginx\n",
        "/etc/sudoers.d/bad.conf": "dave ALL=(ALL) ALL\n",      # names with '.' are skipped
        "/etc/sudoers.d/old~": "dave ALL=(ALL) ALL\n",          # editor backups too
    })
    assert rules(result, "alice") == ["ALL=(ALL:ALL) ALL",
                                      "ALL=(root) /usr/bin/systemctl restart nginx"]
    # %ops resolves to accounts whose primary group is ops (carol), not only listed members
    assert rules(result, "carol") == ["ALL=(ALL:ALL) ALL"]
    assert rules(result, "bob") == ["ALL=(root) /usr/bin/systemctl restart nginx"]
    assert rules(result, "dave") == [
        "db1,db2=(postgres,pgadmin) NOPASSWD: /usr/bin/psql",
        "db1,db2=(postgres,pgadmin) NOPASSWD: /sbin/reboot",
        "db1,db2=(postgres,pgadmin) NOPASSWD: /sbin/poweroff"]
    items = {i.via for i in result.items["carol"]}
    assert items == {"ADMINS"}
    assert result.items["dave"][0].source == "/etc/sudoers.local:6"
    assert result.files == ["/etc/sudoers", "/etc/sudoers.local", "/etc/sudoers.d/10-wheel"]
    assert result.warnings == []


def test_negation_uid_gid_all_and_problems(tmp_path):
    result = tree(tmp_path, {
        "/etc/sudoers": "User_Alias STAFF = %wheel, !bob\nSTAFF ALL = /bin/ls\n"
                        "#1004 ALL=(root) /bin/date\n%#500 ALL=(root) /bin/df\n"
                        "ALL ALL=(root) !/bin/su\n"
                        "+netops ALL=(root) ALL\n"
                        "@include /etc/missing\n#include /etc/sudoers\n"
                        "this line is garbage\n",
    })
    assert rules(result, "alice")[0] == "ALL=(root) /bin/ls"
    assert "ALL=(root) /bin/ls" not in rules(result, "bob")
    assert rules(result, "dave")[0] == "ALL=(root) /bin/date"
    assert rules(result, "carol")[0] == "ALL=(root) /bin/df"
    assert "ALL=(root) !/bin/su" in rules(result, "root")
    text = "\n".join(result.warnings)
    assert "'+netops'" in text and "/etc/missing: included but not found" in text
    assert "/etc/sudoers: included again (loop)" in text
    assert "cannot parse" in text


def test_no_sudoers_is_a_warning_not_an_error(tmp_path):
    result = tree(tmp_path, {})
    assert result.items == {} and result.warnings == ["/etc/sudoers: not found (no sudo rules)"]


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
    # NOPASSWD is more than declared; a negation is never "more"
    assert not covers(declared[0], SudoItem("ALL", "postgres", ("NOPASSWD",), "/usr/bin/psql"))
    assert covers(declared[0], SudoItem("ALL", "root", (), "!/bin/sh"))
    assert not covers(declared[0], SudoItem("ALL", "root", (), "/usr/bin/psql"))
