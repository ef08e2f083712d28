"""Reading passwd/shadow/group through the Host layer (R-ACC-6 lock and expiry state)."""
import os

from opskit.hosts.local import LocalHost
from opskit.hosts.userdb import read_userdb

PASSWD = """root:x:0:0:root:/root:/bin/bash
# a comment
alice:x:2001:2001:Alice:/home/alice:/bin/bash
bob:x:2002:2002::/home/bob:/usr/sbin/nologin
carol:x:2003:100::/home/carol:/bin/bash
broken:line
"""
SHADOW = """root:*:20000:0:99999:7:::
alice:$y$j9T$abc$def:20000:0:99999:7:::
bob:!$y$j9T$abc$def:20000:0:99999:7::1:
carol::20000:0:99999:7:::
"""
GROUP = """root:x:0:
users:x:100:
alice:x:2001:
bob:x:2002:
adm:x:4:alice,carol
sudo:x:27:bob
"""


def sysroot(tmp_path, shadow=True):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(PASSWD)
    (etc / "group").write_text(GROUP)
    if shadow:
        (etc / "shadow").write_text(SHADOW)
        os.chmod(etc / "shadow", 0o640)
    return LocalHost("img", sysroot=str(tmp_path))


def test_accounts_joined_with_shadow_and_groups(tmp_path):
    db = read_userdb(sysroot(tmp_path))
    assert sorted(db.accounts) == ["alice", "bob", "carol", "root"]
    alice, bob, carol = db.accounts["alice"], db.accounts["bob"], db.accounts["carol"]
    assert alice.password == "set" and not alice.locked and not alice.expired()
    assert alice.groups == ["adm"] and alice.primary_group == "alice"
    assert bob.locked and bob.expired() and bob.nologin and bob.groups == ["sudo"]
    assert bob.expire_day == 1
    assert carol.password == "empty" and carol.primary_group == "users"
    assert db.accounts["root"].password == "none" and db.accounts["root"].locked
    assert "$y$" not in repr(db.accounts) and "$y$" not in str(alice.as_dict())
    assert db.groups["adm"].members == ["alice", "carol"]


def test_expiry_is_relative_to_today(tmp_path):
    db = read_userdb(sysroot(tmp_path))
    bob = db.accounts["bob"]
    assert bob.expired(today=5) and not bob.expired(today=0)


def test_missing_shadow_leaves_state_unknown(tmp_path):
    db = read_userdb(sysroot(tmp_path, shadow=False))
    assert not db.shadow_readable
    assert db.accounts["alice"].password == "unknown" and not db.accounts["alice"].locked
