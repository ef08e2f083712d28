"""The person's SSH keys in ANY account's authorized_keys files (R-ACC-6).

sshd decides which files count: ``sshd -T`` (with the host's sshd config,
inventory var ``sshd_config``) gives ``AuthorizedKeysFile`` patterns
(``%h``, ``%u``, ``%U``, ``%%``; relative paths start at the home) and
``AuthorizedKeysCommand``. The freeze expands the patterns for every account
in /etc/passwd -- root included -- and reads each file that exists, in the
same round trip as everything else.

A line *belongs to the person* when its key blob is one of the person's keys
(the roster's, and those in the person's own files on that host) or its
comment names the login. The person's own files are moved whole to the
root-only evidence directory; in other accounts' files only those lines are
taken out (the removed lines kept as evidence). An ``AuthorizedKeysCommand``
serves keys opskit cannot see: a blocking finding unless the login probe
shows the person's keys refused.
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from .target import q

DEFAULT_FILES = ".ssh/authorized_keys .ssh/authorized_keys2"
_MARK = "@@opskit-keys "
_BLOB = re.compile(r"(?:^|\s)((?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+)\s+([A-Za-z0-9+/]+=*)(?:\s+(.*))?$")


def gather_script(root: str = "", sshd_config: str | None = None) -> str:
    """sh printing the effective AuthorizedKeysFile/Command and every existing
    keys file of every passwd account (a marker line ``ACCOUNT PATH`` then content)."""
    cfg = f" -f {q(sshd_config)}" if sshd_config else ""
    sshd = "" if root else (
        f"t=$(sshd -T{cfg} 2>/dev/null || /usr/sbin/sshd -T{cfg} 2>/dev/null); "
        "akf=$(printf '%s\\n' \"$t\" | awk '$1==\"authorizedkeysfile\"{$1=\"\"; print}'); "
        "akc=$(printf '%s\\n' \"$t\" | awk '$1==\"authorizedkeyscommand\"{$1=\"\"; print}'); ")
    return (
        f"akf=; akc=; {sshd}[ -n \"$akf\" ] || akf={q(DEFAULT_FILES)}; "
        f"printf '{_MARK}akf %s\\n' \"$akf\"; printf '{_MARK}akc %s\\n' \"$akc\"; "
        # one awk reads every file (a cat per account costs a fork each, twice per freeze)
        f"awk -F: -v pats=\"$akf\" -v root={q(root)} '{{n=split(pats,p,\" \"); "
        "for(i=1;i<=n;i++){s=p[i]; gsub(/%h/,$6,s); gsub(/%u/,$1,s); gsub(/%U/,$3,s); "
        "gsub(/%%/,\"%\",s); if (substr(s,1,1)!=\"/\") s=$6 \"/\" s; if (s in seen) continue; "
        "seen[s]=1; f=root s; first=1; while ((getline line < f) > 0) { if (first) "
        f"printf \"{_MARK}file %s %s\\n\", $1, s; first=0; print line }} close(f); "
        "if (!first) print \"\"}}' "
        f"{q(root + '/etc/passwd')}")


@dataclass
class KeysFile:
    account: str
    path: str
    text: str = ""
    symlink: bool = False        # (not detected by the reader: edits refuse symlinks)


@dataclass
class KeyScan:
    patterns: str = DEFAULT_FILES
    command: str = ""                          # AuthorizedKeysCommand ('' / 'none': unset)
    files: list[KeysFile] = field(default_factory=list)

    @property
    def command_set(self) -> bool:
        return bool(self.command) and self.command != "none"


def parse(text: str) -> KeyScan:
    out = KeyScan()
    current: KeysFile | None = None
    for line in text.splitlines():
        if line.startswith(_MARK):
            kind, _, rest = line[len(_MARK):].partition(" ")
            current = None
            if kind == "akf":
                out.patterns = rest.strip() or DEFAULT_FILES
            elif kind == "akc":
                out.command = rest.strip()
            elif kind == "file":
                parts = rest.split(" ")
                current = KeysFile(parts[0], parts[1])
                out.files.append(current)
        elif current is not None:
            current.text += line + "\n"
    for f in out.files:              # the reader's 'echo' after each file
        f.text = f.text[:-1] if f.text.endswith("\n\n") else f.text
    return out


def blob(line: str) -> tuple[str, str] | None:
    """(key blob, comment) of an authorized_keys line (options allowed before the key)."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    m = _BLOB.search(line)
    if not m:
        return None
    return m.group(2), (m.group(3) or "")


def fingerprint(b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(b64 + "=" * (-len(b64) % 4))).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def names_login(comment: str, login: str) -> bool:
    return re.search(rf"(^|[^a-z0-9_.-]){re.escape(login)}([^a-z0-9_.-]|$)", comment) is not None


def person_keys(scan: KeyScan, login: str, roster_keys: list[str]) -> dict[str, str]:
    """The person's keys, blob -> 'type blob': the roster's and those in their own files."""
    out = {}
    for line in [*roster_keys, *(x for f in scan.files if f.account == login
                                 for x in f.text.splitlines())]:
        m = _BLOB.search(line.strip())
        if m and blob(line):
            out[m.group(2)] = f"{m.group(1)} {m.group(2)}"
    return out


def foreign_hits(scan: KeyScan, login: str, blobs: set[str]) -> dict[str, list[str]]:
    """Other accounts' files -> the lines in them that are the person's."""
    out: dict[str, list[str]] = {}
    for f in scan.files:
        if f.account == login:
            continue
        for line in f.text.splitlines():
            b = blob(line)
            if b and (b[0] in blobs or names_login(b[1], login)):
                out.setdefault(f.path, []).append(line)
    return out


def own_files(scan: KeyScan, login: str) -> list[KeysFile]:
    return [f for f in scan.files if f.account == login]
