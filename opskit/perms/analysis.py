"""Declared vs actual: the differences and the findings an auditor reads.

``analyse(snapshot, roster, options)`` compares one snapshot with the roster
and role model (opskit.accounts.roster, opskit.perms.roles) and returns

* ``diff``     rows where declared and actual access differ: an account,
               group, sudo right, key or database grant the person has but
               their roles do not give (``extra``), or one their roles give
               that is not there (``missing``);
* ``findings`` each with a rule id, a severity and evidence (docs/perms.md
               lists every check):

  check                rule      what
  beyond-role          R-ACC-4   access beyond the person's declared roles
  declared-missing     R-ACC-3   declared (approved) access that was never applied
  sod-conflict         R-ACC-2   roles that may not be combined (separation of duties)
  query-write          R-ACC-5   query-tier roles or people able to write
  special-no-reviewer  R-ACC-5   special-tier role without a second, active reviewer
  not-in-roster        R-ACC-1   accounts and login roles nobody declared
  not-frozen           R-ACC-6   departing/transferred/departed people with access left
  dormant              R-ACC-4   no login for perms.dormant_days
  generic-account      R-AUD-3   generic or shared names (admin, test, ...), extra uid 0
  shared-key           R-AUD-3   one SSH key on several people's accounts
  no-backup            R-ACC-8   a post holder without an active backup person (AB岗)
  collection-failed    R-AUD-2   a host or database the snapshot could not read

Work is indexed by login (one dict lookup per account), and the declared
expectations are computed once per distinct set of roles, so the cost grows
with the number of accounts in the snapshot, not people x hosts x rules.
"""
from __future__ import annotations

import datetime as _dt
import fnmatch
import re
import time
from dataclasses import dataclass, field

from opskit.accounts.roster import INACTIVE_STATUSES, Person, Roster

from .postgres import WRITE_PRIVILEGES
from .sudoers import SudoItem, covers, parse_rule

SEVERITIES = ("high", "medium", "low")
CHECKS = {
    "beyond-role": ("R-ACC-4", "Access beyond the declared roles (least privilege)"),
    "declared-missing": ("R-ACC-3", "Declared access that is not in place"),
    "sod-conflict": ("R-ACC-2", "Separation of duties: roles that may not be combined"),
    "query-write": ("R-ACC-5", "Query tier with write access"),
    "special-no-reviewer": ("R-ACC-5", "Special tier without a second reviewer"),
    "not-in-roster": ("R-ACC-1", "Accounts not in the roster"),
    "not-frozen": ("R-ACC-6", "Departing, transferred or departed people not frozen"),
    "dormant": ("R-ACC-4", "Dormant accounts"),
    "generic-account": ("R-AUD-3", "Generic or shared accounts"),
    "shared-key": ("R-AUD-3", "One SSH key on several accounts"),
    "no-backup": ("R-ACC-8", "Posts without a backup person (AB岗)"),
    "collection-failed": ("R-AUD-2", "Hosts or databases that could not be collected"),
}
PG_ATTRIBUTES = ("superuser", "createrole", "createdb", "replication", "bypassrls")
DAY = 86400


@dataclass
class Finding:
    check: str
    severity: str
    message: str
    evidence: str
    person: str | None = None
    account: str | None = None
    where: str = "-"
    rule: str = ""

    def __post_init__(self):
        if not self.rule:
            self.rule = CHECKS[self.check][0]

    def as_dict(self) -> dict:
        return {"rule": self.rule, "check": self.check, "severity": self.severity,
                "person": self.person, "account": self.account, "where": self.where,
                "message": self.message, "evidence": self.evidence}


@dataclass
class DiffRow:
    person: str | None
    account: str
    where: str
    kind: str          # account group sudo key state pg-role pg-member pg-attr pg-grant
    item: str
    change: str        # extra | missing
    evidence: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Options:
    dormant_days: int = 90
    min_uid: int = 1000
    generic_names: list[str] = field(default_factory=list)
    ignore_accounts: list[str] = field(default_factory=list)
    ignore_groups: list[str] = field(default_factory=list)
    now: float | None = None          # epoch seconds; default: the snapshot's time

    @classmethod
    def from_config(cls, config) -> "Options":
        return cls(dormant_days=int(config.get("perms.dormant_days")),
                   min_uid=int(config.get("perms.min_uid")),
                   generic_names=list(config.get("perms.generic_names")),
                   ignore_accounts=list(config.get("perms.ignore_accounts")),
                   ignore_groups=list(config.get("perms.ignore_groups")))


@dataclass
class Analysis:
    snapshot_id: str
    findings: list[Finding]
    diff: list[DiffRow]
    warnings: list[tuple[str, str]]
    duration: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in SEVERITIES}
        for f in self.findings:
            out[f.severity] = out.get(f.severity, 0) + 1
        return out


def _snapshot_time(snapshot) -> float:
    created = snapshot.created
    try:
        return _dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _frozen(acct: dict) -> bool:
    """No way in: password locked (or none) and the account expired (R-ACC-6)."""
    return bool(acct.get("locked")) and bool(acct.get("expired"))


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
            from .linux import parse_key_line
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


def _expected_on(host_groups: set[str], p_groups: set[str]) -> bool:
    return "all" in p_groups or bool(host_groups & p_groups)


def _effective(member_of: dict, role: str, memo: dict) -> set[str]:
    """Every role ``role`` is a member of, directly or through others (recursive)."""
    if role in memo:
        return memo[role]
    memo[role] = set()                 # cycles (impossible in PostgreSQL) end here
    out: set[str] = set()
    for m in member_of.get(role, ()):
        out.add(m["role"])
        out |= _effective(member_of, m["role"], memo)
    memo[role] = out
    return out


def _writes_by_grantee(privs: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in ("tables", "columns"):
        for grantee, objs in (privs.get(kind) or {}).items():
            for obj, plist in objs.items():
                for p in plist:
                    base = p.split(" ", 1)[0]
                    if base in WRITE_PRIVILEGES:
                        out.setdefault(grantee, []).append(f"{base} on {obj}")
    return out


def analyse(snapshot, roster: Roster, options: Options | None = None,
            person: str | None = None) -> Analysis:
    """Compare ``snapshot`` with the roster (see module doc). ``person``
    limits the comparison to one person id (fleet-wide checks left out)."""
    t0 = time.monotonic()
    opts = options or Options()
    now = opts.now if opts.now is not None else _snapshot_time(snapshot)
    today = int(now // DAY)
    dormant_before = now - opts.dormant_days * DAY
    D = Declared(roster)
    model = D.model
    findings: list[Finding] = []
    diff: list[DiffRow] = []
    add = findings.append
    only = None
    if person is not None:
        only = roster.person(person)
    ignore = set(opts.ignore_accounts)
    ignore_groups = set(opts.ignore_groups)
    generic = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in opts.generic_names)
                         ) if opts.generic_names else None

    def is_generic(name: str) -> bool:
        return bool(generic and generic.match(name))

    services = roster.service_accounts
    # actual access per login, across hosts, for the role inference (R-ACC-2)
    actual_sudo: dict[str, list[SudoItem]] = {}
    actual_pg: dict[str, set[str]] = {}
    fingerprints: dict[str, set[tuple[str, str]]] = {}

    if only is None:
        for h in snapshot.hosts:
            if h.get("status") != "ok":
                add(Finding("collection-failed", "high", f"host {h['name']} could not be "
                            f"collected ({h.get('status')})", h.get("error") or "",
                            where=h["name"]))
        for d in snapshot.databases:
            if d.get("status") != "ok":
                add(Finding("collection-failed", "high", f"database {d['name']} could not be "
                            f"collected", d.get("error") or "", where=f"db:{d['name']}"))

    # --- Linux hosts ---------------------------------------------------------------
    for h in snapshot.hosts:
        data = h.get("data")
        if h.get("status") != "ok" or not data:
            continue
        hname = h["name"]
        hgroups = set(h.get("groups") or ())
        accounts = data.get("accounts", {})
        sudo = data.get("sudo", {})
        keys = data.get("keys", {})
        last = data.get("last_login", {})
        has_sources = bool(data.get("login_sources"))
        crontabs = data.get("crontabs", {})

        for fp_login, klist in keys.items():
            for k in klist:
                fingerprints.setdefault(k["fingerprint"], set()).add((fp_login, hname))

        # declared people expected on this host but without an account
        people = [only] if only is not None else roster.people.values()
        for p in people:
            if not p.active or p.login in accounts:
                continue
            if _expected_on(hgroups, D.host_groups(p)):
                diff.append(DiffRow(p.id, p.login, hname, "account", p.login, "missing",
                                    f"post {p.post or '-'} host groups "
                                    f"{', '.join(sorted(D.host_groups(p)))}"))
                add(Finding("declared-missing", "low", f"{p.id} has no account on {hname}",
                            f"roster: host groups {', '.join(sorted(D.host_groups(p)))}; "
                            f"host groups: {', '.join(sorted(hgroups)) or '-'}",
                            p.id, p.login, hname))

        for login, acct in accounts.items():
            if only is not None and login != only.login:
                continue
            p = D.by_login.get(login)
            uid = acct.get("uid", 0)
            frozen = _frozen(acct)
            items = [SudoItem.from_dict(s) for s in sudo.get(login, ())]
            if items:
                actual_sudo.setdefault(login, []).extend(items)
            if p is None:
                if only is not None:
                    continue
                if uid == 0 and login != "root":
                    add(Finding("generic-account", "high", f"{login} on {hname} has uid 0: a "
                                "second root account nobody is accountable for",
                                f"/etc/passwd: {login} uid 0", None, login, hname))
                    continue
                if uid < opts.min_uid or login in ignore or uid == 65534:
                    continue
                if login in services:
                    continue
                if is_generic(login):
                    add(Finding("generic-account", "low" if frozen else "medium",
                                f"generic or shared account {login} on {hname}",
                                f"name matches perms.generic_names; uid {uid}, password "
                                f"{acct.get('password')}, shell {acct.get('shell')}",
                                None, login, hname))
                add(Finding("not-in-roster", "low" if frozen else "medium",
                            f"account {login} on {hname} is not in the roster",
                            f"uid {uid}, password {acct.get('password')}, "
                            f"{'expired' if acct.get('expired') else 'not expired'}, shell "
                            f"{acct.get('shell')}" + (f", {len(items)} sudo rule(s)"
                                                      if items else ""),
                            None, login, hname))
                _dormant(add, None, login, hname, acct, last, has_sources, frozen,
                         dormant_before, today, opts, uid)
                continue
            # a person's account
            if p.status in INACTIVE_STATUSES:
                _not_frozen(add, diff, p, hname, acct, items, keys.get(login, ()),
                            crontabs.get(login, ()))
                continue
            roles = D.roles(p)
            expected = _expected_on(hgroups, D.host_groups(p))
            if not expected:
                if not frozen:
                    diff.append(DiffRow(p.id, login, hname, "account", login, "extra",
                                        f"host groups {', '.join(sorted(hgroups)) or '-'}"))
                    add(Finding("beyond-role", "medium", f"{p.id} has an account on {hname}, "
                                "outside the host groups of their post",
                                f"roster host groups: {', '.join(sorted(D.host_groups(p))) or '-'}"
                                f"; {hname} is in: {', '.join(sorted(hgroups)) or '-'}",
                                p.id, login, hname))
                declared_groups: set[str] = set()
                declared_sudo: list[SudoItem] = []
            else:
                declared_groups = D.groups(roles)
                declared_sudo = D.sudo(roles)
                # an expired account lets nobody in; a locked password alone is normal
                # for key-only logins and is not reported
                if acct.get("expired"):
                    diff.append(DiffRow(p.id, login, hname, "state", "account expired",
                                        "missing", "the person is active"))
                    add(Finding("declared-missing", "low", f"{p.id}'s account on {hname} is "
                                "expired though they are active",
                                f"password {acct.get('password')}, expire_day "
                                f"{acct.get('expire_day')}", p.id, login, hname))
            actual_groups = set(acct.get("groups", ())) - ignore_groups
            for g in sorted(actual_groups - declared_groups):
                diff.append(DiffRow(p.id, login, hname, "group", g, "extra"))
                add(Finding("beyond-role", "medium", f"{p.id} is in group {g} on {hname}, "
                            "which none of their roles gives",
                            f"/etc/group: {g}; declared roles: {', '.join(roles) or '-'}",
                            p.id, login, hname))
            if expected:
                for g in sorted(declared_groups - set(acct.get("groups", ()))):
                    diff.append(DiffRow(p.id, login, hname, "group", g, "missing"))
                    add(Finding("declared-missing", "low", f"{p.id} is not in group {g} on "
                                f"{hname}", f"declared by roles {', '.join(roles)}",
                                p.id, login, hname))
            for it in items:
                if not any(covers(d, it) for d in declared_sudo):
                    diff.append(DiffRow(p.id, login, hname, "sudo", it.text(), "extra",
                                        f"{it.source} via {it.via}"))
                    add(Finding("beyond-role", "high", f"{p.id} may sudo '{it.text()}' on "
                                f"{hname}, beyond their roles",
                                f"{it.source} (via {it.via}); declared: "
                                f"{'; '.join(d.text() for d in declared_sudo) or 'no sudo'}",
                                p.id, login, hname))
            for d in declared_sudo:
                if not any(covers(a, d, ignore_hosts=True) for a in items
                           if not a.command.startswith("!")):
                    diff.append(DiffRow(p.id, login, hname, "sudo", d.text(), "missing",
                                        d.source))
                    add(Finding("declared-missing", "low", f"{p.id} lacks sudo '{d.text()}' "
                                f"on {hname}", f"declared by {d.source}", p.id, login, hname))
            declared_keys = D.keys(p)
            for k in keys.get(login, ()):
                if k["fingerprint"] not in declared_keys:
                    diff.append(DiffRow(p.id, login, hname, "key", k["fingerprint"], "extra",
                                        k.get("source", "")))
                    add(Finding("beyond-role", "medium", f"{p.id} has an SSH key on {hname} "
                                "that the roster does not list",
                                f"{k.get('source')}: {k['type']} {k['fingerprint']}",
                                p.id, login, hname))
            if expected and declared_keys:
                present = {k["fingerprint"] for k in keys.get(login, ())}
                for fp in sorted(set(declared_keys) - present):
                    diff.append(DiffRow(p.id, login, hname, "key", fp, "missing"))
                    add(Finding("declared-missing", "low", f"{p.id}'s SSH key {fp} is not "
                                f"installed on {hname}", "roster ssh_keys", p.id, login, hname))
            if is_generic(login):
                add(Finding("generic-account", "medium", f"{p.id}'s login {login} looks "
                            "generic or shared", "name matches perms.generic_names",
                            p.id, login, hname))
            _dormant(add, p.id, login, hname, acct, last, has_sources, frozen, dormant_before,
                     today, opts, uid)

    # --- PostgreSQL ------------------------------------------------------------------
    query_pg_roles = {}
    for role in model.roles.values():
        if role.tier == "query":
            for pg in role.pg_roles:
                query_pg_roles.setdefault(pg, []).append(role.name)
    for d in snapshot.databases:
        data = d.get("data")
        if d.get("status") != "ok" or not data:
            continue
        where = f"db:{d['name']}"
        names = tuple(dict.fromkeys([d["name"], data.get("dbname") or d["name"]]))
        roles_attr = data.get("roles", {})
        member_of = data.get("member_of", {})
        privs = data.get("privileges", {})
        memo: dict[str, set[str]] = {}
        writes = _writes_by_grantee(privs)
        public_writes = writes.get("PUBLIC", [])
        direct = _direct_grants(privs)
        connected = data.get("connected_as")
        # R-ACC-5: query-tier group roles that can write
        query_covered: set[str] = set()
        for pg in query_pg_roles:
            if pg in roles_attr:
                query_covered |= {pg} | _effective(member_of, pg, memo)
        if only is None:
            for pg, tier_roles in sorted(query_pg_roles.items()):
                if pg not in roles_attr:
                    continue
                eff = {pg} | _effective(member_of, pg, memo)
                w = [f"{x} (granted to {g})" for g in sorted(eff) for x in writes.get(g, ())]
                w += [f"{x} (granted to PUBLIC)" for x in public_writes]
                if w:
                    add(Finding("query-write", "high", f"PostgreSQL role {pg} (query tier: "
                                f"{', '.join(tier_roles)}) can write in {d['name']}",
                                "; ".join(w[:8]) + (f"; ... {len(w) - 8} more" if len(w) > 8
                                                    else ""), None, pg, where))
        for rname, attrs in roles_attr.items():
            if only is not None and rname != only.login:
                continue
            if attrs.get("builtin"):
                continue
            p = D.by_login.get(rname)
            eff = _effective(member_of, rname, memo)
            if p is not None:
                actual_pg.setdefault(rname, set()).update(eff)
            direct_of = [m["role"] for m in member_of.get(rname, ())]
            if p is None:
                if only is not None or not attrs.get("login") or rname == connected \
                        or rname in ignore or rname in services:
                    continue
                if is_generic(rname):
                    add(Finding("generic-account", "medium", f"generic or shared login role "
                                f"{rname} in {d['name']}", "name matches perms.generic_names",
                                None, rname, where))
                add(Finding("not-in-roster", "high" if attrs.get("superuser") else "medium",
                            f"login role {rname} in {d['name']} is not in the roster",
                            _pg_evidence(attrs, direct_of), None, rname, where))
                continue
            if p.status in INACTIVE_STATUSES:
                left = []
                until = attrs.get("valid_until")
                expired = until is not None and _iso_epoch(until) <= now
                if attrs.get("login") and not expired:
                    left.append("can log in (LOGIN, no past VALID UNTIL)")
                if direct_of:
                    left.append(f"member of {', '.join(sorted(direct_of))}")
                for a in PG_ATTRIBUTES:
                    if attrs.get(a):
                        left.append(a.upper())
                if direct.get(rname):
                    left.append(f"{len(direct[rname])} direct grant(s)")
                if left:
                    for item in left:
                        diff.append(DiffRow(p.id, rname, where, "pg-role", item, "extra",
                                            f"status {p.status}"))
                    add(Finding("not-frozen", "medium" if p.status == "departing" else "high",
                                f"{p.id} ({p.status}) still has access in {d['name']}",
                                "; ".join(left), p.id, rname, where))
                continue
            roles = D.roles(p)
            declared = D.pg(roles, names)
            if not attrs.get("login") and not declared:
                continue
            if not declared and attrs.get("login"):
                diff.append(DiffRow(p.id, rname, where, "pg-role", rname, "extra"))
                add(Finding("beyond-role", "medium", f"{p.id} has a login role in "
                            f"{d['name']} though no role of theirs grants database access",
                            _pg_evidence(attrs, direct_of), p.id, rname, where))
            for m in sorted(set(direct_of) - declared):
                diff.append(DiffRow(p.id, rname, where, "pg-member", m, "extra"))
                add(Finding("beyond-role", "high" if m in _special_pg(model) else "medium",
                            f"{p.id} is a member of {m} in {d['name']}, which none of their "
                            "roles gives", f"pg_auth_members: {rname} -> {m}; declared: "
                            f"{', '.join(sorted(declared)) or '-'}", p.id, rname, where))
            for m in sorted(declared - set(direct_of) - eff):
                diff.append(DiffRow(p.id, rname, where, "pg-member", m, "missing"))
                add(Finding("declared-missing", "low", f"{p.id} is not a member of {m} in "
                            f"{d['name']}", f"declared by roles {', '.join(roles)}",
                            p.id, rname, where))
            tiers = {model.tier_of(r) for r in roles}
            for a in PG_ATTRIBUTES:
                if attrs.get(a):
                    diff.append(DiffRow(p.id, rname, where, "pg-attr", a.upper(), "extra"))
                    add(Finding("beyond-role", "medium" if "admin" in tiers else "high",
                                f"{p.id}'s role has {a.upper()} in {d['name']}",
                                f"pg_roles.rol{a} = true; declared roles: "
                                f"{', '.join(roles) or '-'}", p.id, rname, where))
            for obj in direct.get(rname, ()):
                diff.append(DiffRow(p.id, rname, where, "pg-grant", obj, "extra"))
                add(Finding("beyond-role", "medium", f"{p.id} holds {obj} in {d['name']} "
                            "directly, not through a role", "aclexplode of pg_catalog ACLs",
                            p.id, rname, where))
            if tiers == {"query"}:
                # writes through a query-tier group role are reported once, on that role
                w = [f"{x} (granted to {g})" for g in sorted(({rname} | eff) - query_covered)
                     for x in writes.get(g, ())]
                if w:
                    add(Finding("query-write", "high", f"{p.id} holds only query-tier roles "
                                f"but can write in {d['name']}", "; ".join(w[:8]) +
                                (f"; ... {len(w) - 8} more" if len(w) > 8 else ""),
                                p.id, rname, where))

    # --- per person: query tier with sudo, SoD, special review, backups ------------------
    people = [only] if only is not None else list(roster.people.values())
    holders: dict[str, set[str]] = {}
    for p in roster.people.values():
        if p.active:
            for r in D.roles(p):
                holders.setdefault(r, set()).add(p.id)
    for p in people:
        if not p.active:
            continue
        roles = D.roles(p)
        tiers = {model.tier_of(r) for r in roles}
        if tiers == {"query"} and actual_sudo.get(p.login):
            items = [i for i in actual_sudo[p.login] if not i.command.startswith("!")]
            if items:
                add(Finding("query-write", "high", f"{p.id} holds only query-tier roles but "
                            "may run commands through sudo",
                            "; ".join(f"{i.text()} ({i.source})" for i in items[:5]),
                            p.id, p.login, "hosts"))
        for c in model.conflicts(roles):
            add(Finding("sod-conflict", "high", f"{p.id} is declared with roles that may "
                        f"not be combined: {', '.join(c.roles)}", c.describe(), p.id, p.login,
                        "roster", rule=c.sod.rule))
        inferred = _inferred_roles(D, p, roles, actual_sudo.get(p.login, ()),
                                   actual_pg.get(p.login, set()))
        if inferred:
            declared_ids = {c.sod.id for c in model.conflicts(roles)}
            for c in model.conflicts(roles + inferred):
                if c.sod.id in declared_ids:
                    continue
                add(Finding("sod-conflict", "high", f"{p.id}'s actual access combines roles "
                            f"that may not be combined: {', '.join(c.roles)}",
                            c.describe() + f"; not declared but held: {', '.join(inferred)}",
                            p.id, p.login, "actual", rule=c.sod.rule))
        for r in roles:
            role = model.roles.get(r)
            if role is None or role.tier != "special":
                continue
            if not role.review_by:
                add(Finding("special-no-reviewer", "high", f"special role {r} held by {p.id} "
                            "names no reviewer role (review_by)", f"roles.yaml: {r}",
                            p.id, p.login, "roster"))
                continue
            others = holders.get(role.review_by, set()) - {p.id}
            if not others:
                add(Finding("special-no-reviewer", "high", f"{p.id} holds special role {r} "
                            f"but no other active person holds its reviewer role "
                            f"{role.review_by}", f"holders of {role.review_by}: "
                            f"{', '.join(sorted(holders.get(role.review_by, ()))) or 'none'}",
                            p.id, p.login, "roster"))
        if p.post:
            backup = roster.people.get(p.backup) if p.backup else None
            if p.backup is None:
                add(Finding("no-backup", "medium", f"{p.id} (post {p.post}) has no backup "
                            "person", "roster: backup not set", p.id, p.login, "roster"))
            elif backup is None or not backup.active:
                add(Finding("no-backup", "medium", f"{p.id}'s backup {p.backup} (post "
                            f"{p.post}) is not active", f"roster: {p.backup} status "
                            f"{backup.status if backup else 'unknown'}", p.id, p.login,
                            "roster"))
            elif p.backup == p.id:
                add(Finding("no-backup", "medium", f"{p.id} is their own backup",
                            "roster", p.id, p.login, "roster"))

    # --- one key on several accounts ---------------------------------------------------
    if only is None:
        for fp, where in sorted(fingerprints.items()):
            logins = sorted({login for login, _ in where})
            if len(logins) < 2:
                continue
            owners = [D.by_login[l].id if l in D.by_login else l for l in logins]
            add(Finding("shared-key", "high", f"one SSH key opens {len(logins)} accounts: "
                        f"{', '.join(logins)}", f"{fp} on " + ", ".join(
                            f"{l}@{h}" for l, h in sorted(where))[:500],
                        ", ".join(owners), ", ".join(logins), "hosts"))
        seen: dict[str, str] = {}
        for p in roster.people.values():
            for fp in D.keys(p):
                if fp in seen and seen[fp] != p.id:
                    add(Finding("shared-key", "high", f"{seen[fp]} and {p.id} are declared "
                                "with the same SSH key", f"roster ssh_keys: {fp}",
                                f"{seen[fp]}, {p.id}", None, "roster"))
                seen.setdefault(fp, p.id)

    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (f.rule, f.check, order.get(f.severity, 9), f.person or "",
                                 f.account or "", f.where))
    return Analysis(snapshot.id, findings, diff, snapshot.warnings(), time.monotonic() - t0)


def _iso_epoch(text: str) -> float:
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


def _special_pg(model) -> set[str]:
    return {pg for r in model.roles.values() if r.tier == "special" for pg in r.pg_roles}


def _pg_evidence(attrs: dict, direct_of: list[str]) -> str:
    flags = [a.upper() for a in PG_ATTRIBUTES if attrs.get(a)]
    return (f"LOGIN {'yes' if attrs.get('login') else 'no'}"
            + (f", {', '.join(flags)}" if flags else "")
            + (f", member of {', '.join(sorted(direct_of))}" if direct_of else ""))


def _direct_grants(privs: dict) -> dict[str, list[str]]:
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


def _inferred_roles(D: Declared, p: Person, roles: list[str], sudo_items, pg_roles: set[str]
                    ) -> list[str]:
    """Roles of the model the person actually holds without being declared with
    them: every PostgreSQL role of the role is held, or every sudo rule is."""
    out = []
    declared = set(roles)
    for role in D.model.roles.values():
        if role.name in declared:
            continue
        if role.pg_roles and set(role.pg_roles) <= pg_roles:
            out.append(role.name)
            continue
        if role.sudo and sudo_items:
            wanted = D.sudo([role.name])
            if wanted and all(any(covers(a, w) for a in sudo_items) for w in wanted):
                out.append(role.name)
    return out


def _not_frozen(add, diff, p: Person, hname: str, acct: dict, sudo_items, keys, crontab) -> None:
    """R-ACC-6: whatever still lets a departing/transferred/departed person in."""
    left = []
    if not acct.get("locked"):
        left.append(f"password {acct.get('password')} (not locked)")
    if not acct.get("expired"):
        left.append("account not expired")
    if not acct.get("nologin"):
        left.append(f"login shell {acct.get('shell')}")
    if keys:
        left.append(f"{len(keys)} SSH key(s) in {keys[0].get('source', '').rsplit(':', 1)[0]}")
    live_sudo = [i for i in sudo_items if not i.command.startswith("!")]
    if live_sudo:
        left.append(f"sudo {'; '.join(i.text() for i in live_sudo[:3])} ({live_sudo[0].source})")
    if crontab:
        left.append(f"{len(crontab)} crontab entr{'y' if len(crontab) == 1 else 'ies'} "
                    f"({crontab[0].get('source')})")
    if not _frozen(acct) and acct.get("groups"):
        left.append(f"groups {', '.join(acct['groups'])}")
    if not left:
        return
    for item in left:
        diff.append(DiffRow(p.id, p.login, hname, "state", item, "extra",
                            f"status {p.status}: the account must be frozen"))
    add(Finding("not-frozen", "medium" if p.status == "departing" else "high",
                f"{p.id} ({p.status}) is not frozen on {hname}", "; ".join(left),
                p.id, p.login, hname))


def _dormant(add, person, login, hname, acct, last, has_sources, frozen, dormant_before, today,
             opts: Options, uid) -> None:
    if frozen or not has_sources or login in opts.ignore_accounts or uid < opts.min_uid:
        return
    rec = last.get(login)
    if rec is not None:
        if rec["time"] < dormant_before:
            when = _dt.datetime.fromtimestamp(rec["time"], _dt.timezone.utc).date().isoformat()
            add(Finding("dormant", "low", f"{login} has not logged in on {hname} since {when}",
                        f"last login {when} ({rec['source']}); perms.dormant_days = "
                        f"{opts.dormant_days}", person, login, hname))
        return
    changed = acct.get("last_change_day")
    if changed is not None and today - changed < opts.dormant_days:
        return                                  # a new account, not yet used
    since = (f"password last changed day {changed}" if changed is not None
             else "no password change date")
    add(Finding("dormant", "low", f"{login} has no recorded login on {hname}",
                f"none in the login records ({since}); perms.dormant_days = "
                f"{opts.dormant_days}", person, login, hname))
