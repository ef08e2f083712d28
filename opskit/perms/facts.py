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
from typing import TYPE_CHECKING, AbstractSet, Any, Mapping, Sequence

from opskit.accounts.roster import INACTIVE_STATUSES, Person, Roster

from .linux import parse_key_line
from .pg_effective import Effective, RoleGraph, owner_writes, writing_functions
from .postgres import WRITE_PRIVILEGES, schema_of
from .sudoers import SudoItem, parse_rule

if TYPE_CHECKING:
    from .analysis import Options

PG_ATTRIBUTES = ("superuser", "createrole", "createdb", "replication", "bypassrls")
DAY = 86400
_NOTHING: frozenset = frozenset()


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
        self._profiles: dict[str, tuple] = {}

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

    def profile(self, p: Person) -> tuple:
        """(roles, host groups, declared key fingerprints) of ``p``: one lookup per
        account instead of three (95,000 accounts in the benchmark)."""
        got = self._profiles.get(p.id)
        if got is None:
            got = self._profiles[p.id] = (self.roles(p), self.host_groups(p), self.keys(p))
        return got


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
    set_role_pg: dict[str, set[str]] = field(default_factory=dict)   # reachable, not held
    _expected: dict = field(default_factory=dict, repr=False)
    _generic_memo: dict = field(default_factory=dict, repr=False)

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
    def ignore_groups(self) -> set[str]:
        return set(self.opts.ignore_groups)

    @cached_property
    def _generic(self):
        names = self.opts.generic_names
        return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in names)) if names else None

    def is_generic(self, name: str) -> bool:
        # asked for every account: a login is on up to every host, so remember the answer
        got = self._generic_memo.get(name)
        if got is None:
            got = self._generic_memo[name] = bool(self._generic and self._generic.match(name))
        return got

    def people(self) -> list[Person]:
        """The people compared: ``only``, else everyone in the roster."""
        return [self.only] if self.only is not None else list(self.roster.people.values())

    def expected_people(self, host: "HostFacts") -> list[tuple[Person, set[str]]]:
        """(person, their host groups) for each active person compared whose host groups
        take in ``host``, in roster order. Hosts in the same inventory groups share the
        list, so the roster is walked once per distinct set of groups, not per host."""
        key = frozenset(host.groups)
        got = self._expected.get(key)
        if got is None:
            hg = self.declared.host_groups
            got = self._expected[key] = [(p, hg(p)) for p in self.people()
                                         if p.active and host.expects(hg(p))]
        return got

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


@dataclass(slots=True)
class HostFacts:
    """One collected host of the snapshot (what opskit.perms.linux collected)."""

    name: str
    groups: set[str]                  # its inventory groups
    accounts: dict[str, dict]
    sudo: dict[str, list[dict]]
    keys: dict[str, list[dict]]
    last_login: dict[str, dict]
    has_login_sources: bool
    crontabs: dict[str, list]

    @classmethod
    def from_row(cls, row: dict) -> "HostFacts":
        data = row["data"]
        return cls(row["name"], set(row.get("groups") or ()), data.get("accounts", {}),
                   data.get("sudo", {}), data.get("keys", {}), data.get("last_login", {}),
                   bool(data.get("login_sources")), data.get("crontabs", {}))

    def expects(self, host_groups: set[str]) -> bool:
        """Whether someone with accounts in ``host_groups`` should have one here."""
        return "all" in host_groups or bool(self.groups & host_groups)


@dataclass(slots=True)
class AccountFacts:
    """One account on a collected host. ``kind`` says which checks look at it:
    ``second-root`` (uid 0 besides root, nobody declared), ``unaccounted`` (nobody declared
    it; system, ignored and service accounts are None), ``leaver`` (a departing,
    transferred or departed person's, R-ACC-6) or ``person`` (an active person's,
    compared with their declared roles)."""

    host: HostFacts
    login: str
    acct: dict
    person: Person | None
    kind: str | None
    uid: int
    frozen: bool
    sudo_items: list[SudoItem]
    keys: list[dict]
    # for kind 'person': declared roles, host groups, whether this host is among them,
    # and what the roles give here (nothing outside the person's host groups)
    roles: Sequence[str] = ()
    host_groups: AbstractSet[str] = _NOTHING
    expected: bool = False
    declared_groups: AbstractSet[str] = _NOTHING
    declared_sudo: Sequence[SudoItem] = ()
    declared_keys: Mapping[str, str] | None = None

    @classmethod
    def on(cls, ctx: Context, host: HostFacts, login: str, acct: dict) -> "AccountFacts":
        items = [SudoItem.from_dict(s) for s in host.sudo.get(login, ())]
        person = ctx.declared.by_login.get(login)
        uid = acct.get("uid", 0)
        a = cls(host, login, acct, person, _account_kind(ctx, person, login, uid), uid,
                is_frozen(acct), items, host.keys.get(login, ()))
        if a.kind == "person":
            D = ctx.declared
            a.roles, a.host_groups, a.declared_keys = D.profile(person)
            a.expected = host.expects(a.host_groups)
            if a.expected:
                a.declared_groups, a.declared_sudo = D.groups(a.roles), D.sudo(a.roles)
        return a


def _account_kind(ctx: Context, person: Person | None, login: str, uid: int) -> str | None:
    if person is not None:
        return "leaver" if person.status in INACTIVE_STATUSES else "person"
    if uid == 0 and login != "root":
        return "second-root"
    if (uid < ctx.opts.min_uid or login in ctx.ignore or uid == 65534
            or login in ctx.roster.service_accounts):
        return None
    return "unaccounted"


# predefined roles that write every table (PostgreSQL 14+): their members write
# without any grant on a table (R-ACC-5, issue #19 case 9)
PREDEFINED_WRITERS = {"pg_write_all_data": "INSERT, UPDATE, DELETE on every table, view and "
                                           "sequence (predefined role pg_write_all_data)"}


def writes_by_grantee(privs: dict, roles: dict | None = None,
                      writing_functions: dict[str, str] | None = None,
                      owned: list[tuple[str, str, str]] | None = None,
                      lo_compat: bool = False, version_num: int = 0
                      ) -> dict[str, list[tuple[str, str | None]]]:
    """Write privileges (INSERT, UPDATE, ...) on tables and columns, by grantee, as
    (text, schema of the object); with ``roles``, the predefined roles that write
    everything count as grantees too, and so does each superuser (and before
    PostgreSQL 16 each CREATEROLE role: it may grant itself any role); with
    ``writing_functions`` (SECURITY DEFINER functions that write as their owner,
    opskit.perms.pg_effective.writing_functions), EXECUTE on one is a write too
    (#19 case 11); with ``owned`` (``owner_writes``), owning a table or a schema
    holding tables is one too; so is UPDATE on a large object, and every large
    object is PUBLIC's with ``lo_compat``."""
    out: dict[str, list[tuple[str, str | None]]] = {
        role: [(text, None)] for role, text in PREDEFINED_WRITERS.items() if role in (roles or {})}
    for role, attrs in (roles or {}).items():
        if attrs.get("superuser"):
            out.setdefault(role, []).append(("every table (SUPERUSER)", None))
        elif attrs.get("createrole") and version_num < 160000:
            out.setdefault(role, []).append(("every table (CREATEROLE before PostgreSQL 16: "
                                              "can GRANT pg_write_all_data to itself)", None))
    if lo_compat:
        out.setdefault("PUBLIC", []).append(("every large object (lo_compat_privileges = on)",
                                             None))
    for kind in ("tables", "columns"):
        for grantee, objs in (privs.get(kind) or {}).items():
            for obj, plist in objs.items():
                for p in plist:
                    base = p.split(" ", 1)[0]
                    if base in WRITE_PRIVILEGES:
                        out.setdefault(grantee, []).append((f"{base} on {obj}",
                                                            schema_of(obj)))
    for owner, text, schema in owned or ():
        out.setdefault(owner, []).append((text, schema))
    for grantee, objs in (privs.get("large_objects") or {}).items():
        for oid, plist in objs.items():
            if any(p.split(" ", 1)[0] == "UPDATE" for p in plist):
                out.setdefault(grantee, []).append((f"UPDATE on large object {oid}", None))
    for grantee, objs in (privs.get("functions") or {}).items():
        for sig in objs:
            if sig in (writing_functions or {}):
                out.setdefault(grantee, []).append(
                    (f"EXECUTE on SECURITY DEFINER function {sig}, which "
                     f"{writing_functions[sig]}", schema_of(sig)))
    return out


def direct_grants(privs: dict) -> dict[str, list[str]]:
    """Object privileges granted to a role by name (tables, columns, schemas,
    functions), as 'PRIV on kind obj' strings; owners included."""
    out: dict[str, list[str]] = {}
    for kind, label in (("tables", "table"), ("columns", "column"), ("schemas", "schema"),
                        ("functions", "function")):
        for grantee, objs in (privs.get(kind) or {}).items():
            if grantee == "PUBLIC":
                continue
            for obj, plist in objs.items():
                out.setdefault(grantee, []).append(f"{', '.join(plist)} on {label} {obj}")
    return out


@dataclass
class DatabaseFacts:
    """One collected database of the snapshot (what opskit.perms.postgres collected),
    with its write and direct grants and its role graph (opskit.perms.pg_effective)."""

    name: str
    names: tuple            # the entry's name and the real database name (role scoping)
    roles: dict[str, dict]
    member_of: dict[str, list[dict]]
    connected_as: str | None
    writes: dict[str, list[tuple[str, str | None]]]
    direct: dict[str, list[str]]
    graph: RoleGraph
    data: dict = field(repr=False, default_factory=dict)
    # query-tier group roles and every role they are in (R-ACC-5)
    query_covered: set[str] = field(default_factory=set)

    @classmethod
    def from_row(cls, ctx: Context, row: dict) -> "DatabaseFacts":
        data = row["data"]
        privs = data.get("privileges", {})
        names = tuple(dict.fromkeys([row["name"], data.get("dbname") or row["name"]]))
        db = cls(row["name"], names, data.get("roles", {}), data.get("member_of", {}),
                 data.get("connected_as"),
                 writes_by_grantee(privs, data.get("roles"), writing_functions(data),
                                   owner_writes(data), bool(data.get("lo_compat_privileges")),
                                   data.get("server_version_num") or 0),
                 direct_grants(privs), RoleGraph.from_data(data), data)
        for pg in ctx.query_pg_roles:
            if pg in db.roles:
                db.query_covered |= {pg} | db.effective(pg) | db.set_role_only(pg)
        return db

    @property
    def where(self) -> str:
        return f"db:{self.name}"

    def effective(self, role: str) -> set[str]:
        """The roles whose privileges ``role`` holds (inherited memberships, #19 case 10)."""
        return self.graph.privileges_of(role) - {role}

    def set_role_only(self, role: str) -> set[str]:
        """The roles ``role`` can only act as after SET ROLE (NOINHERIT memberships)."""
        return self.graph.set_role_only(role)

    @cached_property
    def privileges(self) -> Effective:
        """Effective privileges (built when a check first asks)."""
        return Effective(self.data)

    def no_usage(self, role: str, schema: str | None) -> str:
        """' (no USAGE on schema S)' when ``role`` cannot reach into ``schema``, else ''."""
        if schema is None or self.privileges.has(role, "schemas", schema, "USAGE"):
            return ""
        return f" (unusable: {role} has no USAGE on schema {schema})"


@dataclass(slots=True)
class RoleFacts:
    """One non-builtin role of a collected database. ``kind``: ``unaccounted`` (a login
    role nobody declared; the connecting role, ignored and service accounts are None),
    ``leaver`` (a departing, transferred or departed person's) or ``person`` (an active
    person's that can log in or that their roles grant something; else None)."""

    db: DatabaseFacts
    name: str
    attrs: dict
    person: Person | None
    kind: str | None
    effective: set[str]                 # every role whose privileges it holds (inherited)
    direct_of: list[str]                # the roles it is a direct member of
    set_role_only: set[str]             # roles reachable only through SET ROLE (R-ACC-2)
    # for kind 'person': declared roles, their tiers, and the PostgreSQL roles they
    # grant in this database
    roles: Sequence[str] = ()
    tiers: AbstractSet[str | None] = _NOTHING
    declared: AbstractSet[str] = _NOTHING

    @classmethod
    def on(cls, ctx: Context, db: DatabaseFacts, name: str, attrs: dict) -> "RoleFacts":
        person = ctx.declared.by_login.get(name)
        r = cls(db, name, attrs, person, None, db.effective(name),
                [m["role"] for m in db.member_of.get(name, ())], db.set_role_only(name))
        if person is None:
            if (attrs.get("login") and name != db.connected_as and name not in ctx.ignore
                    and name not in ctx.roster.service_accounts):
                r.kind = "unaccounted"
        elif person.status in INACTIVE_STATUSES:
            r.kind = "leaver"
        else:
            D = ctx.declared
            r.roles, r.tiers = D.roles(person), D.tiers(person)
            r.declared = D.pg(r.roles, db.names)
            if attrs.get("login") or r.declared:
                r.kind = "person"
        return r
