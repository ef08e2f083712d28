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

SSH *certificates* open accounts without the person's key blob appearing
anywhere: a ``cert-authority`` line whose ``principals="..."`` option names the
login, or a line naming the login in another account's
``AuthorizedPrincipalsFile`` (read like the key files, same tokens), lets a
certificate the person holds in. Those lines are the person's too: the login is
taken out of the ``principals=`` list (the line goes when no one else is left)
and their principals lines are removed. An ``AuthorizedPrincipalsCommand`` is,
like the keys command, unreadable: blocking.
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


def _match_script(sshd_config: str | None) -> str:
    """sh exporting OPSKIT_SSHD_PER: when the sshd config (or a file it Includes) has a
    Match block, one line per passwd account 'NAME<TAB>AuthorizedKeysFile<TAB>
    AuthorizedPrincipalsFile' as ``sshd -T -C user=NAME,...`` evaluates it (a Match
    User block may give one account its own key files)."""
    cfg = f" -f {q(sshd_config)}" if sshd_config else ""
    main = q(sshd_config or "/etc/ssh/sshd_config")
    return (
        "per=; S=$(command -v sshd || echo /usr/sbin/sshd); "
        f"m=$( {{ cat {main}; for i in $(awk 'tolower($1)==\"include\"{{for(i=2;i<=NF;i++) "
        f"print $i}}' {main}); do case $i in /*) ;; *) i=/etc/ssh/$i;; esac; cat $i; done; }} "
        "2>/dev/null | grep -ci '^[[:space:]]*match[[:space:]]'); "
        "if [ \"${m:-0}\" -gt 0 ]; then per=$(awk -F: '{print $1}' /etc/passwd | "
        "while IFS= read -r n; do "
        f"u=$(\"$S\" -T -C \"user=$n,host=localhost,addr=127.0.0.1\"{cfg} 2>/dev/null) || continue; "
        "printf '%s\\t%s\\t%s\\n' \"$n\" "
        "\"$(printf '%s\\n' \"$u\" | awk '$1==\"authorizedkeysfile\"{$1=\"\"; print}')\" "
        "\"$(printf '%s\\n' \"$u\" | awk '$1==\"authorizedprincipalsfile\"{print $2}')\"; "
        "done); fi; OPSKIT_SSHD_PER=$per; export OPSKIT_SSHD_PER; ")


def gather_script(root: str = "", sshd_config: str | None = None) -> str:
    """sh printing the effective AuthorizedKeysFile/Command, AuthorizedPrincipalsCommand
    and every existing keys file (marker ``file ACCOUNT PATH``, then the content) and
    AuthorizedPrincipalsFile (``pfile ACCOUNT PATH``) of every passwd account; with a
    Match block in the config, each account's files as sshd evaluates Match for it
    (``sshd -T -C user=NAME,host=localhost,addr=127.0.0.1``: Match Address/Host blocks
    for other clients are not seen)."""
    cfg = f" -f {q(sshd_config)}" if sshd_config else ""
    sshd = "" if root else (
        f"t=$(sshd -T{cfg} 2>/dev/null || /usr/sbin/sshd -T{cfg} 2>/dev/null); "
        "akf=$(printf '%s\\n' \"$t\" | awk '$1==\"authorizedkeysfile\"{$1=\"\"; print}'); "
        "akc=$(printf '%s\\n' \"$t\" | awk '$1==\"authorizedkeyscommand\"{$1=\"\"; print}'); "
        "apf=$(printf '%s\\n' \"$t\" | awk '$1==\"authorizedprincipalsfile\"{print $2}'); "
        "apc=$(printf '%s\\n' \"$t\" | awk '$1==\"authorizedprincipalscommand\"{$1=\"\"; "
        "print}'); " + _match_script(sshd_config))
    return (
        f"akf=; akc=; apf=; apc=; OPSKIT_SSHD_PER=; export OPSKIT_SSHD_PER; {sshd}"
        f"[ -n \"$akf\" ] || akf={q(DEFAULT_FILES)}; "
        "[ \"$apf\" != none ] || apf=; "
        f"printf '{_MARK}akf %s\\n' \"$akf\"; printf '{_MARK}akc %s\\n' \"$akc\"; "
        f"printf '{_MARK}apc %s\\n' \"$apc\"; "
        # one awk reads every file (a cat per account costs a fork each, twice per freeze)
        f"awk -F: -v pats=\"$akf\" -v ppat=\"$apf\" -v root={q(root)} "
        "'BEGIN{np=split(ENVIRON[\"OPSKIT_SSHD_PER\"],L,\"\\n\"); for(j=1;j<=np;j++){"
        "split(L[j],F,\"\\t\"); if (F[1]==\"\") continue; H[F[1]]=1; A[F[1]]=F[2]; "
        "P[F[1]]=(F[3]==\"none\")?\"\":F[3]}} "
        "{pp=pats; pq=ppat; if ($1 in H) {pp=A[$1]; pq=P[$1]} n=split(pp,p,\" \"); "
        # principals files are marked 'pfile' (AuthorizedPrincipalsFile is one path)
        "if (pq!=\"\") p[++n]=\"P\" pq; "
        "for(i=1;i<=n;i++){s=p[i]; kind=\"file\"; "
        "if (i==n && pq!=\"\") {kind=\"pfile\"; s=substr(s,2)} "
        "gsub(/%h/,$6,s); gsub(/%u/,$1,s); gsub(/%U/,$3,s); "
        "gsub(/%%/,\"%\",s); if (substr(s,1,1)!=\"/\") s=$6 \"/\" s; if ((kind s) in seen) continue; "
        "seen[kind s]=1; f=root s; first=1; while ((getline line < f) > 0) { if (first) "
        f"printf \"{_MARK}%s %s %s\\n\", kind, $1, s; first=0; print line }} close(f); "
        "if (!first) print \"\"}}' "
        f"{q(root + '/etc/passwd')}")


@dataclass
class KeysFile:
    account: str
    path: str
    text: str = ""
    symlink: bool = False        # (not detected by the reader: edits refuse symlinks)
    principals: bool = False     # an AuthorizedPrincipalsFile, not a keys file


@dataclass
class KeyScan:
    patterns: str = DEFAULT_FILES
    command: str = ""                          # AuthorizedKeysCommand ('' / 'none': unset)
    principals_command: str = ""               # AuthorizedPrincipalsCommand (same)
    files: list[KeysFile] = field(default_factory=list)

    @property
    def command_set(self) -> bool:
        return bool(self.command) and self.command != "none"

    @property
    def principals_command_set(self) -> bool:
        return bool(self.principals_command) and self.principals_command != "none"


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
            elif kind == "apc":
                out.principals_command = rest.strip()
            elif kind in ("file", "pfile"):
                parts = rest.split(" ", 1)
                current = KeysFile(parts[0], parts[1], principals=kind == "pfile")
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


_PRINCIPALS = re.compile(r'(?:^|,)principals="([^"]*)"')


def _cert_authority_principals(line: str) -> list[str] | None:
    """The principals="..." list of a cert-authority line (None: not such a line)."""
    options = line.strip().split(" ", 1)[0]
    if "cert-authority" not in options.split(","):
        return None
    m = _PRINCIPALS.search(options)
    return None if m is None else [p.strip() for p in m.group(1).split(",")]


def _principal(line: str) -> str | None:
    """The principal of an AuthorizedPrincipalsFile line ('[options] principal')."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    return line.split()[-1]


def names_as_principal(f: KeysFile, line: str, login: str) -> bool:
    """Whether ``line`` of ``f`` lets a certificate with principal ``login`` in."""
    if f.principals:
        return _principal(line) == login
    return login in (_cert_authority_principals(line) or [])


def without_login(f: KeysFile, line: str, login: str) -> str | None:
    """``line`` with ``login``'s access taken out: None (the line goes) unless it is a
    cert-authority line that still names other principals, which loses only ``login``."""
    if f.principals:
        return None
    names = _cert_authority_principals(line)
    if not names or login not in names or not (rest := [p for p in names if p != login]):
        return None
    options, _, key = line.strip().partition(" ")
    m = _PRINCIPALS.search(options)
    lead = options[:m.start(1)]
    return f'{lead}{",".join(rest)}{options[m.end(1):]} {key}'


def person_keys(scan: KeyScan, login: str, roster_keys: list[str]) -> dict[str, str]:
    """The person's keys, blob -> 'type blob': the roster's and those in their own files."""
    out = {}
    for line in [*roster_keys, *(x for f in scan.files if f.account == login
                                 and not f.principals for x in f.text.splitlines())]:
        m = _BLOB.search(line.strip())
        if m and blob(line):
            out[m.group(2)] = f"{m.group(1)} {m.group(2)}"
    return out


def foreign_hits(scan: KeyScan, login: str, blobs: set[str]) -> dict[str, list[str]]:
    """Other accounts' files -> the lines in them that are the person's: their key
    blobs, comments naming the login, and principals naming it (certificates)."""
    out: dict[str, list[str]] = {}
    for f in scan.files:
        if f.account == login:
            continue
        for line in f.text.splitlines():
            b = None if f.principals else blob(line)
            if (b and (b[0] in blobs or names_login(b[1], login))) \
                    or names_as_principal(f, line, login):
                out.setdefault(f.path, []).append(line)
    return out


def edited(f: KeysFile, hits: list[str], login: str) -> str:
    """The text of ``f`` with the person's lines ``hits`` taken out (see without_login)."""
    drop = set(hits)
    out = []
    for line in f.text.splitlines():
        if line in drop:
            line = without_login(f, line, login)
        if line is not None:
            out.append(line + "\n")
    return "".join(out)


def own_files(scan: KeyScan, login: str) -> list[KeysFile]:
    """The login's own key files (its own principals file is no door once the account
    is locked and expired, and is left alone)."""
    return [f for f in scan.files if f.account == login and not f.principals]
