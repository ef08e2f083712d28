"""Pure parsers for the host files the MLPS level-3 checks read: sshd_config
(Include, Match) and ``sshd -T``, PAM stacks (@include, include, substack),
key=value files (login.defs, pwquality.conf, faillock.conf, auditd.conf),
passwd/shadow/group, dpkg status, Debian version order, logrotate.

No I/O: readers are passed in as functions, so every rule is unit tested.
"""
from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable

from ..parsers import Line, logical_lines

Reader = Callable[[str], "str | None"]
Globber = Callable[[str], list]

# --- sshd ---------------------------------------------------------------------------------

# keywords whose every occurrence counts (sshd accumulates them); the rest: first wins
SSHD_MULTI = {"allowusers", "allowgroups", "denyusers", "denygroups", "listenaddress",
              "hostkey", "port", "acceptenv", "subsystem", "hostcertificate", "setenv"}
# sshd's built-in defaults (OpenSSH 9.2) for the keywords the checks read
SSHD_DEFAULTS = {"permitrootlogin": "prohibit-password", "passwordauthentication": "yes",
                 "permitemptypasswords": "no", "clientaliveinterval": "0",
                 "clientalivecountmax": "3", "maxauthtries": "6", "authenticationmethods": "any",
                 "usepam": "no", "kbdinteractiveauthentication": "yes",
                 "pubkeyauthentication": "yes", "x11forwarding": "no", "logingracetime": "120"}
ALIASES = {"without-password": "prohibit-password",
           "challengeresponseauthentication": "kbdinteractiveauthentication"}


@dataclass
class SshdConfig:
    """Effective global sshd settings (lower-case keyword -> [(value, where)])
    and the Match blocks (criteria, settings, where)."""

    values: dict = field(default_factory=dict)
    matches: list = field(default_factory=list)
    source: str = ""

    def get(self, key: str) -> tuple[str, str]:
        """(value, evidence); sshd's default when unset."""
        found = self.values.get(key)
        if found:
            return found[0]
        return SSHD_DEFAULTS.get(key, ""), f"{key} not set in {self.source} (sshd default)"

    def all(self, key: str) -> list[tuple[str, str]]:
        return list(self.values.get(key, []))


def _keyword(text: str) -> tuple[str, str]:
    """'Key value', 'Key=value' or 'Key = value' -> (keyword lower-case, value)."""
    m = re.match(r"\s*([A-Za-z0-9]+)\s*(?:=\s*|\s+)(.*)$", text)
    if not m:
        return text.strip().lower(), ""
    key = m.group(1).lower()
    return ALIASES.get(key, key), m.group(2).strip()


def _normal_value(key: str, value: str) -> str:
    """As sshd -T prints it: keywords' yes/no/... lower-case, aliases resolved."""
    value = value.strip().strip('"')
    if key in SSHD_DEFAULTS:
        value = ALIASES.get(value.lower(), value.lower())
    return value


def parse_sshd_config(read: Reader, glob: Globber, path: str = "/etc/ssh/sshd_config",
                      base: str = "/etc/ssh") -> SshdConfig:
    """sshd_config as sshd reads it: first value wins (except SSHD_MULTI),
    ``Include`` (relative to /etc/ssh, globs sorted) is read in place, and a
    ``Match`` lasts until the next Match or the end of the file that opened it
    (an Include inside a Match block is subject to it), as ``sshd -T`` shows."""
    config = SshdConfig(source=path)
    state = {"match": None}

    def feed(file: str, depth: int) -> None:
        text = read(file)
        if text is None or depth > 16:
            return
        for line in logical_lines(text, file, continuation=False):
            key, value = _keyword(line.text)
            where = f"{line.where()}: {line.text}"
            if key == "include":
                for word in shlex.split(value):
                    pattern = word if word.startswith("/") else f"{base}/{word}"
                    for name in sorted(glob(pattern)):
                        outer = state["match"]
                        feed(name, depth + 1)
                        state["match"] = outer       # a Match ends with its file
                continue
            if key == "match":
                if value.lower() == "all":
                    state["match"] = None
                else:
                    state["match"] = (value, {}, where)
                    config.matches.append(state["match"])
                continue
            target = config.values if state["match"] is None else state["match"][1]
            value = _normal_value(key, value)
            if key in SSHD_MULTI:
                target.setdefault(key, []).append((value, where))
            elif key not in target:
                target[key] = [(value, where)]

    feed(path, 0)
    return config


def parse_sshd_t(text: str, source: str = "sshd -T") -> SshdConfig:
    """``sshd -T`` output: the effective settings, one 'keyword value' a line."""
    config = SshdConfig(source=source)
    for raw in text.splitlines():
        key, _, value = raw.strip().partition(" ")
        if not key:
            continue
        key = ALIASES.get(key.lower(), key.lower())
        value = _normal_value(key, value)
        config.values.setdefault(key, []).append((value, f"{source}: {key} {value}"))
    return config


def match_criteria(criteria: str) -> dict[str, list[str]]:
    """'User a,b Address 10.0.0.0/8' -> {'user': ['a','b'], 'address': ['10.0.0.0/8']}."""
    words = criteria.split()
    out: dict[str, list[str]] = {}
    for key, value in zip(words[0::2], words[1::2]):
        out.setdefault(key.lower(), []).extend(v for v in value.split(",") if v)
    return out


def methods_need_two(value: str) -> bool:
    """Every alternative list of AuthenticationMethods names two or more methods."""
    if not value or value == "any":
        return False
    return all(len({m.split(":")[0] for m in alt.split(",") if m}) >= 2
               for alt in value.split())


# --- PAM --------------------------------------------------------------------------------------

PAM_TYPES = ("auth", "account", "password", "session")


@dataclass
class PamEntry:
    type: str
    control: str
    module: str          # base name, e.g. pam_faillock.so
    args: list[str]
    line: Line
    optional: bool = False      # '-type': skipped silently when the module is missing

    def where(self) -> str:
        return f"{self.line.where()}: {self.line.text}"

    def arg(self, name: str) -> str | None:
        """``name=value`` argument's value, '' for a bare flag, None when absent."""
        for a in self.args:
            key, eq, value = a.partition("=")
            if key == name:
                return value if eq else ""
        return None


def _pam_fields(text: str) -> list[str]:
    """Split a PAM line on blanks; a bracketed control '[a=b c=d]' is one field."""
    m = re.match(r"(\S+)\s+(\[[^\]]*\]|\S+)\s*(.*)$", text.strip())
    if not m:
        return text.split()
    return [m.group(1), m.group(2)] + m.group(3).split()


def pam_stack(read: Reader, service: str, types: tuple = PAM_TYPES,
              dirs: tuple = ("/etc/pam.d", "/usr/lib/pam.d")) -> tuple[list[PamEntry], list[str]]:
    """The entries of ``service`` in the order PAM runs them, ``@include``,
    ``include`` and ``substack`` followed (a substack's entries are listed in
    place); a missing service file falls back to 'other'. Also the files read."""
    files: list[str] = []

    def load(name: str) -> tuple[str | None, str]:
        for d in dirs:
            path = f"{d}/{name}"
            text = read(path)
            if text is not None:
                return text, path
        return None, f"{dirs[0]}/{name}"

    def walk(name: str, only: tuple, depth: int) -> list[PamEntry]:
        text, path = load(name)
        if text is None or depth > 16:
            return []
        files.append(path)
        out = []
        for line in logical_lines(text, path):
            fields = _pam_fields(line.text)
            if fields[0] == "@include" and len(fields) > 1:
                out += walk(fields[1], only, depth + 1)
                continue
            if len(fields) < 3:
                continue
            kind, optional = fields[0].lstrip("-").lower(), fields[0].startswith("-")
            if kind not in only:
                continue
            control = fields[1]
            if control in ("include", "substack"):
                out += walk(fields[2], (kind,), depth + 1)
                continue
            module = fields[2].rsplit("/", 1)[-1]
            out.append(PamEntry(kind, control, module, fields[3:], line, optional))
        return out

    entries = walk(service, types, 0)
    if not files or files[0].rsplit("/", 1)[-1] != service:
        entries = walk("other", types, 0) if not entries else entries
    return entries, files


def key_values(text: str, file: str, sep: str = "=") -> dict[str, tuple[str, Line]]:
    """``key = value`` (or, with sep=' ', ``KEY value``) lines; later wins."""
    out = {}
    for line in logical_lines(text, file, continuation=False):
        if sep == " ":
            key, _, value = line.text.partition(" ")
            if not value and "\t" in key:
                key, _, value = key.partition("\t")
        else:
            key, eq, value = line.text.partition(sep)
            if not eq:
                out[key.strip()] = ("", line)      # a bare flag (faillock.conf: silent)
                continue
        out[key.strip()] = (value.strip().strip('"'), line)
    return out


# --- accounts ---------------------------------------------------------------------------------

@dataclass
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    line: Line


@dataclass
class Shadow:
    name: str
    password: str
    lastchg: str
    min: str
    max: str
    line: Line

    @property
    def locked(self) -> bool:
        return self.password.startswith(("!", "*"))


def parse_passwd(text: str, file: str = "/etc/passwd") -> list[Account]:
    out = []
    for line in logical_lines(text, file, continuation=False):
        f = line.text.split(":")
        if len(f) >= 7 and f[2].lstrip("-").isdigit():
            out.append(Account(f[0], int(f[2]), int(f[3]) if f[3].isdigit() else -1, f[5],
                               f[6], line))
    return out


def parse_shadow(text: str, file: str = "/etc/shadow") -> list[Shadow]:
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        f = raw.split(":")
        if len(f) >= 5 and f[0] and not f[0].startswith("#"):
            # the hash is never part of the evidence
            shown = ":".join([f[0], _hash_shape(f[1])] + f[2:])
            out.append(Shadow(f[0], f[1], f[2], f[3], f[4], Line(file, number, shown)))
    return out


def _hash_shape(value: str) -> str:
    if value == "":
        return "(empty)"
    if value.startswith(("!", "*")):
        return value[:1] + ("(hash)" if len(value) > 2 else value[1:])
    return "(hash)"


def parse_group(text: str, file: str = "/etc/group") -> dict[str, tuple[int, list[str], Line]]:
    out = {}
    for line in logical_lines(text, file, continuation=False):
        f = line.text.split(":")
        if len(f) >= 4 and f[2].isdigit():
            out[f[0]] = (int(f[2]), [m for m in f[3].split(",") if m], line)
    return out


NOLOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false",
                  "/bin/sync", "/usr/bin/nologin")


def can_login(account: Account) -> bool:
    return account.shell not in NOLOGIN_SHELLS and bool(account.shell)


# --- packages ------------------------------------------------------------------------------------

def parse_dpkg_status(text: str) -> dict[str, str]:
    """Installed packages (Status '... installed') -> version."""
    out = {}
    for stanza in text.split("\n\n"):
        fields = {}
        for raw in stanza.splitlines():
            if raw[:1] not in (" ", "\t") and ":" in raw:
                key, _, value = raw.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            arch = fields.get("Architecture", "")
            name = fields["Package"]
            out[name if arch in ("all", "") or name in out else name] = fields.get("Version", "")
    return out


def parse_packages_list(text: str) -> dict[str, str]:
    """An apt Packages list (or its Package:/Version: lines): the highest version."""
    out: dict[str, str] = {}
    name = None
    for raw in text.splitlines():
        if raw.startswith("Package:"):
            name = raw[8:].strip()
        elif raw.startswith("Version:") and name:
            version = raw[8:].strip()
            if name not in out or compare_versions(version, out[name]) > 0:
                out[name] = version
    return out


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternating non-digit and digit runs."""
    i = j = 0
    while i < len(a) or j < len(b):
        diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return ac - bc
            i += 1 if i < len(a) and not a[i].isdigit() else 0
            j += 1 if j < len(b) and not b[j].isdigit() else 0
            if i >= len(a) and j >= len(b):
                break
            if (i >= len(a) or a[i].isdigit()) and (j >= len(b) or b[j].isdigit()):
                break
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not diff:
                diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if diff:
            return diff
    return 0


def compare_versions(a: str, b: str) -> int:
    """Debian version order (epoch:upstream-revision), like dpkg --compare-versions."""
    def split(v):
        epoch, _, rest = v.partition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch or 0), upstream, revision
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


# --- logrotate -------------------------------------------------------------------------------------

PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "yearly": 365}


@dataclass
class Rotation:
    paths: list[str]
    days: int | None        # how long the rotated copies cover; None: unknown (size-based)
    where: str


def parse_logrotate(text: str, file: str, defaults: dict | None = None) -> list[Rotation]:
    """Stanzas 'path ... { rotate N; daily|weekly|monthly|yearly }'; directives
    outside a stanza change ``defaults`` (logrotate.conf's globals)."""
    defaults = defaults if defaults is not None else {"rotate": 0, "period": None}
    out, stanza, paths, start = [], None, [], None

    def directive(target: dict, words: list[str]) -> None:
        if len(words) > 1 and words[0] == "rotate" and words[1].isdigit():
            target["rotate"] = int(words[1])
        elif words and words[0] in PERIOD_DAYS:
            target["period"] = words[0]

    for line in logical_lines(text, file, continuation=False):
        words = line.text.replace("{", " { ").replace("}", " } ").split()
        if stanza is None:
            if "{" in words:
                cut = words.index("{")
                paths += words[:cut]
                stanza, start = dict(defaults), start or line
                words = words[cut + 1:]
            elif words and (words[0].startswith("/") or "*" in words[0]):
                paths += words
                start = start or line
                continue
            else:
                directive(defaults, words)
                continue
        if "}" in words:
            directive(stanza, words[:words.index("}")])
            days = stanza["rotate"] * PERIOD_DAYS[stanza["period"]] if stanza["period"] else None
            out.append(Rotation(paths, days, f"{start.where()}: {' '.join(paths)}"))
            stanza, paths, start = None, [], None
        else:
            directive(stanza, words)
    return out


def covers(rotation: Rotation, path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in rotation.paths)
