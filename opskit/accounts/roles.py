"""The declared role model: roles with a tier, posts, separation-of-duties rules.

``roles.yaml`` is shared by provisioning (``opskit users``), access requests
(``opskit access``) and permission diffs (``opskit perms``). Format:
docs/roster.md. Tiers follow R-ACC-5: admin (maintains systems), operator
(the rights of the post), query (read only), special (sensitive operations
such as benefit activation and refunds, with mutual review).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from opskit.core.errors import UsageError
from opskit.core.schema import Key, MapOf, Section, validate
from opskit.core.yamlfile import YamlDoc, load_yaml

TIERS = ("admin", "operator", "query", "special")

_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


def _names_ok(value):
    bad = [v for v in value if not _NAME.match(v)]
    return f"invalid name(s) {bad}; expected lower-case letters, digits, '_', '.', '-'" if bad else None


def _sudo_ok(value):
    # A rule is the part of a sudoers user spec after the user name:
    # "HOSTS=(RUNAS) COMMANDS". Newlines or a leading user would let a role
    # smuggle in rules for someone else.
    bad = [v for v in value if "\n" in v or "=" not in v or v.strip().startswith(("#", "@"))]
    return (f"invalid sudo rule(s) {bad}; expected 'HOSTS=(RUNAS) COMMANDS', e.g. "
            "'ALL=(postgres) /usr/bin/psql'" if bad else None)


ROLE_SECTION = Section({
    "tier": Key(str, None, "admin | operator | query | special (R-ACC-5).", choices=TIERS,
                nullable=False),
    "description": Key(str, "", "What the role is for."),
    "linux": Section({
        "groups": Key(list, [], "Supplementary Linux groups the role grants.", item_type=str,
                      check=_names_ok),
        "sudo": Key(list, [], "sudoers rules granted, each 'HOSTS=(RUNAS) COMMANDS'.",
                    item_type=str, check=_sudo_ok),
    }),
    "postgres": Section({
        "roles": Key(list, [], "PostgreSQL group roles the person's login role is a member of.",
                     item_type=str),
        "databases": Key(list, [], "Databases where those grants apply (empty: every configured one).",
                         item_type=str),
    }),
    "review_by": Key(str, None, "special tier: the role whose holders review this role's "
                                "operations (mutual review, R-ACC-5)."),
})

POST_SECTION = Section({
    "description": Key(str, "", "What the post does."),
    "roles": Key(list, [], "Roles every holder of the post gets.", item_type=str),
    "host_groups": Key(list, [], "Inventory groups whose hosts get the holder's account "
                                 "('all' = every host).", item_type=str),
})

SOD_SECTION = Section({
    "rule": Key(str, "R-ACC-2", "Rule id cited in findings and refusals."),
    "description": Key(str, "", "Why these may not be combined."),
    "tiers": Key(list, [], "No person holds roles of two or more of these tiers.", item_type=str),
    "roles": Key(list, [], "No person holds two or more of these roles.", item_type=str),
})

# R-ACC-2: maintainers are separate from business operators. Used when the
# file has no separation_of_duties section.
DEFAULT_SOD = {
    "maintainer-not-operator": {"rule": "R-ACC-2", "description":
                                "system maintainers never take part in business operations",
                                "tiers": ["admin", "operator"], "roles": []},
    "maintainer-not-special": {"rule": "R-ACC-2", "description":
                               "system maintainers never hold sensitive business roles",
                               "tiers": ["admin", "special"], "roles": []},
}

# tables holding personal or insurance data that must keep rows apart (R-ACC-4,
# R-DAT-4): PostgreSQL row-level security enabled and forced, and only the roles
# named here may see every row (opskit perms, docs/roster.md)
ROW_SECURITY_SECTION = Section({
    "description": Key(str, "", "What the table holds."),
    "databases": Key(list, [], "Databases where it applies (empty: every configured one).",
                     item_type=str),
    "all_rows": Key(list, [], "Roles of this file whose PostgreSQL roles may see every row "
                              "(a USING (true) policy, BYPASSRLS, owning the table).",
                    item_type=str),
})

SCHEMA = Section({
    "roles": MapOf(ROLE_SECTION),
    "posts": MapOf(POST_SECTION),
    "separation_of_duties": MapOf(SOD_SECTION, default=None),
    "row_security": MapOf(ROW_SECURITY_SECTION, default=None),
})
_TABLE = re.compile(r"^[^.\s]+\.[^.\s]+$")


@dataclass
class Role:
    name: str
    tier: str
    description: str = ""
    groups: list[str] = field(default_factory=list)
    sudo: list[str] = field(default_factory=list)
    pg_roles: list[str] = field(default_factory=list)
    pg_databases: list[str] = field(default_factory=list)
    review_by: str | None = None


@dataclass
class Post:
    name: str
    roles: list[str]
    host_groups: list[str]
    description: str = ""


@dataclass
class SodRule:
    id: str
    rule: str
    description: str
    tiers: list[str]
    roles: list[str]


@dataclass
class RowSecurity:
    """A table that must have row-level security (roles.yaml ``row_security``)."""

    table: str                 # schema.table
    description: str = ""
    databases: list[str] = field(default_factory=list)
    all_rows: list[str] = field(default_factory=list)

    def applies(self, names) -> bool:
        """Whether it applies in the database known by any of ``names``."""
        return not self.databases or any(n in self.databases for n in names)


@dataclass
class Conflict:
    """A separation-of-duties rule that a set of roles breaks."""

    sod: SodRule
    roles: list[str]           # the person's roles that collide

    def describe(self) -> str:
        return (f"{self.sod.rule} separation of duties '{self.sod.id}'"
                f"{': ' + self.sod.description if self.sod.description else ''} "
                f"(conflicting roles: {', '.join(self.roles)})")


@dataclass
class RoleModel:
    roles: dict[str, Role]
    posts: dict[str, Post]
    sod: list[SodRule]
    source: str | None = None
    row_security: dict[str, RowSecurity] = field(default_factory=dict)

    def role(self, name: str) -> Role:
        """The role called ``name``; UsageError (exit 2) listing known ones if none."""
        if name not in self.roles:
            raise UsageError(f"unknown role '{name}'{self._where()}; known roles: "
                             f"{', '.join(sorted(self.roles)) or '(none)'}")
        return self.roles[name]

    def post(self, name: str) -> Post:
        if name not in self.posts:
            raise UsageError(f"unknown post '{name}'{self._where()}; known posts: "
                             f"{', '.join(sorted(self.posts)) or '(none)'}")
        return self.posts[name]

    def tier_of(self, role: str) -> str | None:
        r = self.roles.get(role)
        return r.tier if r else None

    def linux_groups(self, roles) -> list[str]:
        """Sorted Linux groups granted by ``roles``."""
        return sorted({g for r in roles if r in self.roles for g in self.roles[r].groups})

    def sudo_rules(self, roles) -> list[str]:
        """sudoers rules granted by ``roles``, in role order, without repeats."""
        out: list[str] = []
        for r in roles:
            for rule in self.roles[r].sudo if r in self.roles else ():
                if rule not in out:
                    out.append(rule)
        return out

    def pg_roles(self, roles, database: str | None = None) -> list[str]:
        """Sorted PostgreSQL roles granted by ``roles`` (in ``database`` when given)."""
        out = set()
        for r in roles:
            role = self.roles.get(r)
            if role and (database is None or not role.pg_databases or database in role.pg_databases):
                out.update(role.pg_roles)
        return sorted(out)

    def conflicts(self, roles) -> list[Conflict]:
        """Every separation-of-duties rule that holding all of ``roles`` breaks (R-ACC-2)."""
        roles = list(dict.fromkeys(roles))
        found = []
        for rule in self.sod:
            hit: list[str] = []
            if rule.tiers:
                tiers_held = {}
                for r in roles:
                    t = self.tier_of(r)
                    if t in rule.tiers:
                        tiers_held.setdefault(t, []).append(r)
                if len(tiers_held) >= 2:
                    hit = [r for rs in tiers_held.values() for r in rs]
            if rule.roles:
                held = [r for r in roles if r in rule.roles]
                if len(held) >= 2:
                    hit = list(dict.fromkeys(hit + held))
            if hit:
                found.append(Conflict(rule, hit))
        return found

    def _where(self) -> str:
        return f" in {self.source}" if self.source else ""


def parse_roles(doc: YamlDoc) -> RoleModel:
    """Validate a parsed roles.yaml; every cross-reference is checked (exit 2 naming file:line:key)."""
    data = validate(SCHEMA, doc.data or {}, doc)
    roles = {}
    for name, r in data["roles"].items():
        if not _NAME.match(name):
            raise doc.error(("roles", name), f"invalid role name {name!r}")
        roles[name] = Role(name, r["tier"], r["description"] or "", list(r["linux"]["groups"]),
                           list(r["linux"]["sudo"]), list(r["postgres"]["roles"]),
                           list(r["postgres"]["databases"]), r["review_by"])
    for name, r in roles.items():
        if r.review_by is not None and r.review_by not in roles:
            raise doc.error(("roles", name, "review_by"), f"unknown role {r.review_by!r}")
    posts = {}
    for name, p in data["posts"].items():
        for i, role in enumerate(p["roles"]):
            if role not in roles:
                raise doc.error(("posts", name, "roles", i), f"unknown role {role!r}",
                                hint=f"roles declared: {', '.join(sorted(roles)) or '(none)'}")
        posts[name] = Post(name, list(p["roles"]), list(p["host_groups"]), p["description"] or "")
    sod_data = data["separation_of_duties"]
    if sod_data is None:
        sod_data = DEFAULT_SOD
    sod = []
    for sid, s in sod_data.items():
        for i, tier in enumerate(s["tiers"]):
            if tier not in TIERS:
                raise doc.error(("separation_of_duties", sid, "tiers", i),
                                f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
        for i, role in enumerate(s["roles"]):
            if role not in roles:
                raise doc.error(("separation_of_duties", sid, "roles", i), f"unknown role {role!r}")
        if len(s["tiers"]) < 2 and len(s["roles"]) < 2:
            raise doc.error(("separation_of_duties", sid),
                            "expected at least two tiers or two roles that may not be combined")
        sod.append(SodRule(sid, s["rule"] or "R-ACC-2", s["description"] or "", list(s["tiers"]),
                           list(s["roles"])))
    return RoleModel(roles, posts, sod, source=doc.file,
                     row_security=_row_security(doc, data["row_security"] or {}, roles))


def _row_security(doc: YamlDoc, data: dict, roles: dict) -> dict[str, RowSecurity]:
    out = {}
    for table, t in data.items():
        if not _TABLE.match(table):
            raise doc.error(("row_security", table), f"expected schema.table, got {table!r}")
        for i, role in enumerate(t["all_rows"]):
            if role not in roles:
                raise doc.error(("row_security", table, "all_rows", i), f"unknown role {role!r}",
                                hint=f"roles declared: {', '.join(sorted(roles)) or '(none)'}")
        out[table] = RowSecurity(table, t["description"] or "", list(t["databases"]),
                                 list(t["all_rows"]))
    return out


def load_roles(path: str) -> RoleModel:
    """Load and validate ``roles.yaml``."""
    return parse_roles(load_yaml(path))
