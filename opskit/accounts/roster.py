"""The roster: who works here, in which post, with which roles, on which hosts.

``roster.yaml`` (format: docs/roster.md) is the declared truth that
``opskit users`` provisions, ``opskit access`` amends through approved
requests, and ``opskit perms`` compares actual access against; it is read
together with roles.yaml and the applied grants by opskit.accounts.declared.
A person's id is also their Linux and PostgreSQL login unless ``login`` says
otherwise.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from opskit.core.errors import UsageError
from opskit.core.schema import Key, MapOf, Section, validate
from opskit.core.yamlfile import YamlDoc, load_yaml

from .roles import RoleModel

STATUSES = ("active", "departing", "transferred", "departed")
# Whoever is leaving or has left must have no access (R-ACC-6); 'departing'
# is frozen before the last day, so it counts too once the freeze has run.
INACTIVE_STATUSES = ("departing", "transferred", "departed")

_LOGIN = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
              "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
              "sk-ecdsa-sha2-nistp256@openssh.com")


def _keys_ok(value):
    for i, line in enumerate(value):
        parts = line.split()
        if "\n" in line or len(parts) < 2 or parts[0] not in _KEY_TYPES:
            return (f"item {i} is not an OpenSSH public key line; expected '<type> <base64> "
                    f"[comment]' with type one of {', '.join(_KEY_TYPES[:3])}, ...")
    return None


PERSON_SECTION = Section({
    "name": Key(str, "", "Full name."),
    "department": Key(str, "", "Department or section."),
    "post": Key(str, None, "Post (declared in roles.yaml posts:); its roles and host groups apply."),
    "roles": Key(list, [], "Roles beyond the post's (normally granted through access requests).",
                 item_type=str),
    "host_groups": Key(list, [], "Inventory groups beyond the post's where the person gets an "
                                 "account.", item_type=str),
    "ssh_keys": Key(list, [], "OpenSSH public key lines installed in authorized_keys.",
                    item_type=str, check=_keys_ok),
    "status": Key(str, "active", "active | departing | transferred | departed (R-ACC-6).",
                  choices=STATUSES, nullable=False),
    "backup": Key(str, None, "Person id of this person's backup for the post (AB岗, R-ACC-8)."),
    "login": Key(str, None, "Login name on hosts and databases. Default: the person id."),
    "uid": Key(int, None, "Fixed numeric uid (same on every host). Default: allocated by useradd.",
               min=1000),
    "shell": Key(str, "/bin/bash", "Login shell of an active account."),
})

SERVICE_ACCOUNT_SECTION = Section({
    "owner": Key(str, None, "Person id responsible for this non-personal account.", nullable=False),
    "purpose": Key(str, "", "What it is for."),
})

SCHEMA = Section({
    "people": MapOf(PERSON_SECTION),
    "service_accounts": MapOf(SERVICE_ACCOUNT_SECTION),
})


@dataclass
class Person:
    id: str
    login: str
    name: str = ""
    department: str = ""
    post: str | None = None
    roles: list[str] = field(default_factory=list)       # own roles, beyond the post's
    host_groups: list[str] = field(default_factory=list)  # own groups, beyond the post's
    ssh_keys: list[str] = field(default_factory=list)
    status: str = "active"
    backup: str | None = None
    uid: int | None = None
    shell: str = "/bin/bash"

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass
class ServiceAccount:
    login: str
    owner: str
    purpose: str = ""


@dataclass
class Roster:
    people: dict[str, Person]
    model: RoleModel
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    source: str | None = None
    # Roles granted by applied access requests (opskit.accounts.requests), by person id.
    grants: dict[str, list[str]] = field(default_factory=dict)

    def person(self, person_id: str) -> Person:
        """The person ``person_id``; UsageError (exit 2) naming the roster if unknown."""
        if person_id not in self.people:
            where = f" in {self.source}" if self.source else ""
            raise UsageError(f"unknown person '{person_id}'{where}",
                             hint="person ids are the keys under 'people:' in the roster")
        return self.people[person_id]

    def by_login(self, login: str) -> Person | None:
        """The person whose login name is ``login``, if any."""
        for p in self.people.values():
            if p.login == login:
                return p
        return None

    def roles_of(self, person: Person, extra: list[str] | tuple = ()) -> list[str]:
        """Declared roles: the post's, the person's own, those granted by applied access
        requests, then ``extra``, without repeats. Inactive people hold none (R-ACC-6)."""
        if not person.active:
            return []
        post_roles = self.model.posts[person.post].roles if person.post else []
        granted = self.grants.get(person.id, [])
        return list(dict.fromkeys([*post_roles, *person.roles, *granted, *extra]))

    def host_groups_of(self, person: Person) -> list[str]:
        """Inventory groups where the person has an account ('all' = every host)."""
        post_groups = self.model.posts[person.post].host_groups if person.post else []
        return list(dict.fromkeys([*post_groups, *person.host_groups]))

    def holders(self, post: str) -> list[Person]:
        return [p for p in self.people.values() if p.post == post]


def parse_roster(doc: YamlDoc, model: RoleModel) -> Roster:
    """Validate a parsed roster.yaml against ``model`` (roles, posts, backups, logins)."""
    data = validate(SCHEMA, doc.data or {}, doc)
    people: dict[str, Person] = {}
    logins: dict[str, str] = {}
    for pid, p in data["people"].items():
        login = p["login"] or pid
        if not _LOGIN.match(login):
            raise doc.error(("people", pid, "login") if p["login"] else ("people", pid),
                            f"{login!r} is not a valid login name; expected lower-case letters, "
                            "digits, '_', '.', '-' (at most 32, not starting with a digit or '-')")
        if login in logins:
            raise doc.error(("people", pid), f"login {login!r} is already used by {logins[login]!r}")
        logins[login] = pid
        if p["post"] is not None and p["post"] not in model.posts:
            raise doc.error(("people", pid, "post"), f"unknown post {p['post']!r}",
                            hint=f"posts declared in {model.source}: "
                                 f"{', '.join(sorted(model.posts)) or '(none)'}")
        for i, role in enumerate(p["roles"]):
            if role not in model.roles:
                raise doc.error(("people", pid, "roles", i), f"unknown role {role!r}",
                                hint=f"roles declared in {model.source}")
        people[pid] = Person(pid, login, p["name"] or "", p["department"] or "", p["post"],
                             list(p["roles"]), list(p["host_groups"]), list(p["ssh_keys"]),
                             p["status"], p["backup"], p["uid"], p["shell"] or "/bin/bash")
    for pid, p in people.items():
        if p.backup is not None and p.backup not in people:
            raise doc.error(("people", pid, "backup"), f"unknown person {p.backup!r}")
        if p.backup == pid:
            raise doc.error(("people", pid, "backup"), "a person cannot be their own backup")
    services = {}
    for login, s in data["service_accounts"].items():
        if login in logins:
            raise doc.error(("service_accounts", login), f"{login!r} is also a person's login")
        if s["owner"] not in people:
            raise doc.error(("service_accounts", login, "owner"), f"unknown person {s['owner']!r}")
        services[login] = ServiceAccount(login, s["owner"], s["purpose"] or "")
    return Roster(people, model, services, source=doc.file)


def load_roster(path: str, model: RoleModel) -> Roster:
    """Load and validate ``roster.yaml`` against the role model."""
    return parse_roster(load_yaml(path), model)
