"""Pure parsers for the host files the MLPS level-3 checks read: sshd_config
(Include, Match) and ``sshd -T``, PAM stacks (@include, include, substack),
key=value files (login.defs, pwquality.conf, faillock.conf, auditd.conf),
passwd/shadow/group, dpkg status, Debian version order, logrotate.

No I/O: readers are passed in as functions, so every rule is unit tested.
"""
from __future__ import annotations

import fnmatch
import re
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
                 "pubkeyauthentication": "yes", "x11forwarding": "no", "logingracetime": "120",
                 "hostbasedauthentication": "no", "gssapiauthentication": "no",
                 # as `sshd -T` prints them on OpenSSH 9.2 (Debian 12) with nothing set
                 "ciphers": "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,"
                            "aes128-gcm@openssh.com,aes256-gcm@openssh.com",
                 "macs": "umac-64-etm@openssh.com,umac-128-etm@openssh.com,"
                         "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,"
                         "hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,"
                         "hmac-sha2-256,hmac-sha2-512,hmac-sha1",
                 "kexalgorithms": "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,"
                                  "curve25519-sha256,curve25519-sha256@libssh.org,"
                                  "ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,"
                                  "diffie-hellman-group-exchange-sha256,"
                                  "diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,"
                                  "diffie-hellman-group14-sha256"}
# values sshd reads as a time ("5m", "1h30m") and prints in seconds
SSHD_TIMES = {"clientaliveinterval", "logingracetime"}
# algorithm lists a value may edit: +append, -remove (patterns), ^prepend
SSHD_ALGORITHMS = {"ciphers", "macs", "kexalgorithms"}
# keywords printed lower-case by sshd -T (yes/no/...); others keep their case
_SSHD_WORDS = {"permitrootlogin", "passwordauthentication", "permitemptypasswords",
               "usepam", "kbdinteractiveauthentication", "pubkeyauthentication",
               "x11forwarding", "authenticationmethods", "hostbasedauthentication",
               "gssapiauthentication"}
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

    def candidates(self, key: str) -> list[tuple[str, str]]:
        """Every value ``key`` can take for some connection: the global one and
        each Match block's (a block's value overrides the global one for the
        connections it matches, wherever it stands). A check that holds for all
        of them holds whoever connects from wherever."""
        found = [self.get(key)]
        for criteria, settings, where in self.matches:
            for value, vwhere in settings.get(key, [])[:1]:
                found.append((value, f"{vwhere} (in 'Match {criteria}', {where.split(': ')[0]})"))
        return found

    def all_candidates(self, key: str) -> list[list[tuple[str, str]]]:
        """For a keyword sshd accumulates (AllowUsers): the global list and each
        Match block's list, which replaces it for the connections it matches."""
        lists = [self.all(key)]
        for criteria, settings, where in self.matches:
            if key in settings:
                lists.append([(v, f"{w} (in 'Match {criteria}')") for v, w in settings[key]])
        return lists


def split_args(text: str) -> list[str]:
    """A config line's arguments as sshd splits them (OpenSSH argv_split):
    blanks separate; single and double quotes group; a backslash escapes a
    quote, a backslash or (unquoted) a blank; a word that starts with '#'
    ends the line. So 'ClientAliveCountMax 0 # never' is 0, "'100'" is 100."""
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t\r\n\f":
            i += 1
            continue
        if text[i] == "#":
            break
        word, quote = [], ""
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n and (text[i + 1] in "'\"\\" or (not quote and text[i + 1] == " ")):
                word.append(text[i + 1])
                i += 2
                continue
            if not quote and c in " \t\r\n\f":
                break
            if not quote and c in "'\"":
                quote = c
            elif quote and c == quote:
                quote = ""
            else:
                word.append(c)
            i += 1
        args.append("".join(word))
    return args


def seconds(text: str) -> int | None:
    """sshd's time format (convtime): '300', '5m', '1h30m' -> seconds; None if invalid."""
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)([a-zA-Z]?)", text)
    if not text or "".join(n + u for n, u in parts) != text:
        return None
    try:
        return sum(int(n) * units[u.lower()] for n, u in parts)
    except KeyError:
        return None


def algorithms(key: str, value: str) -> str:
    """An algorithm list as sshd resolves it: '+x' appends to the default,
    '-pat' removes matching defaults, '^x' puts x first."""
    default = SSHD_DEFAULTS[key].split(",")
    if value[:1] == "+":
        return ",".join(default + [a for a in value[1:].split(",") if a not in default])
    if value[:1] == "-":
        pats = value[1:].split(",")
        return ",".join(a for a in default if not any(fnmatch.fnmatchcase(a, p) for p in pats))
    if value[:1] == "^":
        first = value[1:].split(",")
        return ",".join(first + [a for a in default if a not in first])
    return value


def _keyword(text: str) -> tuple[str, str]:
    """'Key value', 'Key=value' or 'Key = value' -> (keyword lower-case, value)."""
    m = re.match(r"\s*([A-Za-z0-9]+)\s*(?:=\s*|\s+)(.*)$", text)
    if not m:
        return text.strip().lower(), ""
    key = m.group(1).lower()
    return ALIASES.get(key, key), m.group(2).strip()


def _normal_value(key: str, value: str) -> str:
    """As sshd -T prints it: keywords' yes/no/... lower-case, aliases resolved,
    times in seconds, algorithm edits applied."""
    value = value.strip()
    if key in _SSHD_WORDS:
        value = ALIASES.get(value.lower(), value.lower())
    elif key in SSHD_TIMES and seconds(value) is not None:
        value = str(seconds(value))
    elif key in SSHD_ALGORITHMS:
        value = algorithms(key, value)
    return value


def parse_sshd_config(read: Reader, glob: Globber, path: str = "/etc/ssh/sshd_config",
                      base: str = "/etc/ssh") -> SshdConfig:
    """sshd_config as sshd reads it: first value wins (except SSHD_MULTI),
    arguments split as sshd splits them (quotes, trailing comments),
    ``Include`` (relative to /etc/ssh, globs sorted) is read in place, and a
    ``Match`` lasts until the next Match or the end of the file that opened it
    (an Include inside a Match block is subject to it), as ``sshd -T`` shows.
    ``Match all`` lines count as global ones (plain ``sshd -T`` prints them)
    and also as a block, since for a connection they override earlier global
    values as any matching block does."""
    config = SshdConfig(source=path)
    state: dict = {"match": None, "all": None}

    def feed(file: str, depth: int) -> None:
        text = read(file)
        if text is None or depth > 16:
            return
        for line in logical_lines(text, file, continuation=False):
            key, rest = _keyword(line.text)
            args = split_args(rest)
            value = " ".join(args)
            where = f"{line.where()}: {line.text}"
            if key == "include":
                for word in args:
                    pattern = word if word.startswith("/") else f"{base}/{word}"
                    for name in sorted(glob(pattern)):
                        outer = dict(state)
                        feed(name, depth + 1)
                        state.update(outer)         # a Match ends with its file
                continue
            if key == "match":
                block = (value, {}, where)
                config.matches.append(block)
                everyone = bool(args) and args[0].lower() == "all"
                state["match"], state["all"] = (None, block) if everyone else (block, None)
                continue
            value = _normal_value(key, value)
            targets = [config.values] if state["match"] is None else [state["match"][1]]
            if state["all"] is not None:
                targets.append(state["all"][1])
            for target in targets:
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


# methods that usually both ask for the same PAM password: together they are one factor
_PASSWORD_METHODS = {"password", "keyboard-interactive"}


def methods_need_two(value: str, otp: bool = False) -> bool:
    """Every alternative list of AuthenticationMethods asks for two different
    factors: two distinct methods, and not only password + keyboard-interactive
    (one password asked twice) unless PAM asks for a one-time code (``otp``)."""
    if not value or value == "any":
        return False
    for alt in value.split():
        methods = {m.split(":")[0] for m in alt.split(",") if m}
        if len(methods) < 2 or (methods <= _PASSWORD_METHODS and not otp):
            return False
    return True


def _pattern_list(name: str, patterns: list[str]) -> int:
    """sshd's match_pattern_list: -1 a negated pattern matches, 1 a pattern
    matches, 0 none does."""
    found = 0
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(name, pattern[1:] if negated else pattern):
            if negated:
                return -1
            found = 1
    return found


def match_applies(criteria: str, user: str | None, groups: set[str]) -> bool | None:
    """Does ``Match criteria`` apply to a login of ``user`` (member of
    ``groups``)? True for every connection, False never, None when it depends
    on the connection (Address, Host, LocalPort, ...). ``user`` None: a member
    of ``groups`` whose name is not known, so User criteria depend too."""
    words = criteria.split()
    if words and words[0].lower() == "all":
        return True
    surely: bool | None = True
    for key, value in zip(words[0::2], words[1::2]):
        patterns = [p for p in value.split(",") if p]
        key = key.lower()
        if key == "user" and user is not None:
            met: bool | None = _pattern_list(user, patterns) == 1
        elif key == "group":
            results = [_pattern_list(g, patterns) for g in groups]
            met = -1 not in results and 1 in results
        else:
            met = None
        if met is False:
            return False
        if met is None:
            surely = None
    return surely


def values_for(config: SshdConfig, key: str, user: str | None, groups: set[str]
               ) -> list[tuple[str, str]]:
    """The values of ``key`` a login of ``user`` can get: each Match block that
    may apply and sets it, in order, until one that surely applies (sshd takes
    the first matching block's value over the global one); the global value
    when none surely applies."""
    found = []
    for criteria, settings, where in config.matches:
        got = settings.get(key)
        applies = match_applies(criteria, user, groups) if got else False
        if applies is False:
            continue
        found.append((got[0][0], f"{got[0][1]} (in 'Match {criteria}')"))
        if applies:
            return found
    return found + [config.get(key)]


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
