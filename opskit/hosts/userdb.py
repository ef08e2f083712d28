"""Read a host's account databases (/etc/passwd, /etc/shadow, /etc/group).

One parser for everyone who needs account facts: provisioning plans and
freeze verification (opskit.accounts) and permission collectors
(opskit.perms). Works on any Host, so a sysroot image, this machine and an
SSH host read the same way. Never returns password hashes: only whether the
password is locked, empty or set (R-ACC-6 needs "locked"; nothing else does).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .base import Host, HostError

EPOCH_DAY = 86400


@dataclass
class Account:
    """One /etc/passwd entry joined with its /etc/shadow state."""

    name: str
    uid: int
    gid: int
    gecos: str
    home: str
    shell: str
    password: str = "unknown"        # set | locked | empty | none ('*', '!' only) | unknown
    expire_day: int | None = None    # days since 1970-01-01; None = never
    last_change_day: int | None = None
    groups: list[str] = field(default_factory=list)   # supplementary groups (from /etc/group)
    primary_group: str | None = None

    @property
    def locked(self) -> bool:
        """The password cannot be used to log in ('!' prefix, or no password at all)."""
        return self.password in ("locked", "none")

    def expired(self, today: int | None = None) -> bool:
        """The account itself is expired (shadow field 8 in the past): no login by any method."""
        if self.expire_day is None:
            return False
        if today is None:
            today = int(time.time() // EPOCH_DAY)
        # 0 is ambiguous across shadow-utils versions ("expired" vs "unset"), so
        # opskit never writes it and treats it as expired when reading.
        return self.expire_day <= today

    @property
    def nologin(self) -> bool:
        return self.shell.rsplit("/", 1)[-1] in ("nologin", "false") or self.shell == ""

    def as_dict(self) -> dict:
        return {"name": self.name, "uid": self.uid, "gid": self.gid, "gecos": self.gecos,
                "home": self.home, "shell": self.shell, "password": self.password,
                "expire_day": self.expire_day, "last_change_day": self.last_change_day,
                "groups": list(self.groups), "primary_group": self.primary_group,
                "locked": self.locked, "expired": self.expired(), "nologin": self.nologin}


@dataclass
class Group:
    name: str
    gid: int
    members: list[str]


@dataclass
class UserDB:
    accounts: dict[str, Account]
    groups: dict[str, Group]
    shadow_readable: bool = True

    def account(self, name: str) -> Account | None:
        return self.accounts.get(name)


def _password_state(field_: str) -> str:
    if field_ == "":
        return "empty"
    if field_ in ("*", "!", "!!", "!*", "*LK*"):
        return "none"
    if field_.startswith("!"):
        return "locked"
    return "set"


def _int_or_none(value: str) -> int | None:
    try:
        return int(value) if value != "" else None
    except ValueError:
        return None


def parse_passwd(text: str) -> dict[str, Account]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) < 7:
            continue
        try:
            out[parts[0]] = Account(parts[0], int(parts[2]), int(parts[3]), parts[4], parts[5],
                                    parts[6])
        except ValueError:
            continue
    return out


def parse_group(text: str) -> dict[str, Group]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) < 4:
            continue
        try:
            gid = int(parts[2])
        except ValueError:
            continue
        out[parts[0]] = Group(parts[0], gid, [m for m in parts[3].split(",") if m])
    return out


def apply_shadow(accounts: dict[str, Account], text: str) -> None:
    """Fill password state, last change and expiry from /etc/shadow text."""
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) < 8 or parts[0] not in accounts:
            continue
        acct = accounts[parts[0]]
        acct.password = _password_state(parts[1])
        acct.last_change_day = _int_or_none(parts[2])
        acct.expire_day = _int_or_none(parts[7])


def userdb_from_text(passwd: str, group: str, shadow: str | None = None) -> UserDB:
    """A UserDB from the texts of /etc/passwd, /etc/group and (None: unreadable)
    /etc/shadow, for callers that fetched the files themselves (opskit.accounts
    reads them in one round trip together with other files)."""
    accounts = parse_passwd(passwd)
    groups = parse_group(group)
    if shadow is not None:
        apply_shadow(accounts, shadow)
    by_gid = {g.gid: g.name for g in groups.values()}
    for g in groups.values():
        for member in g.members:
            if member in accounts:
                accounts[member].groups.append(g.name)
    for acct in accounts.values():
        acct.primary_group = by_gid.get(acct.gid)
        acct.groups.sort()
    return UserDB(accounts, groups, shadow is not None)


def read_userdb(host: Host) -> UserDB:
    """Accounts and groups of ``host``. /etc/shadow unreadable (not root) leaves
    password state 'unknown' and ``shadow_readable`` False instead of failing."""
    passwd = host.read_file("/etc/passwd").decode("utf-8", "replace")
    group = host.read_file("/etc/group").decode("utf-8", "replace")
    try:
        shadow: str | None = host.read_file("/etc/shadow").decode("utf-8", "replace")
    except HostError:
        shadow = None
    return userdb_from_text(passwd, group, shadow)
