"""What one user may run through sudo on one host, decided as sudo decides it (R-ACC-4).

    evaluate(tree_files, user, host_facts) -> list[SudoRight]

``tree_files`` maps paths to ``SudoFile`` (or plain text) and starts at
/etc/sudoers (opskit.hosts.sudoers.parse.load_tree reads one from a Host);
``user`` is a ``SudoUser`` (name, uid, gid, groups; a bare login name works
when groups do not matter); ``host_facts`` a ``HostIdentity`` (hostname, FQDN,
interface addresses as ``addr/prefix``, the netgroups the host is in, or
None when unknown). Each ``SudoRight`` says what may be run, as whom, whether
a password is asked, and the file:line granting it; rights whose host list
does not match this host are left out (``evaluate(..., elsewhere=True)``
returns them apart, marked ``here=False``).

sudo's semantics, as its policy plugin implements them:

* every list -- users, hosts, run-as, commands, and aliases inside them -- is
  read to its end and the *last* matching entry decides; ``!`` inverts what
  the entry (or alias) decided, so ``!`` on an alias holding ``!/cmd`` allows
  /cmd again;
* over the whole file the last matching command decides, with its tags:
  ``(root) NOPASSWD: /a`` followed later by ``ALL`` asks for a password for /a;
* host names without a '.' are compared with the short host name, names with
  one with the FQDN (shell wildcards allowed, case ignored); ``a.b.c.d`` and
  ``a.b.c.d/nn`` against the interface addresses and networks; ``+netgroup``
  against the netgroups the host reports;
* a password is asked unless a tag (NOPASSWD, carried over from earlier
  commands) or ``Defaults`` (generic, ``@host``, ``:user``, ``>runas``,
  ``!cmnd``, applied in that order, later ones winning) turn ``authenticate``
  off, the user is in ``exempt_group`` (also set by ``>runas`` or ``!cmnd``
  Defaults), or the user is root or runs as themselves;
* user and group names compare ignoring case unless ``Defaults
  !case_insensitive_user`` / ``!case_insensitive_group`` (sudo's defaults);
* where a rule's run-as list (ALL, several users, a Runas_Alias) holds users a
  ``Defaults>`` entry treats apart, ``evaluate`` gives them rights of their own
  (``(root) NOPASSWD: ALL`` and ``(ALL,!root) ALL``); where a command pattern
  (ALL, ``/usr/bin/*``) holds a command a ``Defaults!`` entry frees from the
  password, that command comes as a right of its own with no password: the
  view may say more than sudo allows, never less.

``check(parsed, user, host, runas, command)`` answers one concrete question
(may USER run COMMAND as RUNAS here, and with a password?) -- what the
differential tests put to the real sudo.
"""
from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from typing import Iterable

from .parse import (CmndSpec, DefaultsEntry, Member, ParsedTree, Tree, parse_tree,
                            tag_names)

ALLOW, DENY = True, False
UNSPEC = None
_MAX_ALIAS_DEPTH = 128


@dataclass(frozen=True)
class SudoUser:
    """The invoking user as sudo sees them."""

    name: str
    uid: int | None = None
    gid: int | None = None
    groups: frozenset = frozenset()          # group names, the primary one included
    gids: frozenset = frozenset()
    netgroups: frozenset | None = None       # None: unknown

    @classmethod
    def from_userdb(cls, db, login: str) -> "SudoUser":
        """From an opskit.hosts.userdb.UserDB (primary and supplementary groups)."""
        acct = db.accounts.get(login)
        if acct is None:
            return cls(login)
        names = set(acct.groups)
        if acct.primary_group:
            names.add(acct.primary_group)
        gids = {g.gid for g in db.groups.values() if g.name in names} | {acct.gid}
        return cls(login, acct.uid, acct.gid, frozenset(names), frozenset(gids))


@dataclass(frozen=True)
class HostIdentity:
    """The host sudo runs on: names, interface addresses ('10.0.0.5/24'), netgroups."""

    hostname: str
    fqdn: str = ""
    addresses: tuple = ()
    netgroups: frozenset | None = None       # None: unknown (a +netgroup never matches)

    @property
    def short(self) -> str:
        return self.hostname.split(".", 1)[0]

    @property
    def long(self) -> str:
        return self.fqdn or self.hostname

    def as_dict(self) -> dict:
        return {"hostname": self.hostname, "fqdn": self.fqdn,
                "addresses": list(self.addresses),
                "netgroups": None if self.netgroups is None else sorted(self.netgroups)}

    @classmethod
    def from_dict(cls, d: dict) -> "HostIdentity":
        ng = d.get("netgroups")
        return cls(d.get("hostname", ""), d.get("fqdn", ""), tuple(d.get("addresses", ())),
                   None if ng is None else frozenset(ng))


@dataclass(frozen=True)
class SudoRight:
    """One command spec that applies to the user: what, as whom, with a password or not."""

    runas: str                  # 'root', 'ALL', 'ALL:ALL', 'postgres', ':wheel'
    command: str                # 'ALL', '/usr/bin/psql', '/bin/systemctl restart *'
    nopasswd: bool              # no password asked (a tag, Defaults, exempt_group, root)
    source: str                 # file:line
    negated: bool = False       # '!cmd': takes the command away
    tags: tuple = ()            # the tags as written/carried over, e.g. ('NOPASSWD',)
    hosts: str = "ALL"          # the host list as written
    via: str = ""               # the user-list entry that matched
    here: bool = True           # False: the rule names other hosts only
    auth_reason: str = ""       # why no password: 'NOPASSWD tag', 'Defaults:ann !authenticate'

    def text(self) -> str:
        tags = "".join(f"{t}: " for t in self.tags)
        return f"{self.hosts}=({self.runas}) {tags}{'!' if self.negated else ''}{self.command}"


@dataclass
class Decision:
    """sudo's answer to one question."""

    allowed: bool
    nopasswd: bool = False
    source: str = ""
    reason: str = ""


# --- matching ---------------------------------------------------------------------

class Matcher:
    """Matches one user on one host against a parsed tree (see module doc)."""

    def __init__(self, parsed: ParsedTree, user: SudoUser, host: HostIdentity):
        self.p = parsed
        self.user = user
        self.host = host
        self.runas_default = "root"
        # sudo compares user and group names ignoring case unless told otherwise
        self.fold_user = self.fold_group = True
        for d in parsed.defaults:
            if d.kind == "" or (d.kind == "@" and self.host_matches(d.binding) is ALLOW):
                for name, op, value in d.params:
                    if name == "runas_default" and op == "=" and d.kind == "":
                        self.runas_default = str(value)
                    elif name == "case_insensitive_user" and op == "bool":
                        self.fold_user = bool(value)
                    elif name == "case_insensitive_group" and op == "bool":
                        self.fold_group = bool(value)

    def same_user(self, a: str, b: str) -> bool:
        """User names equal as sudo compares them (case_insensitive_user)."""
        return a.lower() == b.lower() if self.fold_user else a == b

    def in_groups(self, group: str, groups) -> bool:
        """``group`` among ``groups`` as sudo compares them (case_insensitive_group)."""
        if not self.fold_group:
            return group in groups
        return group.lower() in {g.lower() for g in groups}

    def _list(self, members: Iterable[Member], kind: str, one, depth: int = 0):
        """Last match wins; '!' inverts what the entry decided (aliases recursively)."""
        result = UNSPEC
        for m in members:
            if m.name == "ALL":
                r = ALLOW
            elif kind and m.name in self.p.aliases[kind] and depth < _MAX_ALIAS_DEPTH:
                r = self._list(self.p.aliases[kind][m.name], kind, one, depth + 1)
            else:
                r = one(m.name)
            if r is UNSPEC:
                continue
            result = (not r) if m.negated else r
        return result

    # users ------------------------------------------------------------------------
    def user_matches(self, members, name: str | None = None) -> bool | None:
        return self._list(members, "user", lambda n: self._one_user(n, name))

    def _one_user(self, n: str, name: str | None = None):
        u = self.user if name is None else SudoUser(name)
        if n.startswith("%:"):
            return UNSPEC                                   # non-Unix group: unknown here
        if n.startswith("%#"):
            return ALLOW if _int(n[2:]) in u.gids else UNSPEC
        if n.startswith("%"):
            return ALLOW if self.in_groups(n[1:], u.groups) else UNSPEC
        if n.startswith("+"):
            return ALLOW if u.netgroups and n[1:] in u.netgroups else UNSPEC
        if n.startswith("#"):
            return ALLOW if u.uid is not None and _int(n[1:]) == u.uid else UNSPEC
        return ALLOW if self.same_user(n, u.name) else UNSPEC

    # hosts ------------------------------------------------------------------------
    def host_matches(self, members) -> bool | None:
        return self._list(members, "host", self._one_host)

    def _one_host(self, n: str):
        h = self.host
        if n.startswith("+"):
            return ALLOW if h.netgroups and n[1:] in h.netgroups else UNSPEC
        if _looks_like_address(n):
            return ALLOW if _address_matches(n, h.addresses) else UNSPEC
        target = h.long if "." in n else h.short
        if any(c in n for c in "*?["):
            return ALLOW if fnmatch.fnmatch(target.lower(), n.lower()) else UNSPEC
        return ALLOW if target.lower() == n.lower() else UNSPEC

    # run-as -----------------------------------------------------------------------
    def runas_matches(self, cs: CmndSpec, runas: str, group: str | None = None) -> bool:
        """Whether ``runas`` (a login; ``group`` a group for -g) is allowed by ``cs``."""
        users, groups = cs.runas_users, cs.runas_groups
        if users is None and groups is None:
            return runas == self.runas_default and group is None
        if users is None:
            u_ok = runas == self.user.name          # only a group given: run as oneself
        else:
            u_ok = self._list(users, "runas", lambda n: self._one_runas(n, runas)) is ALLOW
        if group is None:
            return u_ok
        g_ok = groups is not None and self._list(
            groups, "runas", lambda n: ALLOW if self.in_groups(n, (group,)) else UNSPEC)
        return u_ok and g_ok is ALLOW

    def _one_runas(self, n: str, runas: str):
        if n.startswith("%"):
            return UNSPEC if runas != self.user.name or \
                not self.in_groups(n[1:], self.user.groups) else ALLOW
        return ALLOW if self.same_user(n, runas) else UNSPEC

    # commands ---------------------------------------------------------------------
    def command_matches(self, member: Member, command: str) -> bool | None:
        return self._list([member], "cmnd", lambda n: _one_command(n, command))

    # Defaults ---------------------------------------------------------------------
    def defaults_apply(self, d: DefaultsEntry, runas: str | None, command: str | None) -> bool:
        if d.kind == "":
            return True
        if d.kind == ":":
            return self.user_matches(d.binding) is ALLOW
        if d.kind == "@":
            return self.host_matches(d.binding) is ALLOW
        if d.kind == ">":
            return runas is not None and self._list(
                d.binding, "runas", lambda n: self._one_runas(n, runas)) is ALLOW
        return command is not None and self._list(
            d.binding, "cmnd", lambda n: _one_command(n, command)) is ALLOW

    def authenticate(self, runas: str | None, command: str | None) -> tuple[bool, str]:
        """``authenticate`` after the Defaults that apply, and the entry that set it last."""
        value, why = True, ""
        # generic, @host, :user and >runas Defaults in one pass in file order, then !cmnd
        # (what the real sudo does: tests/integration/perms/test_sudo_eval.py)
        for kinds in (("", "@", ":", ">"), ("!",)):
            for d in self.p.defaults:
                if d.kind not in kinds or not self.defaults_apply(d, runas, command):
                    continue
                for name, op, v in d.params:
                    if name == "authenticate" and op == "bool":
                        value = bool(v)
                        why = _defaults_text(d, name, v)
        return value, why

    def exempt(self, runas: str | None = None, command: str | None = None) -> str:
        """The exempt_group the user is in ('' if none), with the Defaults that apply
        when running ``command`` as ``runas`` (in ``authenticate``'s order)."""
        group = ""
        for kinds in (("", "@", ":", ">"), ("!",)):
            for d in self.p.defaults:
                if d.kind not in kinds or not self.defaults_apply(d, runas, command):
                    continue
                for name, op, v in d.params:
                    if name == "exempt_group":
                        group = "" if op == "bool" else str(v).lstrip("%")
        return group if group and self.in_groups(group, self.user.groups) else ""


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _defaults_text(d: DefaultsEntry, name: str, v) -> str:
    binding = ",".join(("!" if m.negated else "") + m.name for m in d.binding)
    return f"Defaults{d.kind}{binding} {'' if v else '!'}{name} ({d.source})"


def _looks_like_address(n: str) -> bool:
    try:
        ipaddress.ip_network(n, strict=False)
        return True
    except ValueError:
        return False


def _address_matches(pattern: str, addresses: Iterable[str]) -> bool:
    """sudo: an address equal to an interface's, or the network of one; with a
    mask, an interface inside that network."""
    try:
        net = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    for a in addresses:
        try:
            iface = ipaddress.ip_interface(a)
        except ValueError:
            continue
        if iface.version != net.version:
            continue
        if "/" in pattern:
            if iface.ip in net:
                return True
        elif iface.ip == net.network_address or iface.network.network_address == \
                net.network_address:
            return True
    return False


def _one_command(pattern: str, command: str):
    """A sudoers command (path, path with args, '""' for no args, a directory,
    wildcards) against a command line as typed (absolute path and arguments)."""
    path, _, args = pattern.partition(" ")
    want_path, _, want_args = command.partition(" ")
    if path.endswith("/"):
        return ALLOW if want_path.rsplit("/", 1)[0] + "/" == path else UNSPEC
    if any(c in path for c in "*?["):
        if not fnmatch.fnmatchcase(want_path, path) or \
                want_path.count("/") != path.count("/"):
            return UNSPEC
    elif path != want_path:
        return UNSPEC
    if not args:
        return ALLOW
    args = _unescape_args(args)
    if args == '""':
        return ALLOW if not want_args else UNSPEC
    if any(c in args for c in "*?["):
        return ALLOW if fnmatch.fnmatchcase(want_args, args) else UNSPEC
    return ALLOW if want_args == args else UNSPEC


def _unescape_args(args: str) -> str:
    out, i = [], 0
    while i < len(args):
        if args[i] == "\\" and i + 1 < len(args) and args[i + 1] in ",:=\\":
            out.append(args[i + 1])
            i += 2
        else:
            out.append(args[i])
            i += 1
    return "".join(out)


# --- the answers ------------------------------------------------------------------

def _parsed(tree, host: HostIdentity) -> ParsedTree:
    return tree if isinstance(tree, ParsedTree) else parse_tree(tree, host.hostname)


def _user(user) -> SudoUser:
    return user if isinstance(user, SudoUser) else SudoUser(str(user))


def _password_free(m: Matcher, cs: CmndSpec, runas: str | None,
                   command: str | None) -> tuple[bool, str]:
    """Whether running ``cs`` asks no password, and why (see module doc)."""
    if m.user.uid == 0:
        return True, "the user is root"
    group = m.exempt(runas, command)
    if group:
        return True, f"exempt_group={group}"
    if "NOPASSWD" in cs.tags:
        return cs.tags["NOPASSWD"], "NOPASSWD tag" if cs.tags["NOPASSWD"] else ""
    value, why = m.authenticate(runas, command)
    return (not value), (why if not value else "")


def evaluate(tree_files: Tree | ParsedTree, user: SudoUser | str, host_facts: HostIdentity,
             *, elsewhere: bool = False) -> list[SudoRight]:
    """The command specs that apply to ``user`` on ``host_facts`` in file order (see module
    doc); with ``elsewhere``, also those whose host list names other hosts (``here=False``)."""
    host = host_facts
    m = Matcher(_parsed(tree_files, host), _user(user), host)
    out: list[SudoRight] = []
    for spec in m.p.specs:
        via = _via(m, spec.users)
        if via is None:
            continue
        for hosts, cmnds in spec.sections:
            here = m.host_matches(hosts) is ALLOW
            if not here and not elsewhere:
                continue
            for cs in cmnds:
                for negated, command in _expand(m, "cmnd", cs.command):
                    for runas, cmd, free, why in _password_parts(m, cs, command, negated):
                        out.append(SudoRight(runas, cmd, free, cs.source, negated,
                                             tag_names(cs.tags),
                                             _expanded_text(m, "host", hosts), via, here, why))
    return out


_OTHER = "\0another user"       # a run-as user no Defaults>runas entry names


def _password_parts(m: Matcher, cs: CmndSpec, command: str, negated: bool):
    """(runas text, command, no password, why) for one command of ``cs``: one part
    when a password is asked (or not) alike for every run-as user and command it
    covers. Otherwise a part of its own for each run-as user a ``Defaults>`` entry
    treats apart (the rest keeps the run-as list with those users negated), and
    for each command a ``Defaults!`` entry frees from the password inside a
    command pattern (ALL, /usr/bin/*): the view never says a password is asked
    where sudo asks none (R-ACC-4)."""
    runas = _runas_text(m, cs)
    cmd = command if command.startswith("/") else None
    single = None if any(c in runas for c in ",:!") or runas == "ALL" else runas
    if negated:                                 # takes a right away: no password to tell
        return [(runas, command, *_password_free(m, cs, single, cmd))]
    if single:
        parts = [(runas, runas, *_password_free(m, cs, runas, cmd))]
    else:
        parts = _runas_parts(m, cs, runas, cmd)
    out = []
    for text, target, free, why in parts:
        out.append((text, command, free, why))
        if free:
            continue
        for other in _defaults_members(m, "!", "cmnd"):
            if other != command and m.command_matches(Member(command), other) is ALLOW:
                o_free, o_why = _password_free(m, cs, target, other)
                if o_free:
                    out.append((text, other, True, o_why))
    return out


def _runas_parts(m: Matcher, cs: CmndSpec, runas: str, cmd: str | None):
    """(runas text, a run-as user standing for it, no password, why) for a run-as list
    (ALL, several users, an alias): the users ``Defaults>`` names apart when their
    answer differs from the others'."""
    users, colon, groups = runas.partition(":")
    rest = _password_free(m, cs, _OTHER, cmd)
    named = [(t, *_password_free(m, cs, t, cmd)) for t in _defaults_members(m, ">", "runas")
             if m.runas_matches(cs, t)]
    members = [x for u in (cs.runas_users or ()) for x in _expand(m, "runas", u)]
    plain = all(not neg and name[:1] not in "%#+" and name != "ALL" for neg, name in members)
    has_rest = m.runas_matches(cs, _OTHER) or not plain or \
        any(not any(m.same_user(name, t) for t, _f, _w in named) for _neg, name in members)
    apart = [(t, f, w) for t, f, w in named if not has_rest or f != rest[0]]
    if not apart or (not has_rest and len({f for _t, f, _w in apart}) == 1):
        free, why = apart[0][1:] if apart else rest
        return [(runas, apart[0][0] if apart else _OTHER, free, why)]
    # a user named apart as the rule spells them ('root' for Defaults>ROOT)
    out = [(next((n for _neg, n in members if m.same_user(n, t)), t) + colon + groups, t, f, w)
           for t, f, w in apart]
    if has_rest:
        if plain:
            users = ",".join(name for _neg, name in members
                             if not any(m.same_user(name, t) for t, _f, _w in apart))
        else:
            users += "".join(f",!{t}" for t, _f, _w in apart)
        out.append((users + colon + groups, _OTHER, *rest))
    return out


def _defaults_members(m: Matcher, kind: str, alias_kind: str) -> list[str]:
    """The names (aliases expanded, negated ones and ALL left out) that Defaults entries
    of ``kind`` ('>' run-as, '!' command) are bound to, once each in file order."""
    out: list[str] = []
    for d in m.p.defaults:
        if d.kind != kind:
            continue
        for member in d.binding:
            for neg, name in _expand(m, alias_kind, member):
                # run-as: user names only (%group, #uid and +netgroup are not matched here)
                if not neg and name != "ALL" and name not in out and \
                        not (kind == ">" and name[:1] in "%#+"):
                    out.append(name)
    return out


def _via(m: Matcher, users) -> str | None:
    """The user-list entry that let the user in (last match), or None if they are not in."""
    if m.user_matches(users) is not ALLOW:
        return None
    for member in reversed(users):
        if m.user_matches([member]) is not UNSPEC:
            return ("!" if member.negated else "") + member.name
    return ""


def _expand(m: Matcher, kind: str, member: Member, negated: bool = False, depth: int = 0):
    """(negated, name) for a list member, aliases of ``kind`` expanded and negations
    multiplied through (``!ALIAS`` holding ``!/cmd`` gives /cmd), as sudo -l shows them."""
    neg = negated != member.negated
    alias = m.p.aliases[kind].get(member.name)
    if alias is None or depth >= _MAX_ALIAS_DEPTH:
        yield neg, member.name
        return
    for sub in alias:
        yield from _expand(m, kind, sub, neg, depth + 1)


def _expanded_text(m: Matcher, kind: str, members) -> str:
    return ",".join(("!" if n else "") + name for member in members
                    for n, name in _expand(m, kind, member))


def _runas_text(m: Matcher, cs: CmndSpec) -> str:
    """The run-as spec with Runas_Aliases expanded: 'root', 'postgres,pgadmin', 'ALL:ALL'."""
    users = _expanded_text(m, "runas", cs.runas_users) if cs.runas_users else ""
    if cs.runas_groups:
        return f"{users}:{_expanded_text(m, 'runas', cs.runas_groups)}"
    return users or m.runas_default


def check(tree_files: Tree | ParsedTree, user: SudoUser | str, host_facts: HostIdentity,
          runas: str, command: str) -> Decision:
    """Whether ``user`` may run ``command`` (absolute path and arguments) as ``runas``
    here, and with or without a password: the last matching command spec decides."""
    m = Matcher(_parsed(tree_files, host_facts), _user(user), host_facts)
    found: tuple[bool, CmndSpec] | None = None
    for spec in m.p.specs:
        if m.user_matches(spec.users) is not ALLOW:
            continue
        for hosts, cmnds in spec.sections:
            if m.host_matches(hosts) is not ALLOW:
                continue
            for cs in cmnds:
                if not m.runas_matches(cs, runas):
                    continue
                r = m.command_matches(cs.command, command)
                if r is not UNSPEC:
                    found = (r, cs)
    if found is None or found[0] is not ALLOW:
        return Decision(False, source=found[1].source if found else "")
    cs = found[1]
    free, why = _password_free(m, cs, runas, command)
    if not free and runas == m.user.name:
        free, why = True, "runs as themselves"
    return Decision(True, free, cs.source, why)


__all__ = ["SudoUser", "HostIdentity", "SudoRight", "Decision", "evaluate", "check",
           "Matcher"]

