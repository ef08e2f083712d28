"""The Linux collector on recorded host trees: accounts, keys, last logins, crontabs."""
import time

from opskit.hosts import LocalHost
from opskit.perms.lastlog import read_last_logins
from opskit.perms.linux import collect_linux, mask_secrets, parse_key_line
from opskit.hosts.userdb import read_userdb
from tests.fixtures.perms.trees import (DAY, KEYS, Org, key_fingerprint, lastlog_bytes,
                                        sqlite_bytes, wtmp_bytes)


def test_accounts_groups_sudo_keys_crontabs(tmp_path):
    org = Org(tmp_path)
    app = collect_linux(LocalHost("app1", sysroot=org.hosts["app1"]))
    db = collect_linux(LocalHost("db1", sysroot=org.hosts["db1"]))
    g = app["accounts"]["guo.qiang"]
    assert (g["locked"], g["expired"], g["nologin"]) == (True, True, True)
    h = app["accounts"]["huang.lei"]
    assert (h["locked"], h["expired"], h["password"]) == (False, False, "set")
    assert h["groups"] == ["adm", "systemd-journal"]
    assert all("$6$" not in str(a) for a in app["accounts"].values())   # never hashes
    assert [i["rule"] for i in db["sudo"]["he.ping"]] == [
        "db1,db1.example=(postgres) /usr/bin/psql", "db1,db1.example=(postgres) /usr/bin/pg_dump"]
    assert "huang.lei" not in {i["via"] for i in db["sudo"]["he.ping"]}
    assert db["sudo_files"] == ["/etc/sudoers", "/etc/sudoers.admins", "/etc/sudoers.d/10-opskit",
                                "/etc/sudoers.d/20-dba"]
    key = db["keys"]["he.ping"][0]
    assert key["fingerprint"] == key_fingerprint(KEYS["he.ping"]) and key["options"] is True
    assert key["source"] == "/home/he.ping/.ssh/authorized_keys:1"
    assert KEYS["he.ping"].split()[1] not in str(db)                   # fingerprints only
    cron = app["crontabs"]["wu.xia"][0]
    assert cron["schedule"] == "30 6 * * 1-5"
    assert "hunter2" not in cron["command"] and "s3cret" not in cron["command"]
    assert cron["command"].startswith("PGPASSWORD=*** ")
    assert app["crontabs"]["root"][0]["source"] == "/etc/crontab:2"
    assert app["warnings"] == [] and db["warnings"] == []


def test_key_lines_and_masking():
    assert parse_key_line("# comment") is None and parse_key_line("ssh-ed25519 !!!") is None
    parsed = parse_key_line('command="echo a b",no-pty ' + KEYS["ma.lin"])
    assert parsed["fingerprint"] == key_fingerprint(KEYS["ma.lin"]) and parsed["options"]
    assert mask_secrets("mysql -u x --password=abc db") == "mysql -u x --password=*** db"
    assert mask_secrets("API_TOKEN=xyz run") == "API_TOKEN=*** run"


def test_every_login_record_source(tmp_path):
    now = time.time()
    org = Org(tmp_path, now=now)
    root = tmp_path / "h"
    org.write(str(root), {"/etc/passwd": "root:x:0:0::/root:/bin/bash\n"
                                         "a:x:1001:1001::/home/a:/bin/bash\n"
                                         "b:x:1002:1002::/home/b:/bin/bash\n"
                                         "c:x:1003:1003::/home/c:/bin/bash\n"
                                         "d:x:1004:1004::/home/d:/bin/bash\n",
                          "/etc/group": "root:x:0:\n"})
    host = LocalHost("h", sysroot=str(root))
    accounts = read_userdb(host).accounts
    assert read_last_logins(host, accounts) == ({}, [], [])
    org.write(str(root), {
        "/var/log/wtmp": wtmp_bytes({"a": now - 10 * DAY}),
        "/var/log/wtmp.1": wtmp_bytes({"a": now - 40 * DAY}),
        "/var/log/lastlog": lastlog_bytes({1001: now - 5 * DAY, 1002: now - 7 * DAY}),
        "/var/lib/lastlog/lastlog2.db": sqlite_bytes(str(tmp_path), [
            ("CREATE TABLE Lastlog2 (Name TEXT PRIMARY KEY, Time INTEGER, TTY TEXT, "
             "RemoteHost TEXT, Service TEXT)",),
            ("INSERT INTO Lastlog2 VALUES ('c', ?, 'tty1', '', 'login')", (int(now - DAY),))]),
        "/var/lib/wtmpdb/wtmp.db": sqlite_bytes(str(tmp_path), [
            ("CREATE TABLE wtmp (ID INTEGER PRIMARY KEY, Type INTEGER, User TEXT, Login "
             "INTEGER, Logout INTEGER, TTY TEXT, RemoteHost TEXT, Service TEXT)",),
            ("INSERT INTO wtmp (Type, User, Login) VALUES (3, 'd', ?)",
             (int((now - 2 * DAY) * 1_000_000),)),
            ("INSERT INTO wtmp (Type, User, Login) VALUES (1, 'reboot', ?)",
             (int(now * 1_000_000),))]),
    })
    last, sources, warnings = read_last_logins(host, accounts)
    assert sources == ["wtmpdb", "lastlog2", "lastlog", "wtmp"] and warnings == []
    assert last["a"] == {"time": int(now - 5 * DAY), "source": "lastlog"}   # newest wins
    assert last["b"]["source"] == "lastlog" and last["c"]["source"] == "lastlog2"
    assert last["d"] == {"time": int(now - 2 * DAY), "source": "wtmpdb"}
    assert "reboot" not in last
    org.write(str(root), {"/var/lib/wtmpdb/wtmp.db": b"not sqlite at all" * 100})
    _last, _sources, warnings = read_last_logins(host, accounts)
    assert "not a readable SQLite database" in warnings[0]


def test_no_login_records_is_a_warning(tmp_path):
    org = Org(tmp_path)
    org.write("app1", {"/var/log/wtmp": None})
    data = collect_linux(LocalHost("app1", sysroot=org.hosts["app1"]))
    assert data["login_sources"] == [] and data["last_login"] == {}
    assert any("no login records" in w for w in data["warnings"])
