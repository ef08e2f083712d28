"""Freezing a person's accounts on departure or transfer (R-ACC-6), with a certificate.

On every selected host where the person has an account:

1. read what is there (the *found* part of the certificate): password and
   expiry state, shell, supplementary groups, authorized_keys files, the
   opskit sudoers drop-in and any other sudoers line naming the login,
   crontab, at jobs, live processes;
2. run the steps still needed (the *done* part), all in one round trip:
   ``usermod -L`` (lock), ``usermod -e 1970-01-02`` (expire on day 1: an
   unambiguous past date -- 0 means "expired" to some tools and "never" to
   others), ``usermod -s <nologin>``, ``usermod -G ''`` (every supplementary
   group: a frozen account needs none), authorized_keys moved aside to
   ``authorized_keys.frozen-<time>`` (kept as evidence), the opskit drop-in
   removed and other sudoers user lines commented out (each rewritten file
   validated with ``visudo -cf`` first), crontab and at jobs moved to
   ``/var/lib/opskit/frozen/<login>/``, then live sessions and processes
   ended (``loginctl terminate-user``, ``pkill -KILL -u``);
3. re-read the host and **verify** that no access path remains (the
   *verified* part); what could not be removed automatically (e.g. a login
   inside a sudoers User_Alias) is listed as *not removed*.

Every step checks before it acts, so a rerun finishes what an interrupted
or partly failed run left. Hosts that fail are listed and make the command
exit 3. On rooted targets (a sysroot or ``accounts_root`` image) there are
no processes, so step 2's last part is 'n/a'.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from opskit.core.state import StateLayout, ensure_private_dir
from opskit.hosts.base import Host
from opskit.hosts.fanout import fan_out
from opskit.hosts.userdb import EPOCH_DAY, Account

from .provision import Settings, sudoers_path
from .target import HostRunOutcome, Step, Target, cmd, gather, q, run_steps_then_gather

FREEZE_DATE = "1970-01-02"      # day 1 since the epoch: past, and never read as "unset"
FREEZE_DAY = 1
EVIDENCE_DIR = "/var/lib/opskit/frozen"
CRONTABS = ("/var/spool/cron/crontabs", "/var/spool/cron")     # Debian, RHEL
AT_DIRS = ("/var/spool/cron/atjobs", "/var/spool/at")
_FILE_MARK = "@@opskit-file "
REASONS = ("departure", "transfer")


def _today() -> int:
    return int(time.time() // EPOCH_DAY)


@dataclass
class SudoersHit:
    file: str
    line_no: int
    line: str
    removable: bool          # a user spec starting with the login (commented out on freeze)


def sudoers_hits(files: dict[str, str], login: str) -> list[SudoersHit]:
    """Lines of sudoers ``files`` (path -> text) that name ``login``."""
    hits = []
    for path, text in files.items():
        for i, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or (line.startswith("#") and not line.startswith(("#include",))):
                continue
            tokens = [t for t in re.split(r"[\s,=:!()]+", line) if t]
            if login not in tokens:
                continue
            first = line.split()[0]
            hits.append(SudoersHit(path, i, raw, removable=first == login))
    return hits


@dataclass
class Found:
    account: dict | None = None
    keys: list[str] = field(default_factory=list)
    sudoers_dropin: str | None = None        # content of the opskit drop-in
    sudoers: list[SudoersHit] = field(default_factory=list)
    crontabs: list[str] = field(default_factory=list)
    at_jobs: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    sudoers_texts: dict[str, str] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {"account": self.account, "authorized_keys": self.keys,
                "sudoers_dropin": self.sudoers_dropin,
                "sudoers_lines": [f"{h.file}:{h.line_no}: {h.line.strip()}" for h in self.sudoers],
                "crontabs": self.crontabs, "at_jobs": self.at_jobs,
                "processes": self.processes}


def inspect(target: Target, login: str, settings: Settings,
            timeout: float | None = None) -> tuple[Account | None, Found]:
    """What access ``login`` has on the target, in one round trip: the passwd, group
    and shadow files plus commands that find the home and uid themselves."""
    files, commands = _inspect_spec(target, login)
    return _inspect_parse(target, login, files, gather(target, files, commands,
                                                       timeout=timeout))


def _inspect_spec(target: Target, login: str) -> tuple[dict, dict]:
    files = {"passwd": "/etc/passwd", "group": "/etc/group", "shadow": "/etc/shadow",
             "sudoers:/etc/sudoers": "/etc/sudoers"}
    for d in CRONTABS:
        files[f"cron:{d}/{login}"] = f"{d}/{login}"
    root = target.root or ""
    who = (f"r=$(awk -F: -v u={q(login)} '$1==u{{print $3\" \"$6; exit}}' "
           f"{q(target.path('/etc/passwd'))}); [ -n \"$r\" ] || exit 0; "
           'uid=${r%% *}; home=${r#* }; ')
    sudoers_d = target.path("/etc/sudoers.d")
    commands = {
        "keys": who + "".join(
            f'f={q(root)}"$home"/.ssh/{name}; if [ -e "$f" ] || [ -L "$f" ]; then '
            f'echo "$home/.ssh/{name}"; fi; ' for name in ("authorized_keys",
                                                           "authorized_keys2")),
        "sudoers.d": f'for f in {q(sudoers_d)}/*; do [ -f "$f" ] || continue; '
                     f'printf "{_FILE_MARK}%s\\n" "$f"; cat "$f"; echo; done',
        "at": who + " ".join(["find", *(q(target.path(d)) for d in AT_DIRS), "-maxdepth", "1",
                              "-type", "f", "-uid", '"$uid"', "2>/dev/null", "; true"]),
    }
    if not target.rooted:
        # zombies (state Z) are dead already and only wait to be reaped
        commands["procs"] = (f"ps -u {q(login)} -o pid=,stat=,comm= 2>/dev/null | "
                             "awk '$2 !~ /^Z/ {print $1\" \"$3}'")
    return files, commands


def _inspect_parse(target: Target, login: str, files: dict, got: dict
                   ) -> tuple[Account | None, Found]:
    from opskit.hosts.userdb import userdb_from_text
    if got["passwd"] is None or got["group"] is None:
        from opskit.hosts.base import HostError
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
    found.keys = [p for p in got["keys"].decode("utf-8", "replace").splitlines() if p]
    for key, value in got.items():
        kind, _, rest = key.partition(":")
        if value is None:
            continue
        if kind == "cron":
            found.crontabs.append(files[key])
        elif kind == "sudoers":
            found.sudoers_texts[rest] = value.decode("utf-8", "replace")
    text = (got.get("sudoers.d") or b"").decode("utf-8", "replace")
    current = None
    chunks: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith(_FILE_MARK):
            real = line[len(_FILE_MARK):]
            current = real[len(target.root):] if target.root and real.startswith(target.root) \
                else real
            chunks[current] = []
        elif current is not None:
            chunks[current].append(line)
    dropin = sudoers_path(login)
    for path, lines in chunks.items():
        if os.path.basename(path).startswith(".") or "~" in os.path.basename(path):
            continue                     # sudo ignores these (and our temp files)
        if path == dropin:
            found.sudoers_dropin = "\n".join(lines).rstrip("\n") + "\n"
        else:
            found.sudoers_texts[path] = "\n".join(lines)
    found.sudoers = sudoers_hits(found.sudoers_texts, login)
    root = target.root or ""
    found.at_jobs = [p[len(root):] for p in (got.get("at") or b"").decode().split("\n") if p]
    if "procs" in got:
        found.processes = [p for p in got["procs"].decode("utf-8", "replace").splitlines() if p]
    return acct, found


def freeze_steps(target: Target, acct: Account, found: Found, login: str, person: str,
                 settings: Settings, stamp: str) -> list[Step]:
    """The steps still needed to freeze ``login`` on the target, in order."""
    host = target.name
    steps: list[Step] = []
    pre = target.prefix()

    def add(action, detail, lines):
        steps.append(Step(host, person, action, detail, lines))

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
        add("account", "; ".join(parts), [cmd("usermod", *pre, *flags, login)])
    for path in found.keys:
        real = target.path(path)
        add("keys", f"move {path} aside to {os.path.basename(path)}.frozen-{stamp} (evidence)",
            [f"[ ! -L {q(os.path.dirname(real))} ]",
             cmd("mv", "-f", real, f"{real}.frozen-{stamp}")])
    if found.sudoers_dropin is not None:
        add("sudoers", f"remove {sudoers_path(login)}", [cmd("rm", "-f", target.path(
            sudoers_path(login)))])
    by_file: dict[str, list] = {}
    for hit in found.sudoers:
        if hit.removable:
            by_file.setdefault(hit.file, []).append(hit)
    for path, hits in by_file.items():
        text = found.sudoers_texts[path]
        lines = text.splitlines()
        for hit in hits:
            lines[hit.line_no - 1] = (f"# opskit freeze {stamp} (R-ACC-6): "
                                      f"{lines[hit.line_no - 1].strip()}")
        new = "\n".join(lines) + "\n"
        real = target.path(path)
        tmp = os.path.join(os.path.dirname(real), f".{os.path.basename(real)}.opskit-tmp")
        add("sudoers", f"comment out {len(hits)} line(s) for {login} in {path}",
            [f"printf %s {q(new)} > {q(tmp)}", f"chmod --reference={q(real)} {q(tmp)}",
             f"if ! out=$(visudo -cf {q(tmp)} 2>&1); then rm -f {q(tmp)}; "
             f"echo \"visudo -cf rejected the edited file; left unchanged: $out\"; exit 1; fi",
             cmd("mv", "-f", tmp, real)])
    evidence = target.path(f"{EVIDENCE_DIR}/{login}")
    for path in found.crontabs:
        add("cron", f"move crontab {path} to {EVIDENCE_DIR}/{login}/",
            [cmd("mkdir", "-p", "-m", "700", evidence),
             cmd("mv", "-f", target.path(path), f"{evidence}/crontab-{stamp}")])
    if found.at_jobs:
        add("at", f"move {len(found.at_jobs)} at job(s) to {EVIDENCE_DIR}/{login}/",
            [cmd("mkdir", "-p", "-m", "700", evidence),
             *(cmd("mv", "-f", target.path(p), f"{evidence}/at-{stamp}-{os.path.basename(p)}")
               for p in found.at_jobs)])
    if not target.rooted:
        add("sessions", "end live sessions and processes (loginctl terminate-user, "
                        "pkill -KILL -u)",
            [f"if command -v loginctl >/dev/null 2>&1; then "
             f"loginctl terminate-user {q(login)} >/dev/null 2>&1 || true; fi",
             *[f"pkill -KILL -u {q(login)} || [ $? -eq 1 ]; sleep 0.2"] * 3])
    return steps


def remaining_paths(acct: Account | None, found: Found) -> tuple[list[str], list[str]]:
    """(access paths still open, things named that opskit could not remove)."""
    if acct is None:
        return [], []
    left = []
    if not acct.locked:
        left.append("password not locked")
    if acct.expire_day is None or acct.expire_day <= 0 or acct.expire_day > _today():
        left.append(f"account not expired (expire day {acct.expire_day})")
    if not acct.nologin:
        left.append(f"login shell {acct.shell}")
    if acct.groups:
        left.append(f"groups {', '.join(acct.groups)}")
    left += [f"authorized keys file {p}" for p in found.keys]
    if found.sudoers_dropin is not None:
        left.append(f"sudoers drop-in {sudoers_path(acct.name)}")
    left += [f"sudoers line {h.file}:{h.line_no}" for h in found.sudoers if h.removable]
    left += [f"crontab {p}" for p in found.crontabs]
    left += [f"at job {p}" for p in found.at_jobs]
    left += [f"process {p}" for p in found.processes]
    manual = [f"{h.file}:{h.line_no}: {h.line.strip()} (names the login; edit by hand)"
              for h in found.sudoers if not h.removable]
    return left, manual


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
    verified: bool | None = None       # None: not checked (dry run, or host down)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.verified is not False and \
            not any(s.ok is False for s in self.steps)

    def as_dict(self) -> dict:
        return {"host": self.host, "status": self.status, "error": self.error,
                "account": self.account, "found": self.found,
                "done": [s.detail for s in self.steps if s.ok],
                "failed": [f"{s.detail}: {s.error}" for s in self.steps if s.ok is False],
                "planned": [s.detail for s in self.steps if s.ok is None],
                "verified": self.verified, "remaining": self.remaining,
                "not_removed": self.not_removed}


def freeze_host(target: Target, login: str, person: str, settings: Settings, stamp: str,
                dry_run: bool = False) -> HostFreeze:
    timeout = settings.host_timeout
    acct, found = inspect(target, login, settings, timeout)
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
        files, commands = _inspect_spec(target, login)
        got = run_steps_then_gather(target, result.steps, files, commands, timeout=timeout)
        acct2, found2 = _inspect_parse(target, login, files, got)
    else:                     # nothing left to do: what was just read is the verification
        acct2, found2 = acct, found
    result.remaining, result.not_removed = remaining_paths(acct2, found2)
    result.verified = not result.remaining
    return result


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

    @property
    def complete(self) -> bool:
        return not self.dry_run and not self.failed_hosts

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
                "failed_hosts": self.failed_hosts,
                "hosts": [h.as_dict() for h in self.hosts]}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def freeze_fleet(specs: Sequence[Any], person, settings: Settings, *, reason: str,
                 ticket: str = "", operator: str = "", dry_run: bool = False) -> FreezeRun:
    started = time.monotonic()
    now = _dt.datetime.now(_dt.timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    variables = {str(getattr(s, "name", s)): getattr(s, "vars", {}) or {} for s in specs}

    def work(host: Host) -> HostFreeze:
        return freeze_host(Target.of(host, variables.get(host.name)), person.login, person.id,
                           settings, stamp, dry_run)

    outcomes = fan_out(list(specs), work, concurrency=settings.concurrency,
                       timeout_per_host=settings.host_timeout, ssh_settings=settings.ssh_settings)
    hosts = [o.value if o.ok else HostFreeze(o.name, status=o.status, error=o.error)
             for o in outcomes]
    run = FreezeRun(person.id, person.login, reason, ticket, operator,
                    now.replace(microsecond=0).isoformat(), hosts, dry_run,
                    time.monotonic() - started)
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
