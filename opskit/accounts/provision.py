"""Provisioning from the roster: per host, what ``opskit users apply`` would change.

The plan (R-ACC-1, R-ACC-4, R-ACC-5) is computed from what the host says
(``/etc/passwd``, ``/etc/shadow``, ``/etc/group``, each managed account's
``~/.ssh/authorized_keys`` and its sudoers drop-in) against what the roster
declares:

* an active person entitled on the host (a post or own host group of the
  host, or 'all') and without an account gets one: ``useradd`` with the
  roles' Linux groups, a password that must be changed at first login
  (``chage -d 0``), the declared SSH keys, and the roles' sudo rules in
  ``/etc/sudoers.d/opskit-<login>`` (validated with ``visudo -cf`` before it
  is installed; a drop-in visudo rejects is never installed);
* an existing account is brought to the declared groups (only groups some
  role grants are ever removed), shell, keys and sudo rules (least
  privilege, R-ACC-4);
* a frozen account (expired, R-ACC-6) is never unfrozen by apply: that takes
  ``opskit users unfreeze`` with an approved request (R-ACC-3);
* an account of someone no longer entitled on the host (inactive, or the
  host left their groups) is reported for ``opskit users freeze`` (exit 1),
  never silently left or half-revoked;
* accounts the roster does not name, and system accounts (uid below
  ``accounts.min_uid``), are never touched.

Apply re-reads each host and runs the plan's steps there in one round trip
(opskit.accounts.target), so a second apply finds nothing to do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from opskit.core.errors import EXIT_FINDINGS, EXIT_OK, EXIT_OPERATIONAL, UsageError
from opskit.hosts.base import Host
from opskit.hosts.fanout import fan_out
from opskit.hosts.userdb import Account, UserDB, userdb_from_text

from . import sudo_grants, unmanaged
from .target import EVIDENCE_DIR, Step, Target, cmd, gather, q, run_steps
from opskit.core.state import StateLayout

SUDOERS_DIR = "/etc/sudoers.d"
SSHD_CONFIG_VAR = "sshd_config"      # inventory var: the sshd config 'sshd -T' reads
KEYS_HEADER = ("# opskit: managed from the roster for {pid}; "
               "'opskit users apply' overwrites changes\n")
SUDO_HEADER = ("# opskit: managed from the roster for {pid} (roles: {roles}); "
               "'opskit users apply' overwrites changes (R-ACC-1)\n")


@dataclass
class Settings:
    min_uid: int = 1000
    nologin_shell: str = "/usr/sbin/nologin"
    host_timeout: float = 300.0
    concurrency: int = 16
    ssh_settings: Any = None
    keep_unmanaged: bool = False    # --keep-unmanaged: list unmanaged access, remove none

    @classmethod
    def from_config(cls, config) -> "Settings":
        from opskit.hosts.inventory import SSHSettings
        ssh = SSHSettings.from_config(config)
        return cls(int(config.get("accounts.min_uid")),
                   config.get("accounts.nologin_shell") or "/usr/sbin/nologin",
                   float(config.get("accounts.host_timeout")), ssh.concurrency, ssh)


def sudoers_name(login: str) -> str:
    """Drop-in file name: sudo ignores files in sudoers.d whose name has a '.', so
    dots in logins become '_'."""
    return "opskit-" + login.replace(".", "_")


def sudoers_path(login: str) -> str:
    return f"{SUDOERS_DIR}/{sudoers_name(login)}"


def on_host(roster, person, host_groups: Sequence[str]) -> bool:
    groups = roster.host_groups_of(person)
    return "all" in groups or any(g in host_groups for g in groups)


@dataclass
class Desired:
    """What the roster declares for one person on hosts where they are entitled."""

    person: str
    login: str
    name: str
    roles: list[str]
    groups: list[str]
    sudo: list[str]
    keys: list[str]
    shell: str
    uid: int | None

    def keys_file(self) -> bytes | None:
        if not self.keys:
            return None
        return (KEYS_HEADER.format(pid=self.person) + "".join(k.strip() + "\n"
                                                                for k in self.keys)).encode()

    def sudoers_file(self) -> bytes | None:
        if not self.sudo:
            return None
        body = "".join(f"{self.login} {rule}\n" for rule in self.sudo)
        return (SUDO_HEADER.format(pid=self.person, roles=", ".join(self.roles)) + body).encode()


def desired(roster, person, roles: list[str] | None = None) -> Desired:
    roles = roster.roles_of(person) if roles is None else roles
    model = roster.model
    return Desired(person.id, person.login, person.name, roles, model.linux_groups(roles),
                   model.sudo_rules(roles), list(person.ssh_keys), person.shell, person.uid)


def managed_groups(roster) -> set[str]:
    """Every Linux group some role grants: the only groups provisioning removes."""
    return set(roster.model.linux_groups(list(roster.model.roles)))


# --- reading a host ----------------------------------------------------------------------

@dataclass
class HostState:
    db: UserDB
    keys: dict[str, bytes | None] = field(default_factory=dict)      # login -> content
    sudoers: dict[str, bytes | None] = field(default_factory=dict)   # login -> drop-in
    seen: unmanaged.Seen | None = None       # every key and sudoers file (drift)
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))


def read_userdb_batched(target: Target, timeout: float | None = None) -> UserDB:
    got = gather(target, {"passwd": "/etc/passwd", "group": "/etc/group",
                          "shadow": "/etc/shadow"}, timeout=timeout)
    if got["passwd"] is None or got["group"] is None:
        from opskit.hosts.base import HostError
        raise HostError(f"{target.host.describe()}: no /etc/passwd or /etc/group under "
                        f"{target.root or '/'}", host=target.name)
    shadow = got["shadow"].decode("utf-8", "replace") if got["shadow"] is not None else None
    return userdb_from_text(got["passwd"].decode("utf-8", "replace"),
                            got["group"].decode("utf-8", "replace"), shadow)


def read_state(target: Target, logins: list[str], min_uid: int,
               timeout: float | None = None, sshd_config: str | None = None) -> HostState:
    db = read_userdb_batched(target, timeout)
    files = {}
    for login in logins:
        acct = db.account(login)
        if acct is None or acct.uid < min_uid:
            continue
        files[f"keys:{login}"] = acct.home.rstrip("/") + "/.ssh/authorized_keys"
        files[f"sudo:{login}"] = sudoers_path(login)
    # access opskit did not grant is only looked for where it manages accounts
    commands = unmanaged.gather_commands(target.root or "", sshd_config) if files else None
    got = gather(target, files, commands, timeout=timeout) if files else {}
    state = HostState(db, seen=unmanaged.parse(got, target.root or ""))
    for key in files:
        kind, _, login = key.partition(":")
        (state.keys if kind == "keys" else state.sudoers)[login] = got.get(key)
    return state


# --- shell building blocks (shared with freeze) ---------------------------------------


def keys_lines(target: Target, login: str, content: bytes | None) -> list[str]:
    """Shell: install (or, with None, remove) ``login``'s authorized_keys, owned by them,
    mode 0600 in a 0700 ~/.ssh; refuses symlinked home or .ssh. Few forks on purpose
    (a 200-person apply runs this 200 times per host)."""
    root = q(target.root or "")
    lines = [f"r=$(awk -F: -v u={q(login)} '$1==u{{print $3\":\"$4\" \"$6; exit}}' "
             f"{q(target.path('/etc/passwd'))})",
             '[ -n "$r" ] || { echo "no passwd entry"; exit 1; }',
             'ids=${r%% *}; home=${r#* }',
             f'h={root}"$home"; d="$h/.ssh"',
             '[ ! -L "$h" ] && [ ! -L "$d" ] || '
             '{ echo "refusing: symlinked home or .ssh"; exit 1; }']
    if content is None:
        lines.append('rm -f "$d/authorized_keys"')
        return lines
    lines += ['umask 077',
              '[ -d "$h" ] || { mkdir -p "$h"; chown "$ids" "$h"; }',
              'if [ -d "$d" ]; then chmod 700 "$d"; else mkdir "$d"; fi',
              f'printf %s {q(content.decode())} > "$d/.authorized_keys.opskit-tmp"',
              'chown "$ids" "$d" "$d/.authorized_keys.opskit-tmp"',
              'mv -f "$d/.authorized_keys.opskit-tmp" "$d/authorized_keys"']
    return lines


def sudo_lines(target: Target, login: str, content: bytes | None) -> list[str]:
    """Shell: validate the drop-in with ``visudo -cf`` on a temp file (ignored by sudo:
    its name starts with '.'), then install it 0440; a rejected drop-in is never installed."""
    final = q(target.path(sudoers_path(login)))
    if content is None:
        return [f"rm -f {final}"]
    directory = q(target.path(SUDOERS_DIR))
    tmp = q(target.path(f"{SUDOERS_DIR}/.{sudoers_name(login)}.opskit-tmp"))
    return [f"[ -d {directory} ] || mkdir -m 750 -p {directory}",
            f"umask 337; printf %s {q(content.decode())} > {tmp}; umask 077",
            f"if ! out=$(visudo -cf {tmp} 2>&1); then rm -f {tmp}; "
            f"echo \"visudo -cf rejected the drop-in; not installed: $out\"; exit 1; fi",
            f"mv -f {tmp} {final}"]


def must_change_password_lines(target: Target, *logins: str) -> list[str]:
    """Shell: last password change = day 0, so the password must be changed at first
    login. chage has no --prefix (shadow 4.13), so on a rooted target the shadow lines
    are rewritten in place instead (one awk for all ``logins``; same mode and owner,
    atomic rename)."""
    if not target.rooted:
        return [cmd("chage", "-d", "0", login) for login in logins]
    shadow = q(target.path("/etc/shadow"))
    tmp = q(target.path("/etc/.shadow.opskit-tmp"))
    names = q(" ".join(logins))
    return [f"cp -p {shadow} {tmp}",
            f"awk -F: -v OFS=: -v names={names} "
            "'BEGIN{n=split(names,a,\" \"); for(i=1;i<=n;i++) w[a[i]]=1} $1 in w{$3=0} 1' "
            f"{shadow} > {tmp}",
            f"mv -f {tmp} {shadow}"]


def gecos(name: str) -> str:
    return "".join(c for c in name if c not in ":,\n\r")


# --- the plan -----------------------------------------------------------------------------

@dataclass
class Note:
    """Something the plan will not change but the operator must know."""

    host: str
    person: str
    note: str
    attention: bool = False       # True: needs action (exit 1)

    def as_dict(self) -> dict:
        return {"host": self.host, "person": self.person, "note": self.note,
                "attention": self.attention}


@dataclass
class HostPlan:
    host: str
    steps: list[Step] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    accounts: int = 0              # managed accounts found on the host
    new_logins: list[str] = field(default_factory=list)   # created (rooted: chage batch)
    holders: list = field(default_factory=list, repr=False)  # unmanaged.Holder (sudo drift)

    @property
    def reachable(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict:
        return {"host": self.host, "status": self.status, "error": self.error,
                "accounts": self.accounts, "steps": [s.as_dict() for s in self.steps],
                "notes": [n.as_dict() for n in self.notes]}


def plan_person(target: Target, roster, person, host_groups: Sequence[str], state: HostState,
                settings: Settings, plan: HostPlan, want_groups_on_host: set[str],
                roles: list[str] | None = None, entitled: bool | None = None,
                passwords: dict | None = None) -> None:
    """Add the steps and notes for one person on one host to ``plan``."""
    host = target.name
    acct = state.db.account(person.login)
    if entitled is None:
        entitled = person.active and on_host(roster, person, host_groups)
    if acct is not None and acct.uid < settings.min_uid:
        plan.notes.append(Note(host, person.id, f"'{person.login}' is a system account (uid "
                               f"{acct.uid} < {settings.min_uid}): never managed", True))
        return
    if acct is not None:
        plan.accounts += 1
    if not entitled:
        if acct is not None and not acct.expired():
            why = (f"status {person.status}" if not person.active
                   else "the host is not in their host groups")
            plan.notes.append(Note(host, person.id, f"has an account but is not entitled here "
                                   f"({why}): run 'opskit users freeze {person.id} --reason "
                                   f"departure|transfer' (R-ACC-6)", True))
        return
    want = desired(roster, person, roles)
    want_groups_on_host.update(want.groups)
    if acct is None:
        argv = ["useradd", *target.prefix(), "-m", "-s", want.shell, "-c", gecos(want.name)]
        if want.uid is not None:
            argv += ["-u", str(want.uid)]
        if want.groups:
            argv += ["-G", ",".join(want.groups)]
        if passwords and person.id in passwords:      # the hash only; never the password
            argv += ["-p", passwords[person.id].hash]
        argv.append(want.login)
        lines = [cmd(*argv)]
        if target.rooted:       # one shadow rewrite for every new account (plan_host)
            plan.new_logins.append(want.login)
        else:
            lines += must_change_password_lines(target, want.login)
        parts = [f"useradd{' uid ' + str(want.uid) if want.uid else ''}",
                 "initial password, to be changed at first login"]
        if want.groups:
            parts.append(f"groups {','.join(want.groups)}")
        if want.keys:
            lines += keys_lines(target, want.login, want.keys_file())
            parts.append(f"{len(want.keys)} SSH key(s)")
        if want.sudo:
            lines += sudo_lines(target, want.login, want.sudoers_file())
            parts.append(f"sudoers {sudoers_path(want.login)} ({len(want.sudo)} rule(s))")
        plan.steps.append(Step(host, person.id, "create", "; ".join(parts), lines))
        return
    if acct.expired():
        plan.notes.append(Note(host, person.id, "frozen (R-ACC-6): apply never unfreezes; "
                               f"'opskit users unfreeze {person.id} --request ID' needs an "
                               "approved request (R-ACC-3)"))
        return
    changes = _account_changes(target, roster, want, acct, state, settings.keep_unmanaged)
    for action, detail, lines in changes:
        plan.steps.append(Step(host, person.id, action, detail, lines))
    if state.seen is not None:
        drift = unmanaged.key_file_drift(target, state.seen, person.id, acct.name, acct.home,
                                         state.stamp)
        if settings.keep_unmanaged:
            foreign = unmanaged.foreign_keys(state.seen, acct.name, acct.home, want.keys)
            if foreign:
                drift.append(unmanaged.Drift(person.id, "unmanaged-keys",
                                             f"{len(foreign)} key(s) not in the roster in "
                                             f"{unmanaged.managed_keys_path(acct.home)}"))
        _add_drift(plan, drift, settings.keep_unmanaged)
        plan.holders.append(unmanaged.Holder(
            person.id, sudo_grants.Who.of(state.db, acct), sudoers_path(want.login), want.sudo,
            set(want.groups) | managed_groups(roster)))


def _add_drift(plan: HostPlan, drift: list, keep: bool) -> None:
    """Unmanaged access as steps to remove it, or as notes: kept (--keep-unmanaged), or
    needing a human (exit 1)."""
    for d in drift:
        if keep:
            plan.notes.append(Note(plan.host, d.person, f"kept (--keep-unmanaged): {d.detail}"))
        elif d.manual:
            plan.notes.append(Note(plan.host, d.person, d.detail, True))
        else:
            plan.steps.append(Step(plan.host, d.person, d.action, d.detail, d.lines))


def _keys_change(target: Target, want: Desired, acct: Account, state: HostState, keep: bool):
    """(action, detail, lines) bringing the managed authorized_keys to the roster's keys,
    keys not in the roster removed (kept as evidence) -- or kept, with ``keep``; or None."""
    keys = want.keys_file()
    current = state.keys.get(want.login)
    foreign = (unmanaged.foreign_keys(state.seen, acct.name, acct.home, want.keys)
               if state.seen is not None else [])
    if foreign and keep:
        keys = (keys or b"") + "".join(x + "\n" for x in foreign).encode()
    if keys == current:
        return None
    if keys is None:
        detail = "remove authorized_keys (no keys declared)"
    else:
        detail = (f"authorized_keys: install {len(want.keys)} key(s)" if current is None
                  else f"authorized_keys: replace with the {len(want.keys)} declared key(s)")
    lines = keys_lines(target, want.login, keys)
    if foreign and not keep:
        detail += (f"; removes {len(foreign)} key(s) not in the roster "
                   f"({unmanaged.fingerprints(foreign)}), kept in {EVIDENCE_DIR}/{want.login}/")
        lines = unmanaged.save_lines(target, want.login, foreign,
                                     f"keys-{state.stamp}-authorized_keys") + lines
    return "keys", detail, lines


def _account_changes(target: Target, roster, want: Desired, acct: Account, state: HostState,
                     keep_unmanaged: bool = False):
    out = []
    have = set(acct.groups)
    wanted = set(want.groups)
    remove = (have & managed_groups(roster)) - wanted
    add = wanted - have
    if add or remove:
        final = sorted((have - remove) | wanted)
        detail = ", ".join([*(f"+{g}" for g in sorted(add)), *(f"-{g}" for g in sorted(remove))])
        out.append(("groups", f"groups {detail}",
                    [cmd("usermod", *target.prefix(), "-G", ",".join(final), want.login)]))
    if acct.shell != want.shell:
        out.append(("shell", f"shell {acct.shell} -> {want.shell}",
                    [cmd("usermod", *target.prefix(), "-s", want.shell, want.login)]))
    keys = _keys_change(target, want, acct, state, keep_unmanaged)
    if keys:
        out.append(keys)
    sudo = want.sudoers_file()
    current = state.sudoers.get(want.login)
    if sudo != current:
        path = sudoers_path(want.login)
        detail = (f"remove {path}" if sudo is None else
                  f"{'install' if current is None else 'rewrite'} {path} "
                  f"({len(want.sudo)} rule(s))")
        out.append(("sudoers", detail, sudo_lines(target, want.login, sudo)))
    return out


def plan_host(target: Target, roster, people: list, host_groups: Sequence[str],
              settings: Settings, overrides: dict | None = None,
              state: HostState | None = None, passwords: dict | None = None,
              sshd_config: str | None = None) -> HostPlan:
    """The plan for ``people`` on one host. ``overrides``: person id -> (roles, entitled)
    used instead of the roster's (transfer computes with the new post)."""
    overrides = overrides or {}
    if state is None:
        state = read_state(target, [p.login for p in people], settings.min_uid,
                           settings.host_timeout, sshd_config)
    plan = HostPlan(target.name)
    want_groups: set[str] = set()
    logins: dict[str, str] = {}
    for person in people:
        name = sudoers_name(person.login)
        if name in logins and logins[name] != person.id:
            raise UsageError(f"people '{logins[name]}' and '{person.id}' would share the sudoers "
                             f"drop-in {name} (dots in logins become '_'); rename one login")
        logins[name] = person.id
        roles, entitled = overrides.get(person.id, (None, None))
        plan_person(target, roster, person, host_groups, state, settings, plan, want_groups,
                    roles, entitled, passwords)
    if state.seen is not None and plan.holders:
        _add_drift(plan, unmanaged.sudo_drift(target, state.seen, plan.holders, state.stamp),
                   settings.keep_unmanaged)
    if plan.new_logins:
        plan.steps.append(Step(target.name, "-", "chage", "password change at first login for "
                               f"{len(plan.new_logins)} new account(s) (chage -d 0 equivalent; "
                               "chage has no --prefix)",
                               must_change_password_lines(target, *plan.new_logins)))
    missing = sorted(g for g in want_groups if g not in state.db.groups)
    if missing:
        plan.steps[:0] = [Step(target.name, "-", "groupadd", f"create group {g}",
                               [cmd("groupadd", *target.prefix(), g)]) for g in missing]
    return plan


# --- initial passwords ------------------------------------------------------------------

@dataclass
class InitialPassword:
    """A new account's one-time password: without one, 'must change the password at
    first login' (chage -d 0) could never be satisfied -- the change asks for the
    current password. Only ``hash`` goes to hosts; the password itself goes to a
    0600 file in the state directory for the admin to hand over (save_initial_passwords)."""

    password: str = field(repr=False)
    hash: str = field(repr=False)
    hosts: list[str] = field(default_factory=list)


def initial_passwords(people: list) -> dict[str, InitialPassword]:
    """One random password per person, hashed (SHA-512 crypt) by ``openssl passwd -6``
    in one call; the passwords go to openssl on stdin, never on a command line."""
    import secrets
    import subprocess
    if not people:
        return {}
    words = [secrets.token_urlsafe(12) for _ in people]
    try:
        proc = subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                              input="".join(w + "\n" for w in words), capture_output=True,
                              text=True, timeout=60)
    except FileNotFoundError:
        from opskit.core.errors import OperationalError
        raise OperationalError("openssl not found: needed to hash initial passwords",
                               hint="apt-get install openssl") from None
    hashes = proc.stdout.split()
    if proc.returncode != 0 or len(hashes) != len(words) or \
            not all(h.startswith("$6$") for h in hashes):
        from opskit.core.errors import OperationalError
        raise OperationalError("openssl passwd -6 could not hash the initial passwords")
    return {p.id: InitialPassword(w, h) for p, w, h in zip(people, words, hashes)}


def save_initial_passwords(state_dir: str, steps: list[Step], passwords: dict,
                           actions: tuple = ("create",)) -> list[str]:
    """Write the initial password of every person an account was created for (or whose
    step's action is in ``actions``, e.g. an unfreeze) to
    ``<state_dir>/accounts/initial-passwords/<person>-<time>.txt`` (0600); return paths."""
    import datetime as _dt
    import os
    from opskit.core.state import ensure_private_dir
    hosts: dict[str, list[str]] = {}
    for s in steps:
        if s.action in actions and s.ok and s.subject in passwords:
            hosts.setdefault(s.subject, []).append(s.host)
    if not hosts:
        return []
    directory = ensure_private_dir(StateLayout(state_dir).initial_passwords)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    paths = []
    for pid, where in hosts.items():
        path = os.path.join(directory, f"{pid}-{stamp}.txt")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"person: {pid}\nhosts: {', '.join(where)}\n"
                     f"initial password: {passwords[pid].password}\n"
                     "It must be changed at first login. Hand it over in person, then delete "
                     "this file.\n")
        paths.append(path)
    return paths


# --- fleet --------------------------------------------------------------------------------

@dataclass
class FleetPlan:
    hosts: list[HostPlan]
    applied: bool = False
    dry_run: bool = False
    duration: float = 0.0
    passwords: dict = field(default_factory=dict, repr=False)   # person -> InitialPassword

    @property
    def exit_code(self) -> int:
        if any(not h.reachable for h in self.hosts) or \
                any(s.ok is False for h in self.hosts for s in h.steps):
            return EXIT_OPERATIONAL
        if any(n.attention for h in self.hosts for n in h.notes):
            return EXIT_FINDINGS
        return EXIT_OK

    def steps(self) -> list[Step]:
        return [s for h in self.hosts for s in h.steps]

    def notes(self) -> list[Note]:
        return [n for h in self.hosts for n in h.notes]

    def as_dict(self) -> dict:
        return {"applied": self.applied, "dry_run": self.dry_run,
                "duration": round(self.duration, 3), "exit_code": self.exit_code,
                "hosts": [h.as_dict() for h in self.hosts]}


def select_people(roster, person_ids: list[str] | None) -> list:
    if person_ids:
        return [roster.person(pid) for pid in dict.fromkeys(person_ids)]
    return list(roster.people.values())


def _targets(specs):
    return [(spec, getattr(spec, "groups", []) or [], getattr(spec, "vars", {}) or {})
            for spec in specs]


def plan_fleet(specs: Sequence[Any], roster, people: list, settings: Settings, *,
               apply: bool = False, overrides: dict | None = None) -> FleetPlan:
    """Plan (and with ``apply``, carry out) ``people`` on every host of ``specs``
    (HostSpecs or Hosts) concurrently; every host gets a row."""
    started = time.monotonic()
    info = {str(getattr(s, "name", s)): (g, v) for s, g, v in _targets(specs)}
    passwords = initial_passwords([p for p in people if p.active]) if apply else {}

    def work(host: Host) -> HostPlan:
        groups, variables = info[host.name]
        target = Target.of(host, variables)
        plan = plan_host(target, roster, people, groups, settings, overrides,
                         passwords=passwords, sshd_config=variables.get(SSHD_CONFIG_VAR))
        if apply and plan.steps:
            run_steps(target, plan.steps, timeout=settings.host_timeout)
        return plan

    outcomes = fan_out(list(specs), work, concurrency=settings.concurrency,
                       timeout_per_host=settings.host_timeout, ssh_settings=settings.ssh_settings)
    hosts = []
    for outcome in outcomes:
        if outcome.ok:
            hosts.append(outcome.value)
        else:
            hosts.append(HostPlan(outcome.name, status=outcome.status, error=outcome.error))
    return FleetPlan(hosts, applied=apply, duration=time.monotonic() - started,
                     passwords=passwords)
