"""A grammar-driven generator of sudoers trees for the differential tests.

``generate(seed, n)`` gives ``n`` Cases (tests.harness.sudo_oracle): each a
tree -- /etc/sudoers with aliases (user, host, run-as, command; negated
members, aliases inside aliases), user specifications (user lists with
negation, %group, %#gid, #uid, names in another case than the account's;
host lists with names, FQDNs, wildcards, addresses, networks and negation;
run-as lists; tags carried over run-as changes; negated commands and
arguments, command digests), Defaults that remove or restore authentication
(generic, @host, :user, >runas with names, ALL and aliases, !cmnd) or set
exempt_group (also for a run-as user) or turn case-insensitive names off,
and includes (@include, #include, %h, @includedir with files sudo skips and
a sub-directory) -- and questions about the test users. The same seed always
gives the same trees on one host (the digests are of its /usr/bin/id).
"""
from __future__ import annotations

import random

from tests.harness.sudo_oracle import Case, digest

LOGINS = ("ann", "bob", "carl")
RUNAS = ("root", "pgx")
COMMANDS = ("/usr/bin/true", "/usr/bin/id", "/usr/bin/id -u", "/usr/bin/whoami",
            "/usr/bin/date")
USER_ATOMS = ("ann", "bob", "carl", "%ops", "%dev", "#2003", "%#2100", "ALL",
              "Bob", "%DEV")                 # sudo ignores case in user and group names
HOST_ATOMS = ("ALL", "h1", "h2", "h1.example.test", "h2.example.test", "h*", "10.1.2.3",
              "10.1.2.0/24", "10.1.2.0", "10.9.0.0/16", "192.168.7.7")
RUNAS_ATOMS = ("root", "pgx", "ALL", "%dev", "Pgx")
CMND_ATOMS = ("/usr/bin/true", "/usr/bin/id", "/usr/bin/id -u", '/usr/bin/id ""',
              "/usr/bin/whoami", "/usr/bin/date", "/usr/bin/*", "/usr/bin/", "ALL",
              # digests of this host's /usr/bin/id (sudo checks them against the file)
              f"{digest('sha256', '/usr/bin/id')} /usr/bin/id",
              f"{digest('sha224', '/usr/bin/id')}, {digest('sha512', '/usr/bin/id', True)} "
              "/usr/bin/id -u")
TAGS = ("NOPASSWD:", "PASSWD:", "NOPASSWD:", "SETENV:", "NOEXEC:", "EXEC:")


class _Gen:
    def __init__(self, rnd: random.Random):
        self.r = rnd
        self.aliases: dict[str, list[str]] = {"User": [], "Host": [], "Runas": [], "Cmnd": []}

    def neg(self, p: float = 0.25) -> str:
        return "!" if self.r.random() < p else ""

    def members(self, atoms, kind: str, k_max: int = 3, neg: float = 0.25) -> str:
        pool = list(atoms) + self.aliases[kind]
        return ", ".join(self.neg(neg) + self.r.choice(pool)
                         for _ in range(self.r.randint(1, k_max)))

    def alias(self, kind: str, atoms) -> str:
        name = f"{kind.upper()}{len(self.aliases[kind]) + 1}"
        line = f"{kind}_Alias {name} = {self.members(atoms, kind, 3, 0.3)}"
        self.aliases[kind].append(name)
        return line

    def runas(self) -> str:
        c = self.r.random()
        if c < 0.3:
            return ""
        users = self.members(RUNAS_ATOMS, "Runas", 2, 0.2)
        return f"({users}) " if c < 0.85 else f"({users} : ALL) "

    def cmnd_list(self) -> str:
        out = []
        for _ in range(self.r.randint(1, 3)):
            tags = "".join(self.r.choice(TAGS) + " " for _ in range(self.r.randint(0, 1)
                                                                   if out else
                                                                   self.r.randint(0, 2)))
            out.append(f"{self.runas()}{tags}{self.neg(0.2)}"
                       f"{self.r.choice(list(CMND_ATOMS) + self.aliases['Cmnd'])}")
        return ", ".join(out)

    def spec(self) -> str:
        users = self.members(USER_ATOMS, "User", 3, 0.25)
        sections = [f"{self.members(HOST_ATOMS, 'Host', 2, 0.15)} = {self.cmnd_list()}"
                    for _ in range(1 if self.r.random() < 0.8 else 2)]
        return f"{users} " + " : ".join(sections)

    def defaults(self) -> str:
        flag = self.r.choice(("!authenticate", "!authenticate", "authenticate"))
        kind = self.r.randint(0, 5)
        if kind == 0:
            return f"Defaults:{self.members(USER_ATOMS, 'User', 2, 0.2)} {flag}"
        if kind == 1:
            return f"Defaults!{self.r.choice(CMND_ATOMS[:3] + tuple(self.aliases['Cmnd']))} " \
                   f"{flag}".replace('/usr/bin/id -u', '/usr/bin/id')
        if kind == 2:
            runas = ('pgx', 'root', 'ROOT', 'ALL', 'pgx, root') + tuple(self.aliases['Runas'])
            return f"Defaults>{self.r.choice(runas)} {flag}"
        if kind == 3:
            return f"Defaults@{self.r.choice(('h1', 'h2', '10.1.2.0/24'))} {flag}"
        if kind == 4:
            return f"Defaults{self.r.choice(('', '', '>root', '>pgx'))} " \
                   f"exempt_group={self.r.choice(('dev', 'ops', 'OPS'))}"
        if self.r.random() < 0.3:
            return self.r.choice(("Defaults !case_insensitive_user",
                                  "Defaults !case_insensitive_group"))
        return "Defaults env_reset"

    def file(self, n_lines: int) -> list[str]:
        lines = []
        for _ in range(n_lines):
            c = self.r.random()
            if c < 0.22:
                kind, atoms = self.r.choice((("User", USER_ATOMS), ("Host", HOST_ATOMS),
                                             ("Runas", RUNAS_ATOMS), ("Cmnd", CMND_ATOMS)))
                lines.append(self.alias(kind, atoms))
            elif c < 0.35:
                lines.append(self.defaults())
            elif c < 0.40:
                lines.append("# a comment that ends in a backslash \\")
            else:
                lines.append(self.spec())
        return lines


def generate(seed: int, n: int) -> list[Case]:
    """``n`` trees with their questions (see module doc)."""
    rnd = random.Random(seed)
    cases = []
    for _ in range(n):
        g = _Gen(rnd)
        main = g.file(rnd.randint(2, 6))
        tree: dict = {}
        inc = rnd.random()
        if inc < 0.5:
            main.insert(rnd.randint(0, len(main)), "@includedir /etc/sudoers.d")
            tree["/etc/sudoers.d/10-site"] = "\n".join(g.file(rnd.randint(1, 3))) + "\n"
            tree["/etc/sudoers.d/20-more"] = "\n".join(g.file(rnd.randint(1, 2))) + "\n"
            tree["/etc/sudoers.d/skip.conf"] = "ALL ALL = (ALL) NOPASSWD: ALL\n"
            tree["/etc/sudoers.d/skip~"] = "ALL ALL = (ALL) NOPASSWD: ALL\n"
            tree["/etc/sudoers.d/sub/inner"] = "ALL ALL = (ALL) NOPASSWD: ALL\n"
        elif inc < 0.75:
            main.insert(rnd.randint(0, len(main)),
                        rnd.choice(("@include /etc/sudoers.d/site/%h",
                                    "#include /etc/sudoers.d/site/h1",
                                    "@include sudoers.d/site/%h")))
            tree["/etc/sudoers.d/site/h1"] = "\n".join(g.file(rnd.randint(1, 3))) + "\n"
        tree["/etc/sudoers"] = "\n".join(main) + "\n"
        questions = sorted({(rnd.choice(LOGINS), rnd.choice(RUNAS), rnd.choice(COMMANDS))
                            for _ in range(8)})
        cases.append(Case(tree, questions))
    return cases
