"""Freezing a person's accounts on departure or transfer (R-ACC-6), with a certificate.

A freeze *hunts*: on every selected host where the person has an account it

1. reads everything they can still use (``freeze_found.inspect``: account
   state, their keys in any account's authorized_keys files as sshd reads
   them, sudo rights by name/uid/group/alias, cron, at, systemd timers and
   linger, setuid files, processes by every uid, the tenure report);
2. runs the steps still needed, all in one round trip with the verifying
   re-read: one ``usermod -L -e 1970-01-02 -s nologin -G ''``, their key
   files moved and their key lines taken out of other accounts' files (kept
   in the root-only ``/var/lib/opskit/frozen/<login>/``), sudoers entries
   taken out (each file vetted by ``visudo -cf``), cron and at jobs moved or
   commented out, linger and user units removed, setuid bits of their files
   cleared, every process holding their uid ended;
3. **verifies** from the re-read and from outside: ``sudo -l -U`` empty, no
   process, and a real SSH probe with each of their public keys refused for
   their login, root and every account their key was found in
   (``loginprobe``); the PostgreSQL login roles are frozen and verified by
   ``dbfreeze``.

Anything still open, or that opskit must not touch (a root-owned setuid file
in /tmp, a rule for ``ALL``, a root-run file changed during a sudo holder's
tenure not yet reviewed), is listed under *remaining*: the certificate says
``incomplete`` and the command exits 1. Hosts or databases that fail exit 3.
Every step checks before it acts, so a rerun finishes the job. On rooted
targets (a sysroot or ``accounts_root``) there are no processes or sshd.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from opskit.core.state import StateLayout, ensure_private_dir
from opskit.hosts.base import Host
from opskit.hosts.fanout import fan_out
from opskit.hosts.userdb import EPOCH_DAY, Account

from . import hunt, keyhunt, sudo_grants
from .dbfreeze import DbFreeze, freeze_database
from .freeze_found import (PROBE_KNOWN_HOSTS_VAR, PROBE_VAR, Found, HuntOptions, inspect,
                           inspect_parse, inspect_spec)
from .loginprobe import probe_keys
from .provision import Settings, sudoers_path
from .target import (EVIDENCE_DIR, HostRunOutcome, Step, Target, cmd, q,
                     run_steps_then_gather)
from .target import evidence_lines as _evidence_lines
from .target import move_aside_lines
from .target import rewrite_lines as _rewrite_lines

FREEZE_DATE = "1970-01-02"      # day 1 since the epoch: past, and never read as "unset"
FREEZE_DAY = 1
REASONS = ("departure", "transfer")


def _today() -> int:
    return int(time.time() // EPOCH_DAY)


def freeze_steps(target: Target, acct: Account, found: Found, login: str, person: str,
                 settings: Settings, stamp: str) -> list[Step]:
    """The steps still needed to freeze ``login`` on the target, in order."""
    steps: list[Step] = []

    def add(action, detail, lines):
        steps.append(Step(target.name, person, action, detail, lines))

    _account_step(target, acct, login, settings, add)
    _key_steps(target, found, login, stamp, add)
    _sudo_steps(target, found, login, stamp, add)
    _cron_steps(target, found, login, stamp, add)
    _systemd_steps(target, found, login, stamp, add)
    for f in found.setuid:
        if f.why == "owned":
            add("setuid", f"clear setuid/setgid of {f.path} (owned by {login})",
                [cmd("chmod", "ug-s", target.path(f.path))])
    if not target.rooted:
        add("sessions", "end live sessions and every process holding their uid (real, "
                        "effective, saved, fs or login uid)",
            [f"if command -v loginctl >/dev/null 2>&1; then "
             f"loginctl terminate-user {q(login)} >/dev/null 2>&1 || true; fi",
             *hunt.kill_lines(acct.uid)])
    return steps


def _account_step(target: Target, acct: Account, login: str, settings: Settings, add) -> None:
    # one usermod for the account itself: every shadow-utils call rewrites and fsyncs
    # passwd, shadow, group and gshadow, so four separate calls cost four times as much
    flags, parts = [], []
    if not acct.locked:
        flags.append("-L")
        parts.append("lock the password (usermod -L)")
    if acct.expire_day is None or acct.expire_day <= 0 or acct.expire_day > _today():
        flags += ["-e", FREEZE_DATE]
        parts.append(f"expire the account on {FREEZE_DATE} (day {FREEZE_DAY})")
    if not acct.nologin:
        flags += ["-s", settings.nologin_shell]
        parts.append(f"shell {acct.shell} -> {settings.nologin_shell}")
    if acct.groups:
        flags += ["-G", ""]
        parts.append(f"remove from groups {', '.join(acct.groups)}")
    if flags:
        add("account", "; ".join(parts), [cmd("usermod", *target.prefix(), *flags, login)])


def _key_steps(target: Target, found: Found, login: str, stamp: str, add) -> None:
    evidence, mk = _evidence_lines(target, login)
    for f in found.own_keys:
        add("keys", f"move {f.path} to {EVIDENCE_DIR}/{login}/ (root only; evidence)",
            move_aside_lines(target, login, f.path, f"keys-{stamp}-{os.path.basename(f.path)}"))
    for path, hits in found.foreign_keys.items():
        keysfile = found.foreign_texts[path]
        if keysfile.symlink:
            continue                          # listed: a human decides what the link means
        new = keyhunt.edited(keysfile, hits, login)
        saved = f"{evidence}/keys-{stamp}-{keysfile.account}-{os.path.basename(path)}"
        what = ("certificate principal line(s)" if keysfile.principals else "key line(s)")
        add("keys", f"remove {len(hits)} {what} of {login} from {path} "
                    f"(account {keysfile.account})",
            [*mk, f"printf %s {q(''.join(x + chr(10) for x in hits))} > {q(saved)}",
             *_rewrite_lines(target, path, new)])


def _sudo_steps(target: Target, found: Found, login: str, stamp: str, add) -> None:
    if found.sudoers_dropin is not None:
        add("sudoers", f"remove {sudoers_path(login)}", [cmd("rm", "-f", target.path(
            sudoers_path(login)))])
    by_file: dict[str, list] = {}
    for g in found.sudo.grants:
        if g.action == "remove":
            by_file.setdefault(g.file, []).append(g)
    for path, grants in by_file.items():
        new = sudo_grants.edit(found.sudoers_texts[path], grants,
                               f"opskit freeze {stamp} (R-ACC-6)")
        add("sudoers", f"take {login} out of {len(grants)} sudoers entr(y/ies) in {path} "
                       f"({', '.join(sorted({g.token for g in grants}))})",
            _rewrite_lines(target, path, new, check="visudo -cf"))


def _cron_steps(target: Target, found: Found, login: str, stamp: str, add) -> None:
    evidence, mk = _evidence_lines(target, login)
    for path in found.crontabs:
        add("cron", f"move crontab {path} to {EVIDENCE_DIR}/{login}/",
            [*mk, cmd("mv", "-f", target.path(path), f"{evidence}/crontab-{stamp}")])
    owned = set(found.cron_owned)
    for path in found.cron_owned:
        add("cron", f"move {path} (owned by {login}) to {EVIDENCE_DIR}/{login}/",
            [*mk, cmd("mv", "-f", target.path(path),
                      f"{evidence}/cron-{stamp}-{os.path.basename(path)}")])
    by_file: dict[str, list] = {}
    for hit in found.cron_lines:
        if hit.file not in owned:
            by_file.setdefault(hit.file, []).append(hit)
    for path, hits in by_file.items():
        lines = found.cron_texts[path].splitlines()
        for h in hits:
            lines[h.line_no - 1] = f"# opskit freeze {stamp} (R-ACC-6): {lines[h.line_no - 1]}"
        add("cron", f"comment out {len(hits)} line(s) in {path} ({hits[0].why})",
            _rewrite_lines(target, path, "\n".join(lines) + "\n"))
    if found.at_jobs:
        add("at", f"move {len(found.at_jobs)} at job(s) to {EVIDENCE_DIR}/{login}/",
            [*mk, *(cmd("mv", "-f", target.path(p), f"{evidence}/at-{stamp}-{os.path.basename(p)}")
                    for p in found.at_jobs)])


def _systemd_steps(target: Target, found: Found, login: str, stamp: str, add) -> None:
    evidence, mk = _evidence_lines(target, login)
    if found.systemd.linger:
        linger = target.path(f"/var/lib/systemd/linger/{login}")
        add("systemd", f"disable lingering (remove /var/lib/systemd/linger/{login})",
            ([] if target.rooted else [f"loginctl disable-linger {q(login)} >/dev/null 2>&1 "
                                       "|| true"]) + [cmd("rm", "-f", linger)])
    if found.systemd.user_units:
        home = (found.account or {}).get("home", "")
        units = target.path(f"{home.rstrip('/')}/.config/systemd/user")
        add("systemd", f"move {len(found.systemd.user_units)} systemd user unit(s) "
                       f"({home}/.config/systemd/user) to {EVIDENCE_DIR}/{login}/",
            [f"[ ! -L {q(units)} ]", *mk, cmd("mv", "-f", units, f"{evidence}/systemd-user-{stamp}")])


def account_open(acct: Account) -> list[str]:
    """What still lets ``acct`` log in: unlocked password, not expired, a login shell."""
    left = []
    if not acct.locked:
        left.append("password not locked")
    if acct.expire_day is None or acct.expire_day <= 0 or acct.expire_day > _today():
        left.append(f"account not expired (expire day {acct.expire_day})")
    if not acct.nologin:
        left.append(f"login shell {acct.shell}")
    return left


def remaining_paths(acct: Account | None, found: Found) -> tuple[list[str], list[str]]:
    """(access paths still open -- each blocks a 'complete' certificate --, things that
    name the login without giving rights)."""
    if acct is None:
        return [], []
    left = account_open(acct)
    for alias in found.uid_aliases:
        still = account_open(alias)
        if still:
            left.append(f"account {alias.name} shares uid {acct.uid} with {acct.name}: it logs "
                        f"in as them ({'; '.join(still)}); remove or freeze it by hand")
    if acct.groups:
        left.append(f"groups {', '.join(acct.groups)}")
    left += [f"authorized keys file {p}" for p in found.keys]
    left += [f"{len(v)} " + ("certificate principal" if found.foreign_texts[p].principals
                             else "key") + f" line(s) of theirs in {p}"
             + (" (a symlink: edit by hand)" if found.foreign_texts[p].symlink else "")
             for p, v in found.foreign_keys.items()]
    if found.keys_command:
        left.append(f"sshd AuthorizedKeysCommand {found.keys_command}: keys it serves "
                    "cannot be read; check by hand")
    if found.principals_command:
        left.append(f"sshd AuthorizedPrincipalsCommand {found.principals_command}: the "
                    "certificate principals it serves cannot be read; check by hand")
    if found.sudoers_dropin is not None:
        left.append(f"sudoers drop-in {sudoers_path(acct.name)}")
    left += [f"sudo right {g.describe()}" + ("" if g.action == "remove" else " (edit by hand)")
             for g in found.sudo.open]
    left += [f"sudo -l -U {acct.name}: {r}" for r in found.sudo_l or []]
    left += [f"crontab {p}" for p in found.crontabs]
    left += [f"cron {h.file}:{h.line_no}: {h.line.strip()} ({h.why})" for h in found.cron_lines]
    left += [f"cron file {p} (owned by them)" for p in found.cron_owned]
    left += [f"at job {p}" for p in found.at_jobs]
    if found.systemd.linger:
        left.append(f"systemd linger /var/lib/systemd/linger/{acct.name}")
    left += [f"systemd user unit {u}" for u in found.systemd.user_units]
    left += [f"systemd unit {u} runs as {acct.name} (edit by hand)"
             for u in found.systemd.system_units]
    left += [f"setuid/setgid {f.path} ({f.mode}, uid {f.owner}, "
             + ("owned by them)" if f.why == "owned" else
                "created during their tenure in a temp or home directory; remove by hand)")
             for f in found.setuid if f.why in ("owned", "planted")]
    left += [f"process {p.describe()}" for p in found.processes]
    mentions = list(found.sudo.mentions)
    return left, mentions


def tenure_blockers(before: Found, after: Found, had_sudo: bool, reviewed) -> list[str]:
    """Files that run code as root, changed during the tenure of someone who held
    sudo rights, still there, and not yet reviewed: a human must look at them.
    Other people's opskit drop-ins are left out: 'users apply' rewrote them (its
    own audit entries say so) and 'users plan' reports any edit as drift."""
    if not had_sudo:
        return []
    still = set(after.tenure) | {f.path for f in after.setuid}
    suspect = {f.path for f in before.setuid if f.why == "review"}
    changed = dict.fromkeys([*before.tenure, *sorted(suspect)])
    return [f"review {p}: runs as root and changed during their tenure (since "
            f"{before.since}); confirm with --reviewed {p}"
            for p in changed if p in still and p not in reviewed and p not in after.managed
            and (hunt.runs_as_root(p) or p in suspect)]


def had_sudo_rights(found: Found) -> bool:
    """Whether the person could act as root (or anyone) through sudo before the freeze."""
    return bool(found.sudoers_dropin or found.sudo.grants or found.sudo_l)


@dataclass
class HostFreeze:
    host: str
    status: str = "ok"                # ok | unreachable | timeout | ... (fan-out statuses)
    error: str | None = None
    account: bool = False
    found: dict = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    not_removed: list[str] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    verified: bool | None = None       # None: not checked (dry run, or host down)

    @property
    def failed(self) -> bool:
        """The host could not be frozen (unreachable, refused, a step failed): exit 3."""
        return self.status != "ok" or any(s.ok is False for s in self.steps)

    @property
    def ok(self) -> bool:
        return not self.failed and self.verified is not False

    def as_dict(self) -> dict:
        return {"host": self.host, "status": self.status, "error": self.error,
                "account": self.account, "found": self.found,
                "done": [s.detail for s in self.steps if s.ok],
                "failed": [f"{s.detail}: {s.error}" for s in self.steps if s.ok is False],
                "planned": [s.detail for s in self.steps if s.ok is None],
                "verified": self.verified, "remaining": self.remaining,
                "not_removed": self.not_removed, "login_probes": self.probes}


def freeze_host(target: Target, login: str, person: str, settings: Settings, stamp: str,
                dry_run: bool = False, opts: HuntOptions | None = None) -> HostFreeze:
    """Find, close and verify every channel of ``login`` on one host."""
    opts = opts or HuntOptions()
    timeout = settings.host_timeout
    acct, found = inspect(target, login, opts, timeout)
    result = HostFreeze(target.name, account=acct is not None, found=found.as_dict())
    if acct is None:
        result.verified = None if dry_run else True
        return result
    if acct.uid < settings.min_uid:
        result.status = "refused"
        result.error = (f"{target.name}: '{login}' is a system account (uid {acct.uid} < "
                        f"{settings.min_uid}); opskit never freezes system accounts")
        result.verified = False
        return result
    result.steps = freeze_steps(target, acct, found, login, person, settings, stamp)
    if dry_run:
        return result
    if result.steps:          # the steps, then the verifying re-read (R-ACC-6), one trip
        files, commands = inspect_spec(target, login, opts)
        got = run_steps_then_gather(target, result.steps, files, commands, timeout=timeout)
        acct2, found2 = inspect_parse(target, login, opts, files, got)
    else:                     # nothing left to do: what was just read is the verification
        acct2, found2 = acct, found
    result.remaining, result.not_removed = remaining_paths(acct2, found2)
    result.remaining += tenure_blockers(found, found2, had_sudo_rights(found), opts.reviewed)
    result.remaining += _probe(target, login, found, opts, result)
    result.verified = not result.remaining
    return result


def _probe(target: Target, login: str, found: Found, opts: HuntOptions,
           result: HostFreeze) -> list[str]:
    """SSH login probes with the person's public keys; the open ones as remaining."""
    where = opts.variables.get(PROBE_VAR) or (None if target.rooted else target.host.address)
    if not where or not found.key_lines:
        return []
    address, _, port = str(where).rpartition(":")
    accounts = list(dict.fromkeys([login, "root", *(found.foreign_texts[p].account
                                                    for p in found.foreign_keys)]))
    keys = {keyhunt.fingerprint(b): line for b, line in found.key_lines.items()}
    known = opts.variables.get(PROBE_KNOWN_HOSTS_VAR) or opts.known_hosts
    probes = probe_keys(address or str(where), int(port or 22), accounts, keys, known)
    result.probes = [p.describe() for p in probes]
    return [p.describe() for p in probes if p.accepted is not False]


@dataclass
class FreezeRun(HostRunOutcome):
    person: str
    login: str
    reason: str
    ticket: str
    operator: str
    started: str
    hosts: list[HostFreeze]
    dry_run: bool = False
    duration: float = 0.0
    id: str = ""
    path: str | None = None
    databases: list[DbFreeze] = field(default_factory=list)
    reviewed: list[str] = field(default_factory=list)

    @property
    def failed_hosts(self) -> list[str]:
        return [h.host for h in self.hosts if h.failed] + \
            [f"db:{d.database}" for d in self.databases if d.status != "ok"]

    @property
    def open_hosts(self) -> list[str]:
        """Hosts (and databases) where something is still open."""
        return [h.host for h in self.hosts if h.remaining] + \
            [f"db:{d.database}" for d in self.databases if d.remaining]

    @property
    def complete(self) -> bool:
        return not self.dry_run and not self.failed_hosts and not self.open_hosts

    @property
    def exit_code(self) -> int:
        from opskit.core.errors import EXIT_FINDINGS, EXIT_OK, EXIT_OPERATIONAL
        if self.failed_hosts:
            return EXIT_OPERATIONAL
        return EXIT_FINDINGS if self.open_hosts and not self.dry_run else EXIT_OK

    def certificate(self) -> dict:
        """Who, when, which hosts, what was found, done and verified (R-ACC-6, R-AUD-3)."""
        return {"certificate": "opskit users freeze", "rule": "R-ACC-6", "id": self.id,
                "person": self.person, "login": self.login, "reason": self.reason,
                "ticket": self.ticket, "operator": self.operator, "started": self.started,
                "finished": _now(), "duration": round(self.duration, 3),
                "dry_run": self.dry_run,
                "result": ("dry run" if self.dry_run else
                           "complete" if self.complete else "incomplete"),
                "hosts_with_account": [h.host for h in self.hosts if h.account],
                "failed_hosts": self.failed_hosts, "open": self.open_hosts,
                "reviewed": self.reviewed,
                "hosts": [h.as_dict() for h in self.hosts],
                "databases": [d.as_dict() for d in self.databases]}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def freeze_fleet(specs: Sequence[Any], person, settings: Settings, *, reason: str,
                 ticket: str = "", operator: str = "", dry_run: bool = False,
                 since: int | None = None, reviewed: Sequence[str] = (),
                 databases: Sequence[Any] = (), tenure_paths: Sequence[str] = ()
                 ) -> FreezeRun:
    """Freeze ``person`` on every host of ``specs`` in parallel, then on ``databases``."""
    started = time.monotonic()
    now = _dt.datetime.now(_dt.timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    variables = {str(getattr(s, "name", s)): getattr(s, "vars", {}) or {} for s in specs}
    known = getattr(settings.ssh_settings, "known_hosts", None)

    def work(host: Host) -> HostFreeze:
        opts = HuntOptions(list(person.ssh_keys), since, tuple(reviewed), tuple(tenure_paths),
                           variables.get(host.name) or {}, known)
        return freeze_host(Target.of(host, variables.get(host.name)), person.login, person.id,
                           settings, stamp, dry_run, opts)

    outcomes = fan_out(list(specs), work, concurrency=settings.concurrency,
                       timeout_per_host=settings.host_timeout, ssh_settings=settings.ssh_settings)
    hosts = [o.value if o.ok else HostFreeze(o.name, status=o.status, error=o.error)
             for o in outcomes]
    dbs = [freeze_database(spec, person.login, dry_run) for spec in databases]
    run = FreezeRun(person.id, person.login, reason, ticket, operator,
                    now.replace(microsecond=0).isoformat(), hosts, dry_run,
                    time.monotonic() - started, databases=dbs, reviewed=list(reviewed))
    run.id = f"{stamp}-{person.id}-{secrets.token_hex(2)}"
    return run


def save_certificate(state_dir: str, run: FreezeRun) -> str:
    """Write the certificate to ``<state_dir>/accounts/freezes/<id>.json`` (0600)."""
    directory = ensure_private_dir(StateLayout(state_dir).freezes)
    path = os.path.join(directory, f"{run.id}.json")
    run.path = path
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(run.certificate(), fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.replace(path + ".tmp", path)
    return path
