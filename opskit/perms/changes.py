"""Who gained or lost what between two snapshots, per person, host and database.

Each snapshot is reduced to *facts*: for every (account, place) a mapping
``(kind, item) -> value``. Set-like access (a group, a sudo right, a key
fingerprint, a crontab entry, a database membership or grant) has the value
True; account state (password, expiry, shell, login attribute) has its value.
The change list is then: facts only in the newer snapshot (``gained``), only in
the older one (``lost``), or with a different value (``changed``). This is how
an administrator proves a freeze (R-ACC-6) or a transfer took effect: the
password goes ``set -> locked``, ``expired no -> yes``, the shell to nologin,
the keys and sudo rights are ``lost``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .facts import PG_ATTRIBUTES, direct_grants


@dataclass
class Change:
    person: str | None
    account: str
    where: str
    kind: str
    item: str
    change: str          # gained | lost | changed
    before: str = ""
    after: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _host_facts(h: dict, min_uid: int) -> dict[tuple[str, str], dict]:
    data = h.get("data") or {}
    out: dict[tuple[str, str], dict] = {}
    where = h["name"]
    accounts = data.get("accounts", {})
    keys, sudo, cron = data.get("keys", {}), data.get("sudo", {}), data.get("crontabs", {})
    for login, acct in accounts.items():
        if acct.get("uid", 0) < min_uid and login not in sudo and login not in keys \
                and acct.get("uid") != 0:
            continue
        f = {("account", "exists"): "yes",
             ("state", "password"): acct.get("password"),
             ("state", "expired"): "yes" if acct.get("expired") else "no",
             ("state", "shell"): acct.get("shell")}
        for g in acct.get("groups", ()):
            f[("group", g)] = True
        for s in sudo.get(login, ()):
            f[("sudo", s["rule"])] = True
        for k in keys.get(login, ()):
            f[("key", f"{k['type']} {k['fingerprint']}")] = True
        for c in cron.get(login, ()):
            f[("crontab", f"{c['schedule']} {c['command']}")] = True
        out[(login, where)] = f
    return out


def _db_facts(d: dict) -> dict[tuple[str, str], dict]:
    data = d.get("data") or {}
    where = f"db:{d['name']}"
    out: dict[tuple[str, str], dict] = {}
    direct = direct_grants(data.get("privileges", {}))
    member_of = data.get("member_of", {})
    for name, attrs in data.get("roles", {}).items():
        if attrs.get("builtin"):
            continue
        f = {("pg-role", "exists"): "yes",
             ("pg-attr", "LOGIN"): "yes" if attrs.get("login") else "no",
             ("pg-attr", "VALID UNTIL"): attrs.get("valid_until") or "-"}
        for a in PG_ATTRIBUTES:
            f[("pg-attr", a.upper())] = "yes" if attrs.get(a) else "no"
        for m in member_of.get(name, ()):
            f[("pg-member", m["role"])] = True
        for g in direct.get(name, ()):
            f[("pg-grant", g)] = True
        out[(name, where)] = f
    return out


def facts(snapshot, min_uid: int = 1000) -> tuple[dict, set[str]]:
    """((account, place) -> facts, places collected) of one snapshot."""
    out: dict = {}
    places: set[str] = set()
    for h in snapshot.hosts:
        if h.get("status") == "ok":
            places.add(h["name"])
            out.update(_host_facts(h, min_uid))
    for d in snapshot.databases:
        if d.get("status") == "ok":
            places.add(f"db:{d['name']}")
            out.update(_db_facts(d))
    return out, places


def _text(v) -> str:
    return "yes" if v is True else "-" if v is None else str(v)


def changes(old, new, *, by_login: dict | None = None, person_login: str | None = None,
            min_uid: int = 1000) -> tuple[list[Change], list[str]]:
    """Changes from ``old`` to ``new`` (see module doc) and notes about places
    only one snapshot could read (those are not compared)."""
    a, pa = facts(old, min_uid)
    b, pb = facts(new, min_uid)
    notes = [f"{p}: only in the newer snapshot (not compared)" for p in sorted(pb - pa)]
    notes += [f"{p}: only in the older snapshot (not compared)" for p in sorted(pa - pb)]
    common = pa & pb
    by_login = by_login or {}
    out: list[Change] = []
    for key in sorted(set(a) | set(b)):
        login, where = key
        if where not in common:
            continue
        if person_login is not None and login != person_login:
            continue
        fa, fb = a.get(key, {}), b.get(key, {})
        if fa == fb:
            continue
        person = by_login.get(login)
        pid = person.id if person is not None else None
        for fk in sorted(set(fa) | set(fb)):
            va, vb = fa.get(fk), fb.get(fk)
            if va == vb:
                continue
            kind, item = fk
            if va is None:
                change = "gained"
            elif vb is None:
                change = "lost"
            else:
                change = "changed"
            out.append(Change(pid, login, where, kind, item, change,
                              "" if va is None else _text(va), "" if vb is None else _text(vb)))
    return out, notes
