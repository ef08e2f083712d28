"""What a person can still use on one host: the *found* part of a freeze (R-ACC-6).

``inspect`` reads it in one round trip (``_inspect_spec`` + ``gather``), and
the freeze re-reads it the same way after its steps to verify. The channels
and how each is found are in docs/accounts.md ("What the freeze covers").
"""
from __future__ import annotations

from dataclasses import dataclass, field

from opskit.hosts.userdb import Account

from . import hunt, keyhunt, sudo_grants
from .provision import SSHD_CONFIG_VAR, sudoers_path
from .target import Target, gather, q

CRONTABS = ("/var/spool/cron/crontabs", "/var/spool/cron")     # Debian, RHEL
AT_DIRS = ("/var/spool/cron/atjobs", "/var/spool/at")
SECTION = "@@opskit-section "
MANAGED_MARK = "# opskit: managed from the roster for "     # provision.SUDO_HEADER
# inventory vars
PROBE_VAR = "ssh_login_probe"
PROBE_KNOWN_HOSTS_VAR = "ssh_login_probe_known_hosts"


@dataclass
class HuntOptions:
    """What the freeze knows beyond the host: the person's roster keys, the
    tenure start, paths the operator reviewed, per-host inventory vars."""

    roster_keys: list[str] = field(default_factory=list)
    since: int | None = None                 # epoch; None: guessed per host
    reviewed: tuple = ()                     # tenure paths a human has reviewed
    tenure_paths: tuple = ()                 # beyond hunt.TENURE_DIRS
    variables: dict = field(default_factory=dict)
    known_hosts: str | None = None           # for the login probe


@dataclass
class Found:
    account: dict | None = None
    uid_aliases: list = field(default_factory=list)    # other Accounts with their uid
    own_keys: list[keyhunt.KeysFile] = field(default_factory=list)
    foreign_keys: dict[str, list[str]] = field(default_factory=dict)   # path -> lines
    foreign_texts: dict[str, keyhunt.KeysFile] = field(default_factory=dict, repr=False)
    keys_command: str = ""
    principals_command: str = ""
    key_lines: dict = field(default_factory=dict)      # blob -> 'type blob'
    sudoers_dropin: str | None = None
    sudo: sudo_grants.Scan = field(default_factory=sudo_grants.Scan)
    sudoers_texts: dict[str, str] = field(default_factory=dict, repr=False)
    sudo_l: list[str] | None = None          # None: not run (rooted, no sudo)
    crontabs: list[str] = field(default_factory=list)
    cron_lines: list[hunt.CronHit] = field(default_factory=list)
    cron_owned: list[str] = field(default_factory=list)
    cron_texts: dict[str, str] = field(default_factory=dict, repr=False)
    at_jobs: list[str] = field(default_factory=list)
    systemd: hunt.Systemd = field(default_factory=hunt.Systemd)
    setuid: list[hunt.SetuidFile] = field(default_factory=list)
    processes: list[hunt.Proc] = field(default_factory=list)
    since: int | None = None
    tenure: list[str] = field(default_factory=list)
    managed: set = field(default_factory=set)     # opskit's own drop-ins of other people

    @property
    def keys(self) -> list[str]:
        return [f.path for f in self.own_keys]

    def as_dict(self) -> dict:
        return {"account": self.account,
                "accounts_with_their_uid": [a.name for a in self.uid_aliases],
                "authorized_keys": self.keys,
                "keys_in_other_accounts": {p: len(v) for p, v in self.foreign_keys.items()},
                "authorized_keys_command": self.keys_command or None,
                "authorized_principals_command": self.principals_command or None,
                "sudoers_dropin": self.sudoers_dropin,
                "sudo_grants": [g.describe() for g in self.sudo.grants],
                "sudo_l": self.sudo_l,
                "crontabs": self.crontabs,
                "system_cron": [f"{h.file}:{h.line_no}: {h.line.strip()} ({h.why})"
                                for h in self.cron_lines] + [f"{p} (owned)"
                                                             for p in self.cron_owned],
                "at_jobs": self.at_jobs,
                "systemd": {"linger": self.systemd.linger, "user_units": self.systemd.user_units,
                            "system_units": self.systemd.system_units},
                "setuid": [f"{s.path} ({s.mode}, uid {s.owner}, {s.why})" for s in self.setuid],
                "processes": [p.describe() for p in self.processes],
                "tenure_since": self.since, "tenure_changed": self.tenure}


def who_prefix(target: Target, login: str) -> str:
    """sh setting $uid and $home of ``login`` (exit 0 quietly when there is none)."""
    return (f"r=$(awk -F: -v u={q(login)} '$1==u{{print $3\" \"$6; exit}}' "
            f"{q(target.path('/etc/passwd'))}); [ -n \"$r\" ] || exit 0; "
            'uid=${r%% *}; home=${r#* }; ')


def inspect_spec(target: Target, login: str, opts: HuntOptions) -> tuple[dict, dict]:
    """Files and shell commands that read everything ``login`` can use on the target."""
    files = {"passwd": "/etc/passwd", "group": "/etc/group", "shadow": "/etc/shadow"}
    for d in CRONTABS:
        files[f"cron:{d}/{login}"] = f"{d}/{login}"
    root = target.root or ""
    who = who_prefix(target, login)
    sections = {
        "since": hunt.since_script(root, opts.since),
        "cron": hunt.cron_script(root),
        "systemd": hunt.systemd_script(root, login),
        "setuid": hunt.setuid_script(root),
        "tenure": hunt.tenure_script(root, tuple(opts.tenure_paths)),
    }
    commands = {
        "keys": keyhunt.gather_script(root, opts.variables.get(SSHD_CONFIG_VAR)),
        "sudoers": sudo_grants.gather_script(root),
        "at": who + " ".join(["find", *(q(target.path(d)) for d in AT_DIRS), "-maxdepth", "1",
                              "-type", "f", "-uid", '"$uid"', "2>/dev/null", "; true"]),
        "hunt": who + "; ".join(f"echo '{SECTION}{k}'; {v}" for k, v in sections.items()),
    }
    if not target.rooted:
        commands["procs"] = hunt.processes_script()
        commands["sudo-l"] = (f"command -v sudo >/dev/null 2>&1 || exit 0; "
                              f"echo '{SECTION}ran'; sudo -n -l -U {q(login)} 2>&1; true")
    return files, commands


def inspect(target: Target, login: str, opts: HuntOptions, timeout: float | None = None
            ) -> tuple[Account | None, Found]:
    """What access ``login`` has on the target, read in one round trip."""
    files, commands = inspect_spec(target, login, opts)
    return inspect_parse(target, login, opts, files, gather(target, files, commands,
                                                            timeout=timeout))


def _sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith(SECTION):
            current = line[len(SECTION):]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def _text(got: dict, key: str) -> str:
    return (got.get(key) or b"").decode("utf-8", "replace")


def inspect_parse(target: Target, login: str, opts: HuntOptions, files: dict, got: dict
                  ) -> tuple[Account | None, Found]:
    from opskit.hosts.base import HostError
    from opskit.hosts.userdb import userdb_from_text
    if got["passwd"] is None or got["group"] is None:
        raise HostError(f"{target.host.describe()}: no /etc/passwd or /etc/group under "
                        f"{target.root or '/'}", host=target.name)
    shadow = got["shadow"].decode("utf-8", "replace") if got["shadow"] is not None else None
    db = userdb_from_text(got["passwd"].decode("utf-8", "replace"),
                          got["group"].decode("utf-8", "replace"), shadow)
    acct = db.account(login)
    found = Found()
    if acct is None:
        return None, found
    found.account = {k: v for k, v in acct.as_dict().items()
                     if k in ("uid", "home", "shell", "password", "expire_day", "groups",
                              "locked", "expired", "nologin")}
    # another login with their uid is them under another name (R-ACC-6)
    found.uid_aliases = [a for name, a in sorted(db.accounts.items())
                         if a.uid == acct.uid and name != login]
    root = target.root or ""
    found.crontabs = [files[k] for k, v in got.items() if k.startswith("cron:") and v is not None]
    _parse_keys(found, _text(got, "keys"), login, opts)
    _parse_sudo(found, db, acct, _text(got, "sudoers"), root, login)
    if "sudo-l" in got:
        text = _text(got, "sudo-l")
        if text.startswith(SECTION + "ran"):
            found.sudo_l = sudo_grants.sudo_l_rights(text)
    found.at_jobs = [p[len(root):] for p in _text(got, "at").split("\n") if p]
    sections = _sections(_text(got, "hunt"))
    since = sections.get("since", "").strip()
    found.since = int(since) if since.isdigit() else None
    found.cron_lines, found.cron_owned, found.cron_texts = hunt.parse_cron(
        sections.get("cron", ""), root, login, acct.uid, acct.home)
    found.systemd = hunt.parse_systemd(sections.get("systemd", ""), root)
    found.setuid = hunt.parse_setuid(sections.get("setuid", ""), root, acct.uid, acct.home)
    found.tenure = hunt.parse_tenure(sections.get("tenure", ""), root)
    if "procs" in got:
        found.processes = hunt.parse_processes(_text(got, "procs"), acct.uid)
    return acct, found


def _parse_keys(found: Found, text: str, login: str, opts: HuntOptions) -> None:
    scan = keyhunt.parse(text)
    found.keys_command = scan.command if scan.command_set else ""
    found.principals_command = scan.principals_command if scan.principals_command_set else ""
    found.own_keys = keyhunt.own_files(scan, login)
    found.key_lines = keyhunt.person_keys(scan, login, opts.roster_keys)
    found.foreign_keys = keyhunt.foreign_hits(scan, login, set(found.key_lines))
    found.foreign_texts = {f.path: f for f in scan.files if f.path in found.foreign_keys}


def _parse_sudo(found: Found, db, acct: Account, text: str, root: str, login: str) -> None:
    texts = sudo_grants.split_files(text, root)
    dropin = sudoers_path(login)
    if dropin in texts:
        found.sudoers_dropin = texts.pop(dropin).rstrip("\n") + "\n"
    found.sudoers_texts = texts
    found.managed = {p for p, t in texts.items() if t.startswith(MANAGED_MARK)}
    found.sudo = sudo_grants.scan(texts, sudo_grants.Who.of(db, acct))
