"""Sudo rights as the snapshot keeps and the analysis compares them (R-ACC-4).

A host's sudo rights are decided by opskit.hosts.sudoers.evaluate (sudo's own
semantics: host lists, last match, tags carried over, Defaults); this module
holds the flat form the snapshot stores -- one ``SudoItem`` per (hosts, runas,
tags, command) with the file:line it came from and the user-list entry that
matched (``via``) -- and ``items_from_rights`` turning the evaluator's answer
into it: NOPASSWD in ``tags`` means *no password is asked*, whether a tag,
a ``Defaults ... !authenticate`` or ``exempt_group`` is the reason
(``reason``). ``parse_rule`` reads a declared role's rule (``HOSTS=(RUNAS)
COMMANDS``, roles.yaml) into the same items, so declared and actual compare
item by item.
"""
from __future__ import annotations

from dataclasses import dataclass

from opskit.hosts.sudoers.parse import parse_userspec, tag_names

# tags that only restrict: an actual rule carrying them is not "more" than the declared one
_RESTRICTING = {"PASSWD", "NOEXEC", "NOSETENV", "LOG_INPUT", "LOG_OUTPUT", "MAIL",
                "NOFOLLOW", "INTERCEPT"}

@dataclass(frozen=True)
class SudoItem:
    """One thing one login may do through sudo."""

    hosts: str              # 'ALL' or comma-joined host names (aliases expanded)
    runas: str              # 'root', 'ALL', 'ALL:ALL', 'postgres', 'root:wheel', ...
    tags: tuple = ()        # sorted tag names, e.g. ('NOPASSWD',)
    command: str = "ALL"    # 'ALL', a path with arguments, or '!path' (a negation)
    source: str = ""        # file:line
    via: str = ""           # the user-list entry that matched: 'zhang.wei', '%sudo', 'ADMINS'
    reason: str = ""        # why no password is asked, when NOPASSWD is in tags

    def text(self) -> str:
        """``HOSTS=(RUNAS) TAGS: COMMAND``: the normal form compared and reported."""
        tags = "".join(f"{t}: " for t in self.tags)
        return f"{self.hosts}=({self.runas}) {tags}{self.command}"

    def as_dict(self) -> dict:
        d = {"rule": self.text(), "hosts": self.hosts, "runas": self.runas,
             "tags": list(self.tags), "command": self.command, "source": self.source,
             "via": self.via}
        if self.reason:
            d["reason"] = self.reason
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SudoItem":
        return cls(d["hosts"], d["runas"], tuple(d.get("tags", ())), d["command"],
                   d.get("source", ""), d.get("via", ""), d.get("reason", ""))

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


def items_from_rights(rights) -> list[SudoItem]:
    """opskit.hosts.sudoers.evaluate SudoRights as SudoItems: NOPASSWD in the tags when no
    password is asked (for whatever reason), PASSWD dropped (it is the default)."""
    out = []
    for r in rights:
        tags = [t for t in r.tags if t not in ("NOPASSWD", "PASSWD")]
        if r.nopasswd and not r.negated:
            tags.append("NOPASSWD")
        reason = r.auth_reason if r.nopasswd and not r.negated else ""
        out.append(SudoItem(r.hosts, r.runas, tuple(sorted(tags)),
                            ("!" if r.negated else "") + r.command, r.source, r.via, reason))
    return out


def parse_rule(rule: str, source: str = "roles.yaml") -> list[SudoItem]:
    """A declared rule ``HOSTS=(RUNAS) COMMANDS`` (roles.yaml) as SudoItems."""
    try:
        spec = parse_userspec("declared " + rule, source)
    except (ValueError, IndexError):
        return []
    out = []
    for hosts, cmnds in spec.sections:
        host_text = ",".join(("!" if m.negated else "") + m.name for m in hosts) or "ALL"
        for cs in cmnds:
            out.append(SudoItem(host_text, cs.runas_text(), tag_names(cs.tags),
                                ("!" if cs.command.negated else "") + cs.command.name, source))
    return out
