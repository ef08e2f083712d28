"""The Linux collector: what access each account actually has on one host.

Written once against the Host interface (opskit.hosts.base), so a sysroot
tree, this machine and an SSH host are read the same way:

* accounts with lock / expiry / shell state and group memberships
  (opskit.hosts.userdb.read_userdb -- never password hashes);
* the host's identity as sudo matches it -- host name, FQDN (/etc/hosts),
  interface addresses (``ip -o addr``; not for a sysroot) -- and each
  account's sudo rights on it as sudo decides them (opskit.hosts.sudoers.evaluate):
  ``sudo`` holds the rights here, ``sudo_elsewhere`` those of rules written
  for other hosts (kept for the auditor, never counted as rights here);
* authorized_keys as SHA-256 fingerprints, never the keys themselves;
* the last login (opskit.perms.lastlog);
* crontab entries (per-user spools, /etc/crontab, /etc/cron.d), with values
  of secret-looking variables and URL passwords masked.

``collect_linux(host, ...)`` returns a JSON-able dict: the host's part of a
snapshot (docs/perms.md, "Snapshot format"). Anything it cannot read becomes
a warning in that dict, never a silent gap.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import posixpath
import re

from opskit.hosts.base import Host, HostError
from opskit.hosts.userdb import read_userdb

from .lastlog import read_last_logins
from opskit.hosts.sudoers.evaluate import HostIdentity, SudoUser, evaluate
from .sudoers import items_from_rights
from opskit.hosts.sudoers.parse import load_tree, parse_tree

KEY_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")
_KEY_TYPE = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-[a-z0-9-]+@openssh\.com)$")
_SECRET_ASSIGN = re.compile(r"(?i)\b([A-Z0-9_.-]*(?:pass|pwd|secret|token|key)[A-Z0-9_.-]*)"
                            r"(\s*[=:]\s*|\s+)(?!\*\*\*)(\S+)")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^@\s/]+@")
_CRON_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
CRON_SPOOLS = ("/var/spool/cron/crontabs", "/var/spool/cron")
SYSTEM_CRONTABS = ("/etc/crontab",)
CRON_D = "/etc/cron.d"
MAX_COMMAND = 200


def fingerprint(blob_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a base64 public key blob (as ssh-keygen -l)."""
    raw = base64.b64decode(blob_b64, validate=True)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def parse_key_line(line: str) -> dict | None:
    """{'type', 'fingerprint', 'comment', 'options'} of one authorized_keys line, or None."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    parts = _split_options(line)
    for i, part in enumerate(parts):
        if _KEY_TYPE.match(part) and i + 1 < len(parts):
            try:
                fp = fingerprint(parts[i + 1])
            except (binascii.Error, ValueError):
                return None
            return {"type": part, "fingerprint": fp, "comment": " ".join(parts[i + 2:])[:100],
                    "options": bool(i)}
    return None


def _split_options(line: str) -> list[str]:
    """Split on spaces outside double quotes (options such as command="a b")."""
    out, cur, quoted = [], [], False
    for c in line:
        if c == '"':
            quoted = not quoted
        if c in " \t" and not quoted:
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        cur.append(c)
    if cur:
        out.append("".join(cur))
    if out and not _KEY_TYPE.match(out[0]) and len(out) > 1:
        return [out[0], *out[1:]]
    return out


def mask_secrets(text: str) -> str:
    """Mask values of secret-looking variables and passwords in URLs."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _SECRET_ASSIGN.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def _cron_entries(text: str, source: str, with_user: bool) -> list[tuple[str | None, dict]]:
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or _CRON_ENV.match(line):
            continue
        fields = line.split()
        if line.startswith("@"):
            n_sched = 1
        else:
            n_sched = 5
        if len(fields) < n_sched + (2 if with_user else 1):
            continue
        schedule = " ".join(fields[:n_sched])
        user = fields[n_sched] if with_user else None
        command = " ".join(fields[n_sched + (1 if with_user else 0):])
        command = mask_secrets(command)
        if len(command) > MAX_COMMAND:
            command = command[:MAX_COMMAND - 3] + "..."
        out.append((user, {"schedule": schedule, "command": command,
                           "source": f"{source}:{number}"}))
    return out


def read_crontabs(host: Host, accounts: dict, warnings: list[str]) -> dict[str, list[dict]]:
    """Crontab entries by the login they run as."""
    tabs: dict[str, list[dict]] = {}
    for spool in CRON_SPOOLS:
        for name in host.listdir_or_warn(spool, warnings):
            if name not in accounts:
                continue                      # 'crontabs' dir, lock files, unknown users
            path = posixpath.join(spool, name)
            try:
                text = host.read_file(path).decode("utf-8", "replace")
            except (IsADirectoryError, FileNotFoundError):
                continue
            except HostError as exc:
                warnings.append(f"{path}: cannot read: {exc.message}")
                continue
            for _user, entry in _cron_entries(text, path, with_user=False):
                tabs.setdefault(name, []).append(entry)
    system = list(SYSTEM_CRONTABS)
    system += [posixpath.join(CRON_D, n) for n in host.listdir_or_warn(CRON_D, warnings)
               if not n.startswith(".") and "." not in n and not n.endswith("~")]
    for path in system:
        try:
            text = host.read_file(path).decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        except HostError as exc:
            warnings.append(f"{path}: cannot read: {exc.message}")
            continue
        for user, entry in _cron_entries(text, path, with_user=True):
            tabs.setdefault(user, []).append(entry)
    return tabs


def read_keys(host: Host, accounts: dict, min_uid: int,
              warnings: list[str]) -> dict[str, list[dict]]:
    """authorized_keys fingerprints by login, for root and every non-system account."""
    keys: dict[str, list[dict]] = {}
    for acct in accounts.values():
        if (acct.uid < min_uid and acct.uid != 0) or not acct.home or acct.home == "/nonexistent":
            continue
        for rel in KEY_FILES:
            path = posixpath.join(acct.home, rel)
            try:
                text = host.read_file(path).decode("utf-8", "replace")
            except (FileNotFoundError, NotADirectoryError):
                continue
            except HostError as exc:
                if getattr(exc, "status", "") != "not found":
                    warnings.append(f"{path}: cannot read: {exc.message}")
                continue
            for number, line in enumerate(text.splitlines(), 1):
                parsed = parse_key_line(line)
                if parsed is None:
                    if line.strip() and not line.strip().startswith("#"):
                        warnings.append(f"{path}:{number}: not a public key line")
                    continue
                parsed["source"] = f"{path}:{number}"
                keys.setdefault(acct.name, []).append(parsed)
    return keys


def _first_line(host: Host, path: str) -> str:
    try:
        return host.read_file(path).decode("utf-8", "replace").strip().split("\n")[0].strip()
    except (FileNotFoundError, HostError):
        return ""


def host_identity(host: Host, warnings: list[tuple[str, str]]) -> HostIdentity:
    """Host name, FQDN and interface addresses, as sudo matches host lists with them;
    what is unknown goes to ``warnings`` as ('name' or 'address', text): read_sudo
    keeps one only when a sudoers host list names such a thing."""
    hostname = _first_line(host, "/etc/hostname")
    if not hostname and host.sysroot is None:
        res = host.run(["hostname"], timeout=10)
        hostname = res.stdout.decode("utf-8", "replace").strip() if res.ok else ""
    if not hostname:
        hostname = host.name
        warnings.append(("name", f"host name unknown (/etc/hostname): sudo host lists "
                                 f"matched against the inventory name {host.name}"))
    fqdn = ""
    try:
        hosts_text = host.read_file("/etc/hosts").decode("utf-8", "replace")
    except (FileNotFoundError, HostError):
        hosts_text = ""
    short = hostname.split(".", 1)[0]
    for line in hosts_text.splitlines():
        names = line.split("#", 1)[0].split()[1:]
        if short in names or hostname in names:
            fqdn = next((n for n in names if "." in n), "")
            break
    if "." in hostname and not fqdn:
        fqdn = hostname
    addresses: list[str] = []
    if host.sysroot is None:
        res = host.run(["ip", "-o", "addr", "show"], timeout=10)
        if res.ok:
            for line in res.stdout.decode("utf-8", "replace").splitlines():
                m = re.search(r"\binet6?\s+(\S+)", line)
                if m and " lo " not in f" {line.split()[1]} ":
                    addresses.append(m.group(1))
        else:
            warnings.append(("address", "ip -o addr failed: sudo host lists naming "
                                        "addresses or networks are not matched"))
    else:
        warnings.append(("address", "interface addresses unknown (sysroot): sudo host "
                                    "lists naming addresses or networks are not matched"))
    return HostIdentity(hostname, fqdn, tuple(addresses))


def _host_member_kind(name: str, parsed) -> str | None:
    """'address' for an address or network, 'name' for a host name, None otherwise."""
    if name == "ALL" or name in parsed.aliases["host"] or name.startswith("+"):
        return None
    return "address" if re.match(r"^[0-9.]+(/\S+)?$|^[0-9a-fA-F:]*:[0-9a-fA-F:./]*$", name) \
        else "name"


def read_sudo(host: Host, db, identity: HostIdentity, warnings: list[str],
              identity_gaps: list[tuple[str, str]] = ()):
    """Each account's sudo rights here and elsewhere (SudoItem dicts by login), and the
    sudoers files sudo reads."""
    files, problems = load_tree(host, identity.hostname)
    warnings += problems
    parsed = parse_tree(files, identity.hostname)
    warnings += parsed.warnings
    named = [m.name for spec in parsed.specs for hosts, _ in spec.sections for m in hosts]
    named += [m.name for ms in parsed.aliases["host"].values() for m in ms]
    for kind, gap in identity_gaps:
        if any(_host_member_kind(n, parsed) == kind for n in named):
            warnings.append(gap)
    here: dict[str, list[dict]] = {}
    elsewhere: dict[str, list[dict]] = {}
    if not parsed.specs:
        return here, elsewhere, parsed.files
    for login in sorted(db.accounts):
        rights = evaluate(parsed, SudoUser.from_userdb(db, login), identity, elsewhere=True)
        for bucket, want in ((here, True), (elsewhere, False)):
            items = items_from_rights(r for r in rights if r.here is want)
            if items:
                bucket[login] = [i.as_dict() for i in items]
    return here, elsewhere, parsed.files


def collect_linux(host: Host, *, min_uid: int = 1000) -> dict:
    """Everything the snapshot keeps about ``host`` (see module doc)."""
    warnings: list[str] = []
    db = read_userdb(host)
    if not db.shadow_readable:
        warnings.append("/etc/shadow is not readable (run as root): lock and expiry state "
                        "unknown")
    accounts = {}
    for name, acct in db.accounts.items():
        d = acct.as_dict()
        d.pop("gecos", None)
        accounts[name] = d
    groups = {g.name: {"gid": g.gid, "members": list(g.members)} for g in db.groups.values()}
    gaps: list[tuple[str, str]] = []
    identity = host_identity(host, gaps)
    sudo, sudo_elsewhere, sudo_files = read_sudo(host, db, identity, warnings, gaps)
    keys = read_keys(host, db.accounts, min_uid, warnings)
    last, sources, lw = read_last_logins(host, db.accounts)
    warnings += lw
    if not sources:
        warnings.append("no login records (wtmpdb, lastlog2, lastlog, wtmp): last logins "
                        "unknown, dormant accounts cannot be found")
    crontabs = read_crontabs(host, db.accounts, warnings)
    return {"accounts": accounts, "groups": groups,
            "identity": identity.as_dict(), "sudo": sudo, "sudo_elsewhere": sudo_elsewhere,
            "sudo_files": sudo_files, "keys": keys, "last_login": last,
            "login_sources": sources, "crontabs": crontabs, "shadow_readable": db.shadow_readable,
            "warnings": warnings}
