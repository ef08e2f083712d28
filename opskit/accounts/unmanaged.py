"""Access a person has on a host that opskit did not grant: drift for 'users plan'
and 'users apply' to remove (R-ACC-4 least privilege, R-ACC-1 only opskit grants).

Read in the same round trip as the rest of the plan (``gather_commands``):

* **key files opskit does not manage**: every ``AuthorizedKeysFile`` of the
  person's account as sshd reads it (``keyhunt``: ``sshd -T``; on a rooted
  target the OpenSSH default, ``authorized_keys`` and ``authorized_keys2``)
  other than the managed ``~/.ssh/authorized_keys``, when it holds a key: moved
  whole to the root-only ``/var/lib/opskit/frozen/<login>/`` as a freeze does;
* **keys in the managed file that are not the roster's** (``foreign_keys``):
  the file is rewritten anyway; the removed lines are kept as evidence there;
* **sudoers entries granting rights beyond the declared roles**
  (``sudo_drift``; who a rule lets in is decided by opskit.hosts.sudoers, through
  ``sudo_grants``: login, ``#uid``, groups, ``User_Alias``): a file sudo reads whose every user entry is the
  person's (or another planned person's) is moved aside to the evidence
  directory; otherwise the person is taken out of the rule or alias as the
  freeze does (``visudo -cf`` of the edited file). Either way the sudoers
  tree as it will be afterwards passes a strict ``visudo -c -s -f`` first
  (no alias left dangling), or nothing changes. Rules repeating a declared rule, and ``%group`` rules for groups a
  role grants (or that the plan removes) are not drift. Anything else
  (``ALL``, a shared group, an alias that would be left empty) cannot be
  removed safely: a *manual* finding.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from . import keyhunt, sudo_grants
from .target import EVIDENCE_DIR, Target, evidence_lines, move_aside_lines, q, rewrite_lines

KEYS = "unmanaged:keys"
SUDOERS = "unmanaged:sudoers"
ETC_SUDOERS = "/etc/sudoers"
_NO_RIGHTS = re.compile(r"^(Cmnd_Alias|Cmd_Alias|Host_Alias|Runas_Alias)\s|^Defaults[:>@!]")


def gather_commands(root: str = "", sshd_config: str | None = None) -> dict[str, str]:
    """Shell commands (key -> line) reading every key file and sudoers file of a host."""
    return {KEYS: keyhunt.gather_script(root, sshd_config),
            SUDOERS: sudo_grants.gather_script(root)}


@dataclass
class Seen:
    """A host's key files (as sshd reads them) and sudoers files (as sudo reads them)."""

    keys: keyhunt.KeyScan = field(default_factory=keyhunt.KeyScan)
    sudoers: dict[str, str] = field(default_factory=dict)


def parse(got: dict, root: str = "") -> Seen | None:
    """The ``gather_commands`` output (None when they were not run)."""
    if KEYS not in got:
        return None
    text = (got.get(KEYS) or b"").decode("utf-8", "replace")
    sudo = (got.get(SUDOERS) or b"").decode("utf-8", "replace")
    return Seen(keyhunt.parse(text), sudo_grants.split_files(sudo, root))


@dataclass
class Drift:
    """One piece of unmanaged access: a step to run, or (``manual``) a finding."""

    person: str
    action: str               # unmanaged-keys | unmanaged-sudoers
    detail: str
    lines: list[str] = field(default_factory=list)
    manual: bool = False


def managed_keys_path(home: str) -> str:
    return home.rstrip("/") + "/.ssh/authorized_keys"


def _keys_in(text: str) -> list[str]:
    return [line for line in text.splitlines() if keyhunt.blob(line)]


def fingerprints(lines: list[str]) -> str:
    return ", ".join(keyhunt.fingerprint(keyhunt.blob(x)[0]) for x in lines)


def foreign_keys(seen: Seen, login: str, home: str, roster_keys: list[str]) -> list[str]:
    """Key lines in ``login``'s managed authorized_keys that are not the roster's keys."""
    declared = {b[0] for b in map(keyhunt.blob, roster_keys) if b}
    managed = managed_keys_path(home)
    for f in seen.keys.files:
        if f.account == login and f.path == managed and not f.principals:
            return [x for x in _keys_in(f.text) if keyhunt.blob(x)[0] not in declared]
    return []


def save_lines(target: Target, login: str, lines: list[str], saved_as: str) -> list[str]:
    """sh keeping ``lines`` as evidence in ``login``'s root-only directory (0600)."""
    evidence, mk = evidence_lines(target, login)
    return [*mk, f"(umask 077; printf %s {q(''.join(x + chr(10) for x in lines))} "
                 f"> {q(evidence + '/' + saved_as)})"]


def key_file_drift(target: Target, seen: Seen, person: str, login: str, home: str,
                   stamp: str) -> list[Drift]:
    """The person's key files other than the managed one that hold keys: move them away."""
    managed = managed_keys_path(home)
    out = []
    for f in keyhunt.own_files(seen.keys, login):
        keys = _keys_in(f.text)
        if f.path == managed or not keys:
            continue
        out.append(Drift(person, "unmanaged-keys",
                         f"move {f.path} ({len(keys)} key(s) opskit does not manage: "
                         f"{fingerprints(keys)}) to {EVIDENCE_DIR}/{login}/",
                         move_aside_lines(target, login, f.path,
                                          f"keys-{stamp}-{os.path.basename(f.path)}")))
    return out


@dataclass
class Holder:
    """A planned person as the sudoers drift needs them."""

    person: str
    who: sudo_grants.Who
    dropin: str                   # their opskit drop-in (managed; not drift)
    rules: list[str]              # declared sudo rules
    groups: set[str]              # groups whose %rules are not drift (declared or removed)


def _candidates(seen: Seen, holder: Holder, drifts: list[Drift]) -> list:
    """The holder's grants beyond their roles that can be removed; the others as manual."""
    texts = {p: t for p, t in seen.sudoers.items() if p != holder.dropin}
    out = []
    for g in sudo_grants.scan(texts, holder.who).grants:
        rule = sudo_grants.rule_of(g.statement)
        if g.kind == "spec" and (g.how == "alias" or (rule and rule[1] in holder.rules)):
            continue        # via an alias: its member entry is the grant handled
        if g.how == "supplementary" and g.token[1:] in holder.groups:
            continue
        if g.action == "remove" or (g.kind == "alias" and g.how == "name"):
            out.append((holder, g))
        else:
            drifts.append(Drift(holder.person, "unmanaged-sudoers",
                                f"sudo right beyond their roles: {g.describe()}; opskit cannot "
                                "remove it safely (edit by hand)", manual=True))
    return out


def _wholly(path: str, text: str, tokens: set[str]) -> bool:
    """Whether every user entry in the file is one of ``tokens`` (or an alias of only
    them), so moving the file aside takes nothing from anyone else."""
    aliases: set[str] = set()
    for st in sudo_grants.logical_lines(path, text):
        if _NO_RIGHTS.match(st.text):
            continue
        if st.text.startswith("User_Alias"):
            for name, members in re.findall(r"([A-Z][A-Z0-9_]*)\s*=\s*([^:]*)",
                                            st.text[len("User_Alias"):]):
                if not all(m.strip() in tokens for m in members.split(",") if m.strip()):
                    return False
                aliases.add(name)
            continue
        rule = sudo_grants.rule_of(st.text)
        if not rule or not all(u in tokens or u in aliases for u in rule[0]):
            return False
    return True


def _tree_check(seen: Seen, moved: set[str], edited: dict[str, str]) -> list[str]:
    """sh: ``visudo -c -s -f`` of every sudoers file as it will be after the change
    (one file, in reading order, includes dropped), stopping the step before anything
    changes. Strict (-s): an alias left referenced but undefined is an error."""
    parts = [edited.get(p, t) for p, t in seen.sudoers.items() if p not in moved]
    tree = "".join(x + "\n" for part in parts for x in part.splitlines()
                   if not re.match(r"\s*[#@]include", x))
    return ['t=$(mktemp)', f'printf %s {q(tree)} > "$t"',
            'if ! out=$(visudo -c -s -f "$t" 2>&1); then rm -f "$t"; echo "visudo -csf rejected '
            'the sudoers left after the change; nothing changed: $out"; exit 1; fi',
            'rm -f "$t"']


def sudo_drift(target: Target, seen: Seen, holders: list[Holder], stamp: str) -> list[Drift]:
    """Steps (one per sudoers file) taking out rights beyond the holders' roles."""
    drifts: list[Drift] = []
    by_file: dict[str, list] = {}
    for holder in holders:
        for h, g in _candidates(seen, holder, drifts):
            by_file.setdefault(g.file, []).append((h, g))
    moved, edited = set(), {}
    for path, hits in by_file.items():
        text = seen.sudoers[path]
        if path != ETC_SUDOERS and _wholly(path, text, {g.token for _, g in hits}):
            moved.add(path)
            continue
        for h, g in hits:
            if g.action != "remove":
                drifts.append(Drift(h.person, "unmanaged-sudoers",
                                    f"sudo right beyond their roles: {g.describe()}; taking "
                                    "them out would leave the alias empty (edit by hand)",
                                    manual=True))
        edited[path] = sudo_grants.edit(text, [g for _, g in hits],
                                        f"opskit apply {stamp}: not in the roster (R-ACC-4)")
    check = _tree_check(seen, moved, edited) if by_file else []
    for path, hits in by_file.items():
        people = list(dict.fromkeys(h.person for h, _ in hits))
        what = "; ".join(g.describe() for _, g in hits)
        login = hits[0][0].who.login
        if path in moved:
            drifts.append(Drift(",".join(people), "unmanaged-sudoers",
                                f"move {path} aside to {EVIDENCE_DIR}/{login}/ (grants "
                                f"beyond the roster: {what})",
                                check + move_aside_lines(target, login, path,
                                                         f"sudoers-{stamp}-"
                                                         f"{os.path.basename(path)}")))
        elif edited[path] != seen.sudoers[path].rstrip("\n") + "\n":
            drifts.append(Drift(",".join(people), "unmanaged-sudoers",
                                f"take {', '.join(sorted({h.who.login for h, _ in hits}))} "
                                f"out of {path} (grants beyond the roster: {what})",
                                check + rewrite_lines(target, path, edited[path],
                                                      check="visudo -cf")))
    return drifts
