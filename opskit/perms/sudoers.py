"""Read a host's sudoers the way sudo does, and say who may run what (R-ACC-4).

``read_sudoers(host, userdb)`` starts at /etc/sudoers and follows
``@include``/``#include`` files and ``@includedir``/``#includedir``
directories (files whose names end in '~' or contain '.' are skipped, as
sudo skips them; relative paths are relative to the including file). It
expands ``User_Alias``, ``Runas_Alias``, ``Host_Alias`` and ``Cmnd_Alias``
(``Cmd_Alias``) and resolves user lists -- ``%group`` (members and accounts
whose primary group it is), ``%#gid``, ``#uid``, ``ALL`` -- to logins.

The result is one flat ``SudoItem`` per (login, hosts, runas, tags, command),
with the file:line it came from and the user-list entry that matched (``via``),
so a finding can name its evidence. ``parse_rule`` reads a declared role's
rule (``HOSTS=(RUNAS) COMMANDS``, roles.yaml) into the same items, so
declared and actual compare item by item.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from opskit.hosts.base import Host, HostError

MAX_DEPTH = 128
ALIAS_KINDS = {"User_Alias": "user", "Runas_Alias": "runas", "Host_Alias": "host",
               "Cmnd_Alias": "cmnd", "Cmd_Alias": "cmnd"}
TAGS = ("NOPASSWD", "PASSWD", "NOEXEC", "EXEC", "SETENV", "NOSETENV", "LOG_INPUT",
        "NOLOG_INPUT", "LOG_OUTPUT", "NOLOG_OUTPUT", "MAIL", "NOMAIL", "FOLLOW", "NOFOLLOW",
        "INTERCEPT", "NOINTERCEPT")
# tags that only restrict: an actual rule carrying them is not "more" than the declared one
_RESTRICTING = {"PASSWD", "NOEXEC", "NOSETENV", "LOG_INPUT", "LOG_OUTPUT", "MAIL",
                "NOFOLLOW", "INTERCEPT"}
_OPTIONS = re.compile(r"^(ROLE|TYPE|CWD|CHROOT|TIMEOUT|NOTBEFORE|NOTAFTER|APPARMOR_PROFILE)"
                      r"\s*=\s*\S+\s*")
_TAG = re.compile(r"^(" + "|".join(TAGS) + r")\s*:\s*")
_ALIAS_LINE = re.compile(r"^(User_Alias|Runas_Alias|Host_Alias|Cmnd_Alias|Cmd_Alias)\s+(.*)$")
_ALIAS_SPLIT = re.compile(r"\s*:\s*(?=[A-Z][A-Z0-9_]*\s*=)")
_HOST_SECTION_SPLIT = re.compile(r"\s+:\s*(?=[^\s=:()]+(?:\s*,\s*[^\s=:()]+)*\s*=)")
_INCLUDE = re.compile(r"^[#@](include|includedir)\s+(.+)$")
_ALIAS_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class SudoItem:
    """One thing one login may do through sudo."""

    hosts: str              # 'ALL' or comma-joined host names (aliases expanded)
    runas: str              # 'root', 'ALL', 'ALL:ALL', 'postgres', 'root:wheel', ...
    tags: tuple = ()        # sorted tag names, e.g. ('NOPASSWD',)
    command: str = "ALL"    # 'ALL', a path with arguments, or '!path' (a negation)
    source: str = ""        # file:line
    via: str = ""           # the user-list entry that matched: 'zhang.wei', '%sudo', 'ADMINS'

    def text(self) -> str:
        """``HOSTS=(RUNAS) TAGS: COMMAND``: the normal form compared and reported."""
        tags = "".join(f"{t}: " for t in self.tags)
        return f"{self.hosts}=({self.runas}) {tags}{self.command}"

    def as_dict(self) -> dict:
        return {"rule": self.text(), "hosts": self.hosts, "runas": self.runas,
                "tags": list(self.tags), "command": self.command, "source": self.source,
                "via": self.via}

    @classmethod
    def from_dict(cls, d: dict) -> "SudoItem":
        return cls(d["hosts"], d["runas"], tuple(d.get("tags", ())), d["command"],
                   d.get("source", ""), d.get("via", ""))

    @property
    def key(self) -> tuple:
        return (self.hosts, self.runas, self.tags, self.command)


def covers(declared: SudoItem, actual: SudoItem, *, ignore_hosts: bool = False) -> bool:
    """True when ``declared`` allows at least what ``actual`` allows (host lists
    not compared with ``ignore_hosts``: a rule written for named hosts)."""
    if actual.command.startswith("!"):
        return True                                   # a negation takes rights away
    if not ignore_hosts and declared.hosts != "ALL" and declared.hosts != actual.hosts:
        return False
    if declared.command != "ALL" and declared.command != actual.command:
        return False
    if not _runas_covers(declared.runas, actual.runas):
        return False
    extra = set(actual.tags) - set(declared.tags) - _RESTRICTING
    return not extra


def _runas_covers(d: str, a: str) -> bool:
    if d == a:
        return True
    du, _, dg = d.partition(":")
    au, _, ag = a.partition(":")
    users_ok = du == "ALL" or set(au.split(",")) <= set(du.split(","))
    groups_ok = not ag or dg == "ALL" or set(ag.split(",")) <= set(dg.split(","))
    return users_ok and groups_ok


# --- lexing -------------------------------------------------------------------------

def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and not escaped with a backslash."""
    out, depth, cur, i = [], 0, [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        if c == sep and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur).strip())
    return [p for p in out if p]


def _logical_lines(text: str):
    """(line number, text) with continuations joined and comments removed."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if not line:
            continue
        if line.startswith("#"):
            if _INCLUDE.match(line) or re.match(r"^#\d", line):
                yield start, line
            continue
        line = re.sub(r"\s#(?![\d]).*$", "", line).strip()
        if line:
            yield start, line
    if pending.strip():
        yield start, pending.strip()


# --- the parsed file set --------------------------------------------------------------

@dataclass
class _Spec:
    users: list[str]
    host_sections: list[tuple[str, str]]      # (host list text, command spec list text)
    source: str


@dataclass
class Sudoers:
    """What read_sudoers found: flat items by login, the files read and problems."""

    items: dict[str, list[SudoItem]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"files": self.files, "warnings": self.warnings,
                "rules": {login: [i.as_dict() for i in items]
                          for login, items in sorted(self.items.items())}}


class _Reader:
    def __init__(self, host: Host):
        self.host = host
        self.aliases: dict[str, dict[str, list[str]]] = {k: {} for k in
                                                          ("user", "runas", "host", "cmnd")}
        self.specs: list[_Spec] = []
        self.files: list[str] = []
        self.warnings: list[str] = []
        self.seen: set[str] = set()

    def read(self, path: str, depth: int = 0, required: bool = False) -> None:
        if depth > MAX_DEPTH:
            self.warnings.append(f"{path}: includes nested deeper than {MAX_DEPTH}; not read")
            return
        if path in self.seen:
            self.warnings.append(f"{path}: included again (loop); not read twice")
            return
        self.seen.add(path)
        try:
            text = self.host.read_file(path).decode("utf-8", "replace")
        except FileNotFoundError:
            if required:
                self.warnings.append(f"{path}: not found (no sudo rules)")
            else:
                self.warnings.append(f"{path}: included but not found")
            return
        except HostError as exc:
            self.warnings.append(f"{path}: cannot read: {exc.message}")
            return
        self.files.append(path)
        for number, line in _logical_lines(text):
            where = f"{path}:{number}"
            inc = _INCLUDE.match(line)
            if inc:
                target = inc.group(2).strip().strip('"')
                if not target.startswith("/"):
                    target = posixpath.join(posixpath.dirname(path), target)
                if inc.group(1) == "include":
                    self.read(target, depth + 1)
                else:
                    self.read_dir(target, depth + 1)
                continue
            if line.startswith("Defaults") or line.startswith("@"):
                continue
            alias = _ALIAS_LINE.match(line)
            if alias:
                kind = ALIAS_KINDS[alias.group(1)]
                for definition in _ALIAS_SPLIT.split(alias.group(2)):
                    name, eq, value = definition.partition("=")
                    if eq and _ALIAS_NAME.match(name.strip()):
                        self.aliases[kind][name.strip()] = _split_top(value)
                    else:
                        self.warnings.append(f"{where}: cannot parse alias {definition!r}")
                continue
            self.spec(line, where)

    def read_dir(self, directory: str, depth: int) -> None:
        try:
            names = self.host.listdir(directory)
        except FileNotFoundError:
            self.warnings.append(f"{directory}: includedir not found")
            return
        except HostError as exc:
            self.warnings.append(f"{directory}: cannot list: {exc.message}")
            return
        for name in sorted(names):
            if name.endswith("~") or "." in name:
                continue
            self.read(posixpath.join(directory, name), depth)

    def spec(self, line: str, where: str) -> None:
        head, eq, _ = line.partition("=")
        if not eq:
            self.warnings.append(f"{where}: cannot parse {line[:80]!r}")
            return
        head = re.sub(r"\s*,\s*", ",", head.strip())
        parts = head.split()
        if len(parts) != 2:
            self.warnings.append(f"{where}: cannot parse user specification {line[:80]!r}")
            return
        users = _split_top(parts[0])
        rest = parts[1] + "=" + line.partition("=")[2]
        sections = []
        for section in _HOST_SECTION_SPLIT.split(rest):
            hosts, eq, cmnds = section.partition("=")
            if not eq:
                self.warnings.append(f"{where}: cannot parse {section[:80]!r}")
                continue
            sections.append((hosts.strip(), cmnds.strip()))
        self.specs.append(_Spec(users, sections, where))

    # --- expansion ----------------------------------------------------------------
    def expand(self, kind: str, items: list[str], depth: int = 0) -> list[str]:
        out: list[str] = []
        for item in items:
            neg = item.startswith("!")
            name = item[1:].strip() if neg else item
            if _ALIAS_NAME.match(name) and name in self.aliases[kind] and depth < MAX_DEPTH:
                expanded = self.expand(kind, self.aliases[kind][name], depth + 1)
                out.extend(("!" + e if neg and not e.startswith("!") else e) for e in expanded)
            else:
                out.append(item)
        return out


def _user_items(reader: _Reader, items: list[str], userdb, via_alias: str | None = None,
                depth: int = 0) -> tuple[dict[str, str], set[str]]:
    """Logins matched by a user list -> the entry that matched; and negated logins."""
    matched: dict[str, str] = {}
    negated: set[str] = set()
    accounts = userdb.accounts if userdb is not None else {}
    groups = userdb.groups if userdb is not None else {}
    for item in items:
        neg = item.startswith("!")
        name = item[1:].strip() if neg else item.strip()
        target = negated if neg else None
        logins: dict[str, str] = {}
        if name in reader.aliases["user"] and depth < MAX_DEPTH:
            sub, subneg = _user_items(reader, reader.aliases["user"][name], userdb,
                                      via_alias or name, depth + 1)
            logins = {k: v for k, v in sub.items() if k not in subneg}
        elif name == "ALL":
            logins = {a: "ALL" for a in accounts}
        elif name.startswith("%#"):
            try:
                gid = int(name[2:])
            except ValueError:
                gid = None
            logins = _group_logins(accounts, groups, gid=gid, via=name)
        elif name.startswith("%:") or name.startswith("+"):
            reader.warnings.append(f"user list entry {name!r} (non-Unix group or netgroup) "
                                   "cannot be resolved here; its members are not listed")
        elif name.startswith("%"):
            logins = _group_logins(accounts, groups, group=name[1:].strip('"'), via=name)
        elif name.startswith("#"):
            try:
                uid = int(name[1:])
            except ValueError:
                uid = None
            logins = {a.name: name for a in accounts.values() if a.uid == uid}
        else:
            logins = {name.strip('"'): name}
        for login, via in logins.items():
            if target is not None:
                negated.add(login)
            else:
                matched.setdefault(login, via_alias or via)
    return matched, negated


def _group_logins(accounts, groups, group=None, gid=None, via="") -> dict[str, str]:
    if group is not None:
        g = groups.get(group)
        gid = g.gid if g else None
    else:
        g = next((x for x in groups.values() if x.gid == gid), None)
    out = {}
    if g is not None:
        for m in g.members:
            out[m] = via
    if gid is not None:
        for a in accounts.values():
            if a.gid == gid:
                out.setdefault(a.name, via)
    return out


def _command_items(reader: _Reader, text: str) -> list[tuple[str, tuple, str]]:
    """(runas, tags, command) for each command of a Cmnd_Spec_List; runas and
    tags carry over to the following commands, as in sudo."""
    out = []
    runas, tags = "root", ()
    for spec in _split_top(text):
        spec = spec.strip()
        if spec.startswith("("):
            close = spec.find(")")
            runas = _runas(reader, spec[1:close] if close != -1 else spec[1:])
            spec = spec[close + 1:].strip() if close != -1 else ""
            tags = ()
        while True:
            m = _OPTIONS.match(spec)
            if not m:
                break
            spec = spec[m.end():]
        found = list(tags)
        while True:
            m = _TAG.match(spec)
            if not m:
                break
            found = [t for t in found if t != m.group(1) and "NO" + t != m.group(1)
                     and t != "NO" + m.group(1)]
            found.append(m.group(1))
            spec = spec[m.end():]
        tags = tuple(sorted(found))
        command = re.sub(r"\s+", " ", spec.strip())
        if not command:
            continue
        for cmd in reader.expand("cmnd", [command]):
            out.append((runas, tags, re.sub(r"\s+", " ", cmd.strip())))
    return out


def _runas(reader: _Reader, text: str) -> str:
    users, colon, groups = text.partition(":")
    u = ",".join(reader.expand("runas", _split_top(users))) if users.strip() else \
        ("" if colon else "root")
    g = ",".join(reader.expand("runas", _split_top(groups))) if groups.strip() else ""
    if not u:
        u = "root" if not g else ""
    return f"{u}:{g}" if g else u


def read_sudoers(host: Host, userdb=None, path: str = "/etc/sudoers") -> Sudoers:
    """Every sudo right on ``host`` by login (see module doc). Problems (an
    unreadable include, an unparsable line) become warnings, never errors."""
    reader = _Reader(host)
    reader.read(path, required=True)
    result = Sudoers(files=reader.files, warnings=reader.warnings)
    for spec in reader.specs:
        logins, negated = _user_items(reader, spec.users, userdb)
        if not logins:
            continue
        flat: list[SudoItem] = []
        for hosts_text, cmnds in spec.host_sections:
            hosts = ",".join(reader.expand("host", _split_top(hosts_text))) or "ALL"
            for runas, tags, command in _command_items(reader, cmnds):
                flat.append(SudoItem(hosts, runas, tags, command, spec.source))
        for login, via in logins.items():
            if login in negated:
                continue
            bucket = result.items.setdefault(login, [])
            for item in flat:
                bucket.append(SudoItem(item.hosts, item.runas, item.tags, item.command,
                                       item.source, via))
    return result


def parse_rule(rule: str, source: str = "roles.yaml") -> list[SudoItem]:
    """A declared rule ``HOSTS=(RUNAS) COMMANDS`` (roles.yaml) as SudoItems."""
    reader = _Reader(host=None)  # type: ignore[arg-type]
    hosts, eq, cmnds = rule.partition("=")
    if not eq:
        return []
    hosts = ",".join(_split_top(re.sub(r"\s*,\s*", ",", hosts.strip()))) or "ALL"
    return [SudoItem(hosts, runas, tags, command, source)
            for runas, tags, command in _command_items(reader, cmnds)]
