"""sudoers files as sudo parses them: a tree of files in, entries out (R-ACC-4).

``parse_tree(files, hostname)`` starts at /etc/sudoers in ``files`` (path ->
``SudoFile``, or plain text taken as a root-owned 0440 file) and returns the
``Defaults`` entries, aliases and user specifications in the order sudo reads
them, each with the file:line it comes from. What sudo itself does is followed:

* ``@include``/``#include`` and ``@includedir``/``#includedir``, paths quoted or
  with backslash-escaped spaces, ``%h`` for the short host name, relative paths
  against the including file's directory; in an includedir, names ending in
  '~' or containing '.' are skipped and sub-directories silently ignored;
* a file sudo refuses (not owned by root, world-writable, group-writable with
  a group other than root) is skipped with the warning sudo prints;
* a comment never continues onto the next line, even ending in '\\';
  ``#1004`` where a user name is expected is a uid, not a comment;
* the tags and run-as list of a command carry over to the commands after it
  in the same list, also across a new run-as spec (sudo's grammar).
* a command may be preceded by digests (``sha256:<hex or base64>``, several
  separated by ','; before any '!'): kept in ``Member.digests``, the command
  is the path after them (opskit does not hash the file, so it reports the
  right as if the digest matched: it may over-report, never under-report).

``load_tree(host, hostname)`` reads such a tree from a Host (with owners and
modes) for ``parse_tree``. Matching is opskit.hosts.sudoers.evaluate's job.
"""
from __future__ import annotations

import posixpath
import re
import stat as _stat
from dataclasses import dataclass, field
from typing import Mapping, Union

from opskit.hosts.base import Host, HostError

ROOT = "/etc/sudoers"
MAX_DEPTH = 128
ALIAS_KINDS = {"User_Alias": "user", "Runas_Alias": "runas", "Host_Alias": "host",
               "Cmnd_Alias": "cmnd", "Cmd_Alias": "cmnd"}
TAGS = ("NOPASSWD", "PASSWD", "NOEXEC", "EXEC", "SETENV", "NOSETENV", "LOG_INPUT",
        "NOLOG_INPUT", "LOG_OUTPUT", "NOLOG_OUTPUT", "MAIL", "NOMAIL", "FOLLOW", "NOFOLLOW",
        "INTERCEPT", "NOINTERCEPT")
OPTIONS = ("ROLE", "TYPE", "CWD", "CHROOT", "TIMEOUT", "NOTBEFORE", "NOTAFTER",
           "APPARMOR_PROFILE", "PRIVS", "LIMITPRIVS")
_INCLUDE = re.compile(r"^[#@](include|includedir)[ \t]+(.+)$")
_DEFAULTS = re.compile(r"^Defaults([:@!>]?)")
_UID_START = re.compile(r"#-?\d")
_SPECIAL = ",=:()!"
DIGESTS = ("sha224", "sha256", "sha384", "sha512")
_DIGEST = re.compile(r"^(sha224|sha256|sha384|sha512):")


@dataclass(frozen=True)
class SudoFile:
    """One file of a sudoers tree with what sudo checks before reading it."""

    text: str
    uid: int = 0
    gid: int = 0
    mode: int = 0o440


@dataclass(frozen=True)
class Member:
    """One list item: a name, alias, ALL, %group, #uid, address, command; maybe negated."""

    name: str
    negated: bool = False
    digests: tuple[str, ...] = ()    # a command's 'sha256:...' prefixes (not verified here)


@dataclass
class CmndSpec:
    """One command of a user specification, tags and run-as already carried over."""

    runas_users: tuple[Member, ...] | None
    runas_groups: tuple[Member, ...] | None
    tags: dict[str, bool]            # 'NOPASSWD' -> True (NOPASSWD) / False (PASSWD), ...
    command: Member
    source: str

    def runas_text(self, runas_default: str = "root") -> str:
        """``root``, ``ALL:ALL``, ``postgres,!root``: the run-as spec as sudo -l shows it."""
        def text(ms):
            return ",".join(("!" if m.negated else "") + m.name for m in ms)
        users = text(self.runas_users) if self.runas_users else ""
        if self.runas_groups:
            return f"{users}:{text(self.runas_groups)}"
        return users or runas_default


@dataclass
class UserSpec:
    users: tuple[Member, ...]
    sections: list[tuple[tuple[Member, ...], list[CmndSpec]]]   # (host list, commands)
    source: str


@dataclass
class DefaultsEntry:
    kind: str                        # '' generic, ':' user, '@' host, '!' command, '>' runas
    binding: tuple[Member, ...]
    params: list[tuple[str, str, str | bool]]   # (name, '=' '+=' '-=' or 'bool', value)
    source: str


@dataclass
class ParsedTree:
    """Everything sudo read, in its order, with the files and what it warned about."""

    defaults: list[DefaultsEntry] = field(default_factory=list)
    aliases: dict[str, dict[str, list[Member]]] = field(
        default_factory=lambda: {k: {} for k in ("user", "runas", "host", "cmnd")})
    specs: list[UserSpec] = field(default_factory=list)
    alias_sources: dict[str, str] = field(default_factory=dict)  # 'user:OPS' -> file:line
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


Tree = Mapping[str, Union[SudoFile, str, bytes]]


# --- lines and tokens -------------------------------------------------------------

def _comment_at(line: str) -> int:
    """Where a comment starts on a physical line, or -1. '#' followed by digits
    after a separator is a uid (sudo: 'in the context of a user name')."""
    if _INCLUDE.match(line.lstrip()):
        return -1
    quoted, i = False, 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "#" and not quoted:
            prev = line[:i].rstrip()[-1:]
            if _UID_START.match(line, i) and prev in ("", ",", "(", "!", ":", "=", "%"):
                i += 1                      # '#1004' where a name is expected: a uid
                continue
            return i
        i += 1
    return -1


def statements(text: str):
    """(first line, last line, text) of each statement, 1-based: continuations joined and
    comments removed; a comment ends its line even when it ends in a backslash."""
    pending, start = "", 0
    number = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        cut = _comment_at(raw)
        line = raw[:cut] if cut >= 0 else raw.rstrip()
        if cut < 0 and line.endswith("\\") and not line.endswith("\\\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield start, number, line
    if pending.strip():
        yield start, number, pending.strip()


def logical_lines(text: str):
    """(first line number, text) of each statement (``statements`` without the last)."""
    for first, _last, line in statements(text):
        yield first, line


def tokens(text: str) -> list[str]:
    """Words and the one-character tokens , = : ( ) ! ; quotes removed, backslash
    escapes kept in words (so an escaped ',' in a command's argument stays); a command
    digest ``sha256:<hex or base64>`` is one word."""
    out: list[str] = []
    cur: list[str] = []
    i = 0

    def flush():
        if cur:
            out.append("".join(cur))
            cur.clear()

    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
        elif c == '"':
            end = text.find('"', i + 1)
            end = len(text) if end < 0 else end
            quoted = text[i + 1:end]
            # '""' is sudo's "no arguments"; other quotes only protect blanks
            cur.append(quoted.replace(" ", "\\ ") if quoted else '""')
            i = end + 1
        elif c.isspace():
            flush()
            out.append(" ")
            i += 1
        elif c == ":" and "".join(cur) in DIGESTS:
            end = i + 1                     # base64 may hold '=', '/', '+'; never ',' or blanks
            while end < len(text) and not text[end].isspace() and text[end] != ",":
                end += 1
            cur.append(text[i:end])
            flush()
            i = end
        elif c in _SPECIAL and not (c == "!" and cur) and not (c == ":" and _ipv6_ish(cur, text, i)):
            flush()
            out.append(c)
            i += 1
        else:
            cur.append(c)
            i += 1
    flush()
    # drop blanks except between words (they separate a command from its arguments)
    return [t for k, t in enumerate(out) if t != " " or (0 < k < len(out) - 1)]


def _ipv6_ish(cur: list[str], text: str, i: int) -> bool:
    """A ':' inside an IPv6 address or a '%:group' name, not a separator."""
    word = "".join(cur)
    if word == "%":
        return True
    nxt = text[i + 1:i + 2]
    return bool(word) and all(ch in "0123456789abcdefABCDEF:" for ch in word) and \
        (nxt == ":" or word.endswith(":") or word.count(":") >= 1) and nxt not in (" ", "")


def unescape(word: str) -> str:
    return re.sub(r"\\(.)", r"\1", word)


class _Tokens:
    def __init__(self, toks: list[str]):
        self.t = toks
        self.i = 0

    def peek(self, skip_blank: bool = True) -> str | None:
        j = self.i
        while skip_blank and j < len(self.t) and self.t[j] == " ":
            j += 1
        return self.t[j] if j < len(self.t) else None

    def take(self) -> str | None:
        while self.i < len(self.t) and self.t[self.i] == " ":
            self.i += 1
        if self.i >= len(self.t):
            return None
        self.i += 1
        return self.t[self.i - 1]

    def expect(self, tok: str) -> None:
        got = self.take()
        if got != tok:
            raise ValueError(f"expected '{tok}', found {got!r}")

    def done(self) -> bool:
        return self.peek() is None

    def peek_second(self) -> str | None:
        """The token after the next one, blanks skipped."""
        rest = [t for t in self.t[self.i:] if t != " "]
        return rest[1] if len(rest) > 1 else None


def _member_list(ts: _Tokens, stop: tuple[str, ...] | None) -> tuple[Member, ...]:
    """name, !name, ... up to a token of ``stop`` (not consumed); ``stop`` None: up to
    the first member not followed by ',' (a user list ends at the blank before hosts)."""
    out = []
    while True:
        neg = False
        while ts.peek() == "!":
            ts.take()
            neg = not neg
        word = ts.take()
        if word is None or word in _SPECIAL:
            raise ValueError(f"expected a name, found {word!r}")
        out.append(Member(unescape(word), neg))
        nxt = ts.peek()
        if nxt == ",":
            ts.take()
            continue
        if stop is None or nxt is None or nxt in stop:
            return tuple(out)
        raise ValueError(f"unexpected {nxt!r} after {word!r}")


# --- the statements ---------------------------------------------------------------

def parse_defaults(line: str, source: str) -> DefaultsEntry:
    """``Defaults[:users|@hosts|!cmnds|>runas] a, !b, c=d, e+=f``."""
    m = _DEFAULTS.match(line)
    kind, rest = m.group(1), line[m.end():]
    binding: tuple[Member, ...] = ()
    if kind:
        # the binding ends at the first blank that is not next to a ','
        bm = re.match(r"\s*((?:\\.|[^\s,])+(?:\s*,\s*(?:\\.|[^\s,])+)*)(?:\s+|$)", rest)
        if not bm:
            raise ValueError("Defaults binding without parameters")
        binding = tuple(_negatable(p) for p in _split_unescaped(bm.group(1), ","))
        rest = rest[bm.end():]
    params = []
    for part in _split_unescaped(rest, ","):
        part = part.strip()
        if not part:
            continue
        pm = re.match(r"^(!*)\s*([A-Za-z_][A-Za-z0-9_]*)\s*(\+=|-=|=)?\s*(.*)$", part)
        if not pm:
            raise ValueError(f"bad Defaults parameter {part!r}")
        bang, name, op, value = pm.groups()
        if op:
            params.append((name, op, unescape(value.strip().strip('"'))))
        else:
            params.append((name, "bool", len(bang) % 2 == 0))
    return DefaultsEntry(kind, binding, params, source)


def _negatable(text: str) -> Member:
    text = text.strip()
    bang = len(text) - len(text.lstrip("!"))
    return Member(unescape(text[bang:].strip()), bang % 2 == 1)


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, i, quoted = [], [], 0, False
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def parse_alias(kind: str, text: str, source: str) -> list[tuple[str, list[Member]]]:
    """``NAME = a, b : NAME2 = c`` of one alias kind."""
    ts = _Tokens(tokens(text))
    out = []
    while True:
        name = ts.take()
        if name is None or not re.match(r"^[A-Z][A-Z0-9_]*$", name) or name == "ALL":
            raise ValueError(f"bad alias name {name!r}")
        ts.expect("=")
        if kind == "cmnd":
            members = [c for c in _commands(ts)]
        else:
            members = list(_member_list(ts, (":",)))
        out.append((name, members))
        if ts.done():
            return out
        ts.expect(":")


def _command(ts: _Tokens) -> Member:
    """A command with its arguments, up to an unescaped ',' or ':'; before it, maybe
    digests (``sha224:x, sha256:y /path``, sudoers(5) Digest_List), kept apart."""
    digests = []
    while _DIGEST.match(ts.peek() or ""):
        digests.append(ts.take())
        if ts.peek() == "," and _DIGEST.match(ts.peek_second() or ""):
            ts.take()
    neg = False
    while ts.peek() == "!":
        ts.take()
        neg = not neg
    if _DIGEST.match(ts.peek() or ""):
        raise ValueError("a digest goes before the '!', not after it")
    words = []
    while True:
        tok = ts.peek(skip_blank=False)
        if tok is None or tok in (",", ":", "=", "(", ")"):
            if tok in ("=", "(", ")") and words:
                words.append(ts.take())      # part of an argument (sudo wants it escaped)
                continue
            break
        ts.i += 1
        words.append(tok)
    text = re.sub(r"\s+", " ", "".join(words).strip())
    if not text:
        raise ValueError("expected a command")
    return Member(text, neg, tuple(digests))


def _commands(ts: _Tokens):
    while True:
        yield _command(ts)
        if ts.peek() != ",":
            return
        ts.take()


def parse_userspec(text: str, source: str) -> UserSpec:
    """``users hosts = (runas) TAGS: cmnd, ... : hosts = ...`` with tags and run-as
    carried over inside each command list (as sudo's grammar does)."""
    ts = _Tokens(tokens(text))
    users = _member_list(ts, None)
    sections = []
    while True:
        hosts = _member_list(ts, ("=",))
        ts.expect("=")
        sections.append((hosts, _cmndspec_list(ts, source)))
        if ts.done():
            return UserSpec(users, sections, source)
        ts.expect(":")


def _cmndspec_list(ts: _Tokens, source: str) -> list[CmndSpec]:
    out: list[CmndSpec] = []
    runas_u: tuple[Member, ...] | None = None
    runas_g: tuple[Member, ...] | None = None
    tags: dict[str, bool] = {}
    while True:
        if ts.peek() == "(":
            ts.take()
            runas_u, runas_g = _runas(ts)
        while True:                                  # options and tags
            word = ts.peek()
            if word in OPTIONS:
                ts.take()
                ts.expect("=")
                ts.take()
                continue
            if word in TAGS and _next_is_colon(ts):
                ts.take()
                ts.expect(":")
                tags = {**tags, **_tag(word)}
                continue
            break
        out.append(CmndSpec(runas_u, runas_g, dict(tags), _command(ts), source))
        if ts.peek() != ",":
            return out
        ts.take()


def _tag(word: str) -> dict[str, bool]:
    """NOPASSWD -> {'NOPASSWD': True}, PASSWD -> {'NOPASSWD': False}, NOEXEC -> {'EXEC': False}."""
    if word in ("NOPASSWD", "PASSWD"):
        return {"NOPASSWD": word == "NOPASSWD"}
    if word.startswith("NO") and word[2:] in TAGS:
        return {word[2:]: False}
    return {word: True}


def tag_names(tags: dict[str, bool]) -> tuple[str, ...]:
    """{'NOPASSWD': True, 'EXEC': False} -> ('NOEXEC', 'NOPASSWD'): tags as written."""
    return tuple(sorted(("NOPASSWD" if v else "PASSWD") if k == "NOPASSWD" else
                        (k if v else "NO" + k) for k, v in tags.items()))


def _next_is_colon(ts: _Tokens) -> bool:
    j = ts.i
    while j < len(ts.t) and ts.t[j] == " ":
        j += 1
    k = j + 1
    while k < len(ts.t) and ts.t[k] == " ":
        k += 1
    return k < len(ts.t) and ts.t[k] == ":"


def _runas(ts: _Tokens) -> tuple[tuple[Member, ...] | None, tuple[Member, ...] | None]:
    users = groups = None
    if ts.peek() not in (":", ")"):
        users = _member_list(ts, (":", ")"))
    if ts.peek() == ":":
        ts.take()
        if ts.peek() != ")":
            groups = _member_list(ts, (")",))
    ts.expect(")")
    if users is None and groups is None:
        return None, None
    return users, groups


# --- the tree ---------------------------------------------------------------------

def _as_file(entry) -> SudoFile:
    if isinstance(entry, SudoFile):
        return entry
    if isinstance(entry, bytes):
        entry = entry.decode("utf-8", "replace")
    return SudoFile(entry)


def refusal(path: str, f: SudoFile) -> str | None:
    """Why sudo would not read ``f`` (its own wording), or None."""
    if f.uid != 0:
        return f"{path} is owned by uid {f.uid}, should be 0"
    if f.mode & 0o002:
        return f"{path} is world writable"
    if f.mode & 0o020 and f.gid != 0:
        return f"{path} is owned by gid {f.gid}, should be 0"
    return None


def include_target(raw: str, including: str, short_host: str) -> str:
    """An include path as sudo resolves it: quotes or '\\ ' escapes, %h, relative."""
    raw = raw.strip()
    if raw.startswith('"') and raw.endswith('"') and len(raw) > 1:
        raw = raw[1:-1]
    else:
        raw = re.sub(r"\s.*$", "", re.sub(r"\\ ", "\0", raw)).replace("\0", " ")
    raw = raw.replace("\\\\", "\\")
    raw = re.sub(r"%(.)", lambda m: short_host if m.group(1) == "h" else
                 ("%" if m.group(1) == "%" else m.group(0)), raw)
    if not raw.startswith("/"):
        raw = posixpath.join(posixpath.dirname(including), raw)
    return posixpath.normpath(raw)


def dir_entries(files: Tree, directory: str) -> list[str]:
    """The files sudo reads from an includedir, in its order."""
    directory = directory.rstrip("/") or "/"
    names = {p[len(directory) + 1:] for p in files
             if posixpath.dirname(p) == directory}
    return [posixpath.join(directory, n) for n in sorted(names)
            if n and not n.endswith("~") and "." not in n]


class _Parser:
    def __init__(self, files: Tree, short_host: str):
        self.files = files
        self.short = short_host
        self.out = ParsedTree()
        self.stack: list[str] = []

    def read(self, path: str, where: str | None = None) -> None:
        if len(self.stack) >= MAX_DEPTH or path in self.stack:
            self.out.warnings.append(f"{where or path}: {path} includes itself or nests "
                                     f"deeper than {MAX_DEPTH}; not read again")
            return
        entry = self.files.get(path)
        if entry is None:
            self.out.warnings.append(f"unable to open {path}: No such file or directory"
                                     if where else f"{path}: not found (no sudo rules)")
            return
        f = _as_file(entry)
        refused = refusal(path, f)
        if refused:
            self.out.warnings.append(f"{refused}: sudo does not read it")
            return
        self.out.files.append(path)
        self.stack.append(path)
        try:
            for number, line in logical_lines(f.text):
                self.statement(line, f"{path}:{number}", path)
        finally:
            self.stack.pop()

    def statement(self, line: str, where: str, path: str) -> None:
        inc = _INCLUDE.match(line)
        if inc:
            target = include_target(inc.group(2), path, self.short)
            if inc.group(1) == "include":
                self.read(target, where)
            else:
                for p in dir_entries(self.files, target):
                    self.read(p, where)
            return
        try:
            if _DEFAULTS.match(line):
                self.out.defaults.append(parse_defaults(line, where))
                return
            first = line.split(None, 1)
            if first[0] in ALIAS_KINDS and len(first) == 2:
                kind = ALIAS_KINDS[first[0]]
                for name, members in parse_alias(kind, first[1], where):
                    self.out.aliases[kind][name] = members
                    self.out.alias_sources[f"{kind}:{name}"] = where
                return
            self.out.specs.append(parse_userspec(line, where))
        except (ValueError, IndexError) as exc:
            self.out.warnings.append(f"{where}: syntax error, line ignored ({exc}): "
                                     f"{line[:80]!r}")


def parse_tree(files: Tree, hostname: str = "", root: str = ROOT) -> ParsedTree:
    """Parse the tree starting at ``root`` (see module doc); problems are warnings."""
    p = _Parser(files, hostname.split(".", 1)[0])
    p.read(root)
    return p.out


# --- reading a tree from a host ---------------------------------------------------

def load_tree(host: Host, hostname: str = "", root: str = ROOT) -> tuple[dict[str, SudoFile],
                                                                       list[str]]:
    """Every file the tree at ``root`` may include, read from ``host`` with owner and
    mode; and what could not be read. Sub-directories of includedirs are left out."""
    files: dict[str, SudoFile] = {}
    warnings: list[str] = []
    short = hostname.split(".", 1)[0]

    def read(path: str, depth: int) -> None:
        if path in files or depth > MAX_DEPTH:
            return
        try:
            st = host.stat(path)
            if not _stat.S_ISREG(st.mode):
                return
            text = host.read_file(path).decode("utf-8", "replace")
        except FileNotFoundError:
            return
        except HostError as exc:
            warnings.append(f"{path}: cannot read: {exc.message}")
            return
        files[path] = SudoFile(text, st.uid, st.gid, _stat.S_IMODE(st.mode))
        for _n, line in logical_lines(text):
            inc = _INCLUDE.match(line)
            if not inc:
                continue
            target = include_target(inc.group(2), path, short)
            if inc.group(1) == "include":
                read(target, depth + 1)
                continue
            for name in sorted(host.listdir_or_warn(target, warnings)):
                if not name.endswith("~") and "." not in name:
                    read(posixpath.join(target, name), depth + 1)

    read(root, 0)
    return files, warnings
