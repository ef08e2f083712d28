"""Which sudoers lines give a person rights, and how a freeze takes them away (R-ACC-6).

Deliberately simple matching -- by login, ``#uid``, ``%group`` / ``%#gid``
(the person's primary and supplementary groups), ``User_Alias`` membership
(nested aliases followed) and ``ALL`` -- over the files sudo reads: the
freeze gathers ``/etc/sudoers`` and its ``@include``/``#include`` files and
``@includedir``/``#includedir`` directories, skipping names that contain
'.' or end in '~' as sudo does (``included``). The real oracle is
``sudo -l -U LOGIN`` on the host, run after the freeze; this module only
decides what to edit. (The full evaluator with sudo's semantics lives in
opskit.perms.sudoers; the freeze should use it once accounts may import it.)

A *grant* is one user-list entry that matches the person:

* ``login`` / ``#uid`` in a user spec or a User_Alias: removable (the entry
  is taken out of the list; a spec left with no user is commented out);
* ``%group`` of a supplementary group: closed by the freeze's ``usermod -G ''``;
* ``%group`` of the person's own primary group named like the login: removable;
* anything else (``ALL``, a shared primary group, an alias that would be left
  empty): *manual* -- a blocking finding a human must resolve.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

FILE_MARK = "@@opskit-file "
_ALIAS_DEF = re.compile(r"^User_Alias\s+(.*)$")
_OTHER_ALIAS = re.compile(r"^(Runas_Alias|Host_Alias|Cmnd_Alias|Cmd_Alias)\s")
_SPEC = re.compile(r"^((?:[^\s,=]+\s*,\s*)*[^\s,=]+)\s+(\S.*=.*)$")


def included(path: str) -> bool:
    """False for files sudo skips in an includedir: a name with '.' or ending in '~'."""
    name = os.path.basename(path)
    return "." not in name and not name.endswith("~")


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
    """Statements of a sudoers file, backslash continuations joined, comments dropped."""
    out, buf, start = [], "", 0
    for i, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = i
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        buf += raw
        line = buf.strip()
        buf = ""
        if line and not (line.startswith("#") and not re.match(r"#\d", line)):
            out.append(Logical(path, start, i, line))
    return out


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

    def entry_matches(self, token: str) -> str | None:
        """How ``token`` (a user-list entry without '!') matches: 'name', 'primary',
        'supplementary', 'all', or None."""
        if token in (self.login, f"#{self.uid}"):
            return "name"
        if token == "ALL":
            return "all"
        if token.startswith("%"):
            g = token[1:]
            if g in (self.primary, f"#{self.gid}"):
                return "primary"
            if g in self.groups or g in (f"#{x}" for x in self.gids):
                return "supplementary"
        return None


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


def _aliases(statements: list[Logical]) -> dict[str, tuple[Logical, str, list[str]]]:
    """User_Alias NAME -> (statement, the 'NAME = a, b' part, members)."""
    out = {}
    for st in statements:
        m = _ALIAS_DEF.match(st.text)
        if not m:
            continue
        for part in re.split(r"\s*:\s*(?=[A-Z][A-Z0-9_]*\s*=)", m.group(1)):
            name, _, members = part.partition("=")
            out[name.strip()] = (st, part, _entries(members))
    return out


def scan(files: dict[str, str], who: Who) -> Scan:
    """Every user-list entry in ``files`` (path -> text) that gives ``who`` rights."""
    statements = [st for path, text in files.items() for st in logical_lines(path, text)]
    aliases = _aliases(statements)
    result = Scan()
    via_alias = _alias_hits(aliases, who, result)
    for st in statements:
        if _ALIAS_DEF.match(st.text) or _OTHER_ALIAS.match(st.text) or \
                re.match(r"^[#@]include", st.text):
            continue
        if st.text.startswith("Defaults"):
            if re.search(rf"[:,\s]{re.escape(who.login)}(\s|,|$)", st.text):
                result.mentions.append(f"{st.file}:{st.first}: {st.text}")
            continue
        m = _SPEC.match(st.text)
        if not m:
            continue
        for entry in _entries(m.group(1)):
            if entry.startswith("!"):
                continue
            how = who.entry_matches(entry) or ("alias" if entry in via_alias else None)
            if how:
                result.grants.append(Grant(st.file, st.first, st.last, st.text, entry, how,
                                           "spec", action=_action(how, entry, who)))
    return result


def _alias_hits(aliases, who: Who, result: Scan) -> set[str]:
    """Names of User_Aliases that (through nesting too) include ``who``; a Grant for
    each matching member in an alias definition."""
    hit: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, (st, _part, members) in aliases.items():
            if name in hit:
                continue
            if any(who.entry_matches(m) or m in hit for m in members if not m.startswith("!")):
                hit.add(name)
                changed = True
    for name in sorted(hit):
        st, _part, members = aliases[name]
        for m in members:
            how = who.entry_matches(m)
            if how:
                action = _action(how, m, who)
                if action == "remove" and all(who.entry_matches(x) == "name" or
                                              x.startswith("!") for x in members):
                    action = "manual"        # an empty alias is a syntax error
                result.grants.append(Grant(st.file, st.first, st.last, st.text, m, how,
                                           "alias", alias=name, action=action))
    return hit


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
