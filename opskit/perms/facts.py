"""What the checks look at: the declared model indexed for the comparison, and the
snapshot's hosts, accounts, databases and database roles with what is derived from them.

Work is indexed by login (one dict lookup per account), and the declared
expectations are computed once per distinct set of roles, so the cost grows
with the number of accounts in the snapshot, not people x hosts x rules.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from opskit.accounts.roster import INACTIVE_STATUSES, Person, Roster

from .linux import parse_key_line
from .postgres import WRITE_PRIVILEGES
from .sudoers import SudoItem, parse_rule

if TYPE_CHECKING:
    from .analysis import Options

PG_ATTRIBUTES = ("superuser", "createrole", "createdb", "replication", "bypassrls")
DAY = 86400


class Declared:
    """The roster and role model, indexed for the comparison."""

    def __init__(self, roster: Roster):
        self.roster = roster
        self.model = roster.model
        self.by_login: dict[str, Person] = {p.login: p for p in roster.people.values()}
        self._roles: dict[str, list[str]] = {}
        self._groups: dict[tuple, set[str]] = {}
        self._sudo: dict[tuple, list[SudoItem]] = {}
        self._pg: dict[tuple, set[str]] = {}
        self._keys: dict[str, dict[str, str]] = {}
        self._hg: dict[str, set[str]] = {}

    def roles(self, p: Person) -> list[str]:
        r = self._roles.get(p.id)
        if r is None:
            r = self._roles[p.id] = self.roster.roles_of(p)
        return r

    def groups(self, roles: list[str]) -> set[str]:
        key = tuple(roles)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = set(self.model.linux_groups(roles))
        return g

    def sudo(self, roles: list[str]) -> list[SudoItem]:
        key = tuple(roles)
        s = self._sudo.get(key)
        if s is None:
            s = []
            for role in roles:
                for rule in self.model.sudo_rules([role]):
                    s.extend(parse_rule(rule, f"roles.yaml {role}"))
            self._sudo[key] = s
        return s

    def pg(self, roles: list[str], names: tuple) -> set[str]:
        key = (tuple(roles), names)
        s = self._pg.get(key)
        if s is None:
            s = set()
            for name in names:
                s.update(self.model.pg_roles(roles, name))
            self._pg[key] = s
        return s

    def keys(self, p: Person) -> dict[str, str]:
        """Declared key fingerprints -> comment."""
        k = self._keys.get(p.id)
        if k is None:
            k = {}
            for line in p.ssh_keys:
                parsed = parse_key_line(line)
                if parsed:
                    k[parsed["fingerprint"]] = parsed["comment"]
            self._keys[p.id] = k
        return k

    def host_groups(self, p: Person) -> set[str]:
        g = self._hg.get(p.id)
        if g is None:
            g = self._hg[p.id] = set(self.roster.host_groups_of(p))
        return g

    def tiers(self, p: Person) -> set[str | None]:
        return {self.model.tier_of(r) for r in self.roles(p)}


@dataclass
class Context:
    """One comparison: the snapshot, the declared model, the options, ``only`` (the one
    person it is limited to, if any), and the actual access per login that the walk over
    hosts and databases gathers for the per-person checks."""

    snapshot: Any
    declared: Declared
    opts: Options
    now: float                        # epoch seconds the comparison is made at
    only: Person | None = None
    actual_sudo: dict[str, list[SudoItem]] = field(default_factory=dict)
    actual_pg: dict[str, set[str]] = field(default_factory=dict)

    @property
    def roster(self) -> Roster:
        return self.declared.roster

    @property
    def model(self):
        return self.declared.model

    @cached_property
    def today(self) -> int:
        return int(self.now // DAY)

    @cached_property
    def dormant_before(self) -> float:
        return self.now - self.opts.dormant_days * DAY

    @cached_property
    def ignore(self) -> set[str]:
        return set(self.opts.ignore_accounts)

    @cached_property
    def _generic(self):
        names = self.opts.generic_names
        return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in names)) if names else None

    def is_generic(self, name: str) -> bool:
        return bool(self._generic and self._generic.match(name))

    def people(self) -> list[Person]:
        """The people compared: ``only``, else everyone in the roster."""
        return [self.only] if self.only is not None else list(self.roster.people.values())

    @cached_property
    def fingerprints(self) -> dict[str, set[tuple[str, str]]]:
        """Key fingerprint -> (login, host) it is installed for, over the collected hosts."""
        out: dict[str, set[tuple[str, str]]] = {}
        for h in self.snapshot.hosts:
            data = h.get("data")
            if h.get("status") != "ok" or not data:
                continue
            for login, klist in data.get("keys", {}).items():
                for k in klist:
                    out.setdefault(k["fingerprint"], set()).add((login, h["name"]))
        return out

    @cached_property
    def holders(self) -> dict[str, set[str]]:
        """Role -> ids of the active people declared with it."""
        out: dict[str, set[str]] = {}
        for p in self.roster.people.values():
            if p.active:
                for r in self.declared.roles(p):
                    out.setdefault(r, set()).add(p.id)
        return out

    @cached_property
    def query_pg_roles(self) -> dict[str, list[str]]:
        """PostgreSQL role -> the query-tier roles granting it (R-ACC-5)."""
        out: dict[str, list[str]] = {}
        for role in self.model.roles.values():
            if role.tier == "query":
                for pg in role.pg_roles:
                    out.setdefault(pg, []).append(role.name)
        return out

    @cached_property
    def special_pg(self) -> set[str]:
        """PostgreSQL roles granted by special-tier roles."""
        return {pg for r in self.model.roles.values() if r.tier == "special" for pg in r.pg_roles}


def is_frozen(acct: dict) -> bool:
    """No way in: password locked (or none) and the account expired (R-ACC-6)."""
    return bool(acct.get("locked")) and bool(acct.get("expired"))


@dataclass
class HostFacts:
    """One collected host of the snapshot."""

    name: str
    groups: set[str]
    data: dict

    @classmethod
    def from_row(cls, row: dict) -> "HostFacts":
        return cls(row["name"], set(row.get("groups") or ()), row["data"])

    @property
    def accounts(self) -> dict[str, dict]:
        return self.data.get("accounts", {})

    @property
    def keys(self) -> dict[str, list[dict]]:
        return self.data.get("keys", {})

    @property
    def last_login(self) -> dict[str, dict]:
        return self.data.get("last_login", {})

    @property
    def has_login_sources(self) -> bool:
        return bool(self.data.get("login_sources"))

    @property
    def crontabs(self) -> dict[str, list]:
        return self.data.get("crontabs", {})

    def expects(self, host_groups: set[str]) -> bool:
        """Whether someone with accounts in ``host_groups`` should have one here."""
        return "all" in host_groups or bool(self.groups & host_groups)


@dataclass
class AccountFacts:
    """One account on a collected host, with the person whose login it is (if any)."""

    ctx: Context
    host: HostFacts
    login: str
    acct: dict
    person: Person | None
    sudo_items: list[SudoItem]

    @classmethod
    def on(cls, ctx: Context, host: HostFacts, login: str, acct: dict) -> "AccountFacts":
        items = [SudoItem.from_dict(s) for s in host.data.get("sudo", {}).get(login, ())]
        return cls(ctx, host, login, acct, ctx.declared.by_login.get(login), items)

    @property
    def uid(self) -> int:
        return self.acct.get("uid", 0)

    @cached_property
    def frozen(self) -> bool:
        return is_frozen(self.acct)

    @property
    def keys(self) -> list[dict]:
        return self.host.keys.get(self.login, ())

    @property
    def second_root(self) -> bool:
        """An account nobody declared with uid 0 besides root."""
        return self.person is None and self.uid == 0 and self.login != "root"

    @property
    def unaccounted(self) -> bool:
        """An account nobody declared that is not a system, ignored or service account."""
        return (self.person is None and not self.second_root and self.uid >= self.ctx.opts.min_uid
                and self.login not in self.ctx.ignore and self.uid != 65534
                and self.login not in self.ctx.roster.service_accounts)

    @property
    def leaver(self) -> bool:
        """A departing, transferred or departed person's account (R-ACC-6)."""
        return self.person is not None and self.person.status in INACTIVE_STATUSES

    @property
    def compared(self) -> bool:
        """An active person's account, compared with their declared roles."""
        return self.person is not None and not self.leaver

    @cached_property
    def roles(self) -> list[str]:
        return self.ctx.declared.roles(self.person)

    @cached_property
    def host_groups(self) -> set[str]:
        return self.ctx.declared.host_groups(self.person)

    @cached_property
    def expected(self) -> bool:
        """The person's host groups include this host."""
        return self.host.expects(self.host_groups)

    @cached_property
    def declared_groups(self) -> set[str]:
        return self.ctx.declared.groups(self.roles) if self.expected else set()

    @cached_property
    def declared_sudo(self) -> list[SudoItem]:
        return self.ctx.declared.sudo(self.roles) if self.expected else []

    @cached_property
    def declared_keys(self) -> dict[str, str]:
        return self.ctx.declared.keys(self.person)


def effective_roles(member_of: dict, role: str, memo: dict) -> set[str]:
    """Every role ``role`` is a member of, directly or through others (recursive)."""
    if role in memo:
        return memo[role]
    memo[role] = set()                 # cycles (impossible in PostgreSQL) end here
    out: set[str] = set()
    for m in member_of.get(role, ()):
        out.add(m["role"])
        out |= effective_roles(member_of, m["role"], memo)
    memo[role] = out
    return out


def writes_by_grantee(privs: dict) -> dict[str, list[str]]:
    """Write privileges (INSERT, UPDATE, ...) on tables and columns, by grantee."""
    out: dict[str, list[str]] = {}
    for kind in ("tables", "columns"):
        for grantee, objs in (privs.get(kind) or {}).items():
            for obj, plist in objs.items():
                for p in plist:
                    base = p.split(" ", 1)[0]
                    if base in WRITE_PRIVILEGES:
                        out.setdefault(grantee, []).append(f"{base} on {obj}")
    return out


def direct_grants(privs: dict) -> dict[str, list[str]]:
    """Object privileges granted to a role by name (tables, columns, schemas except
    USAGE on public), as 'PRIV on kind obj' strings; owners included."""
    out: dict[str, list[str]] = {}
    for kind, label in (("tables", "table"), ("columns", "column"), ("schemas", "schema")):
        for grantee, objs in (privs.get(kind) or {}).items():
            if grantee == "PUBLIC":
                continue
            for obj, plist in objs.items():
                out.setdefault(grantee, []).append(f"{', '.join(plist)} on {label} {obj}")
    return out


@dataclass
class DatabaseFacts:
    """One collected database of the snapshot, with its write and direct grants."""

    name: str
    names: tuple            # the entry's name and the real database name (role scoping)
    data: dict
    writes: dict[str, list[str]]
    direct: dict[str, list[str]]
    query_covered: set[str]             # query-tier group roles and every role they are in
    memo: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_row(cls, ctx: Context, row: dict) -> "DatabaseFacts":
        data = row["data"]
        privs = data.get("privileges", {})
        names = tuple(dict.fromkeys([row["name"], data.get("dbname") or row["name"]]))
        db = cls(row["name"], names, data, writes_by_grantee(privs), direct_grants(privs), set())
        for pg in ctx.query_pg_roles:
            if pg in db.roles:
                db.query_covered |= {pg} | db.effective(pg)
        return db

    @property
    def where(self) -> str:
        return f"db:{self.name}"

    @property
    def roles(self) -> dict[str, dict]:
        return self.data.get("roles", {})

    @property
    def member_of(self) -> dict[str, list[dict]]:
        return self.data.get("member_of", {})

    @property
    def connected_as(self) -> str | None:
        return self.data.get("connected_as")

    def effective(self, role: str) -> set[str]:
        return effective_roles(self.member_of, role, self.memo)


@dataclass
class RoleFacts:
    """One non-builtin role of a collected database, with the person whose login it is."""

    ctx: Context
    db: DatabaseFacts
    name: str
    attrs: dict
    person: Person | None
    effective: set[str]                 # every role it is a member of, recursively

    @classmethod
    def on(cls, ctx: Context, db: DatabaseFacts, name: str, attrs: dict) -> "RoleFacts":
        return cls(ctx, db, name, attrs, ctx.declared.by_login.get(name), db.effective(name))

    @cached_property
    def direct_of(self) -> list[str]:
        """The roles it is a direct member of."""
        return [m["role"] for m in self.db.member_of.get(self.name, ())]

    @property
    def unaccounted(self) -> bool:
        """A login role nobody declared (the connecting role, ignored and service accounts
        aside)."""
        return (self.person is None and bool(self.attrs.get("login"))
                and self.name != self.db.connected_as and self.name not in self.ctx.ignore
                and self.name not in self.ctx.roster.service_accounts)

    @property
    def leaver(self) -> bool:
        return self.person is not None and self.person.status in INACTIVE_STATUSES

    @property
    def compared(self) -> bool:
        """An active person's role that can log in or that their roles grant something."""
        return (self.person is not None and not self.leaver
                and bool(self.attrs.get("login") or self.declared))

    @cached_property
    def roles(self) -> list[str]:
        return self.ctx.declared.roles(self.person)

    @cached_property
    def declared(self) -> set[str]:
        """PostgreSQL roles the person's declared roles grant in this database."""
        return self.ctx.declared.pg(self.roles, self.db.names)

    @cached_property
    def tiers(self) -> set[str | None]:
        return self.ctx.declared.tiers(self.person)
