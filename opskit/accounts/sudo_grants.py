"""Which sudoers entries give a person rights, and how a freeze takes them away (R-ACC-6).

Who gets in is decided by opskit.hosts.sudoers (the evaluator with sudo's own
semantics, differential-tested against ``sudo -l -U``): by login, ``#uid``,
``%group`` / ``%#gid`` (primary and supplementary), ``User_Alias`` (nested, with
negations) and ``ALL``, over the files sudo reads (``gather_script`` collects
``/etc/sudoers`` and its includes in one round trip; the parser applies sudo's
skip rule for includedirs: no '.' in the name, no trailing '~'). This module
only says which user-list entries to edit. The real oracle is ``sudo -l -U
LOGIN`` on the host, run after the freeze.

A *grant* is one user-list entry, of a rule that gives the person rights, that
matches the person:

* ``login`` / ``#uid`` in a user spec or a User_Alias: removable (the entry
  is taken out of the list; a spec left with no user is commented out);
* ``%group`` of a supplementary group: closed by the freeze's ``usermod -G ''``;
* ``%group`` of the person's own primary group named like the login: removable;
* anything else (``ALL``, a shared primary group, an alias that would be left
  empty, a netgroup): *manual* -- a blocking finding a human must resolve.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from opskit.hosts.sudoers.evaluate import ALLOW, HostIdentity, Matcher, SudoUser, evaluate
from opskit.hosts.sudoers.parse import ROOT, Member, ParsedTree, parse_tree, statements

FILE_MARK = "@@opskit-file "
_SPEC = re.compile(r"^((?:[^\s,=]+\s*,\s*)*[^\s,=]+)\s+(\S.*=.*)$")


def gather_script(root: str = "") -> str:
    """sh that prints every file sudo reads, starting at /etc/sudoers (each
    preceded by a FILE_MARK line with its real path), following includes; without
    an /etc/sudoers, the files in /etc/sudoers.d."""
    return (
        "_sw() { [ \"$2\" -gt 8 ] && return 0; [ -f \"$1\" ] || return 0; "
        f"printf '{FILE_MARK}%s\\n' \"$1\"; cat \"$1\"; echo; "
        "awk '/^[#@]includedir[ \\t]/{print \"d \" $2; next} "
        "/^[#@]include[ \\t]/{print \"f \" $2}' \"$1\" | "
        "while read -r kind p; do "
        f"case \"$p\" in /*) p=\"{root}$p\";; *) p=\"${{1%/*}}/$p\";; esac; "
        "if [ \"$kind\" = d ]; then for f in \"$p\"/*; do n=${f##*/}; "
        "case \"$n\" in *.*|*~) continue;; esac; _sw \"$f\" $(($2+1)); done; "
        "else _sw \"$p\" $(($2+1)); fi; done; }; "
        f"if [ -f {root}/etc/sudoers ]; then _sw {root}/etc/sudoers 0; "
        # no /etc/sudoers (an image): look at the usual drop-ins all the same
        f"else for f in {root}/etc/sudoers.d/*; do n=${{f##*/}}; "
        "case \"$n\" in *.*|*~) continue;; esac; _sw \"$f\" 1; done; fi")


def split_files(text: str, root: str = "") -> dict[str, str]:
    """The gather_script output as {target path: content}, in reading order."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith(FILE_MARK):
            real = line[len(FILE_MARK):]
            current = real[len(root):] if root and real.startswith(root) else real
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return {path: "\n".join(lines) for path, lines in out.items()}


@dataclass
class Logical:
    """One sudoers statement: physical lines ``first``..``last`` (1-based) joined."""

    file: str
    first: int
    last: int
    text: str


def logical_lines(path: str, text: str) -> list[Logical]:
    """Statements of a sudoers file as sudo reads them (opskit.hosts.sudoers.parse)."""
    return [Logical(path, first, last, line) for first, last, line in statements(text)]


@dataclass(frozen=True)
class Who:
    """The person as sudo sees them."""

    login: str
    uid: int
    primary: str = ""           # primary group name
    gid: int = -1
    groups: tuple = ()          # supplementary group names
    gids: tuple = ()

    @classmethod
    def of(cls, db, acct) -> "Who":
        """The person of account ``acct`` in user database ``db`` (opskit.hosts.userdb)."""
        gids = tuple(db.groups[g].gid for g in acct.groups if g in db.groups)
        return cls(acct.name, acct.uid, acct.primary_group or "", acct.gid,
                   tuple(acct.groups), gids)

    def sudo_user(self) -> SudoUser:
        """The person as the evaluator takes them (primary group among the groups)."""
        names = {*self.groups, *([self.primary] if self.primary else [])}
        gids = {*self.gids, *([self.gid] if self.gid >= 0 else [])}
        return SudoUser(self.login, self.uid, self.gid if self.gid >= 0 else None,
                        frozenset(names), frozenset(gids))

    def how(self, token: str, aliases) -> str:
        """What kind of entry ``token`` (already known to match) is: 'name', 'all',
        'alias', 'primary', 'supplementary' or 'other' (a netgroup...)."""
        if token in (self.login, f"#{self.uid}"):
            return "name"
        if token == "ALL":
            return "all"
        if token in aliases:
            return "alias"
        if token in (f"%{self.primary}", f"%#{self.gid}"):
            return "primary"
        return "supplementary" if token.startswith("%") else "other"


@dataclass
class Grant:
    file: str
    first: int
    last: int
    statement: str
    token: str                  # the entry that matched, e.g. '#2811', '%wheel', 'OPS'
    how: str                    # name | primary | supplementary | all | alias
    kind: str                   # spec | alias
    alias: str | None = None    # the User_Alias defining it (kind 'alias')
    action: str = "manual"      # remove | groups | manual

    def describe(self) -> str:
        return f"{self.file}:{self.first}: {self.statement} (via {self.token})"


@dataclass
class Scan:
    grants: list[Grant] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)     # Defaults:login etc. (no rights)

    @property
    def open(self) -> list[Grant]:
        """Grants the freeze must still close (everything but supplementary groups,
        which ``usermod -G ''`` removes)."""
        return [g for g in self.grants if g.action != "groups"]


def rule_of(statement: str) -> tuple[list[str], str] | None:
    """(user list, the rest) of a user spec statement; None for anything else."""
    m = _SPEC.match(statement)
    return (_entries(m.group(1)), m.group(2).strip()) if m else None


def _entries(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def scan(files: dict[str, str], who: Who, hostname: str = "") -> Scan:
    """Every user-list entry in ``files`` (path -> text, as sudo reads them from
    /etc/sudoers) that lets ``who`` into a rule granting something, on this host or any
    other (the evaluator decides; each matching entry of the rule is a grant)."""
    tree = dict(files)
    if ROOT not in tree:             # no /etc/sudoers (an image): its usual drop-ins
        tree[ROOT] = "@includedir /etc/sudoers.d\n"
    parsed = parse_tree(tree, hostname)
    host = HostIdentity(hostname)
    matcher = Matcher(parsed, who.sudo_user(), host)
    granting = {r.source for r in evaluate(parsed, matcher.user, host, elsewhere=True)
                if not r.negated}
    index = {(st.file, st.first): st for path, text in files.items()
             for st in logical_lines(path, text)}
    result = Scan()
    for spec in parsed.specs:
        if spec.source in granting:
            result.grants += _entries_of(spec.users, spec.source, "spec", None, parsed,
                                         matcher, who, index)
    # every User_Alias that takes the person in, used by a rule or not: a name left in
    # an unused alias is a right waiting for the next rule that names it
    aliases_done: set[str] = set()
    for name in [g.token for g in result.grants if g.how == "alias"] + \
            sorted(parsed.aliases["user"]):
        if matcher.user_matches([Member(name)]) is ALLOW:
            result.grants += _alias_grants(name, parsed, matcher, who, index, aliases_done)
    for d in parsed.defaults:
        if d.kind == ":" and matcher.user_matches(d.binding) is ALLOW:
            st = _statement(index, d.source)
            result.mentions.append(f"{st.file}:{st.first}: {st.text}" if st else d.source)
    return result


def _statement(index: dict, source: str) -> Logical | None:
    path, _, line = source.rpartition(":")
    return index.get((path, int(line))) if line.isdigit() else None


def _entries_of(members, source: str, kind: str, alias: str | None, parsed: ParsedTree,
                matcher: Matcher, who: Who, index: dict) -> list[Grant]:
    """A Grant for each entry of ``members`` that matches the person by itself."""
    st = _statement(index, source)
    if st is None:
        return []
    out = []
    for m in members:
        if m.negated or matcher.user_matches([m]) is not ALLOW:
            continue
        how = who.how(m.name, parsed.aliases["user"])
        action = _action(how, m.name, who)
        if kind == "alias" and action == "remove" and all(
                x.negated or who.how(x.name, ()) == "name" for x in members):
            action = "manual"        # an empty alias is a syntax error
        out.append(Grant(st.file, st.first, st.last, st.text, m.name, how, kind,
                         alias=alias, action=action))
    return out


def _alias_grants(name: str, parsed: ParsedTree, matcher: Matcher, who: Who, index: dict,
                  done: set[str]) -> list[Grant]:
    """The entries of User_Alias ``name`` (and of the aliases nested in it) that match."""
    if name in done:
        return []
    done.add(name)
    source = parsed.alias_sources.get(f"user:{name}", "")
    grants = _entries_of(parsed.aliases["user"].get(name, []), source, "alias", name, parsed,
                         matcher, who, index)
    out = [g for g in grants if g.how != "alias"]
    for g in grants:
        if g.how == "alias":
            out += _alias_grants(g.token, parsed, matcher, who, index, done)
    return out


def _action(how: str, entry: str, who: Who) -> str:
    if how == "name":
        return "remove"
    if how == "supplementary":
        return "groups"
    if how == "primary" and entry == f"%{who.login}":
        return "remove"              # the personal group (USERGROUPS_ENAB)
    return "manual"


def edit(text: str, grants: list[Grant], mark: str) -> str:
    """``text`` with the removable ``grants`` (all in this file) taken out: the entry
    is dropped from its user list or alias; a spec left without users is
    commented out with ``mark``."""
    lines = text.splitlines()
    for g in sorted({(g.first, g.last, g.token, g.kind, g.alias): g for g in grants
                     if g.action == "remove"}.values(), key=lambda g: -g.first):
        first = lines[g.first - 1]
        if g.kind == "spec":
            m = _SPEC.match(first.strip())
            users = [u for u in _entries(m.group(1)) if u != g.token] if m else []
            if m and users:
                lines[g.first - 1] = first.replace(m.group(1), ", ".join(users), 1)
                continue
            for i in range(g.first - 1, g.last):
                lines[i] = f"# {mark}: {lines[i].strip()}"
        else:
            lines[g.first - 1] = re.sub(
                rf"(\b{re.escape(g.alias)}\s*=\s*)([^:]*)",
                lambda m: m.group(1) + ", ".join(u for u in _entries(m.group(2))
                                                 if u != g.token)
                + (" " if m.group(2).endswith(" ") else ""), first, count=1)
    return "\n".join(lines) + "\n"


SUDO_L_NONE = "is not allowed to run sudo"


def sudo_l_rights(output: str) -> list[str]:
    """The rule lines ``sudo -l -U LOGIN`` printed (empty when the user may run nothing)."""
    if SUDO_L_NONE in output or "may run the following commands" not in output:
        return []
    rules = output.split("may run the following commands", 1)[1].splitlines()[1:]
    return [r.strip() for r in rules if r.strip()]
