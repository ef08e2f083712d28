"""Moving a person to another post: one plan, old rights out, new rights in (R-ACC-6, R-ACC-4).

``opskit users transfer PERSON --to-post P`` computes, for every inventory
host, what the person should have with post P (the new post's roles plus
their own and request-granted roles; a separation-of-duties conflict is
refused before any host is touched, R-ACC-2):

* hosts the new post (or the person's own host groups) covers: the account
  is created or brought to the new roles -- the old post's groups and sudo
  rules removed, the new ones granted -- exactly as ``users apply`` would;
* hosts only the old post covered: the account is frozen there (the full
  R-ACC-6 freeze, verified), not deleted, so its files stay as evidence.

How the roster learns the new post: after every host succeeded, opskit edits
the one ``post:`` line of the person in roster.yaml (or inserts it), keeping
every comment and all other lines byte for byte; the edited text is parsed
and validated before it replaces the file atomically, and anything it cannot
edit safely is refused with the exact edit to make by hand. A failed host
leaves the roster unchanged and exits 3: rerun the same command to finish.
A roster that already names the new post (edited by hand) is fine: the host
side is then simply (re)applied.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from opskit.core.errors import UsageError
from opskit.core.yamlfile import parse_yaml
from opskit.hosts.base import Host
from opskit.hosts.fanout import fan_out

from .freeze import HostFreeze, freeze_host
from .provision import HostPlan, Settings, initial_passwords, on_host, plan_host, read_state
from .roster import parse_roster
from .target import HostRunOutcome, Target, run_steps

_POST_LINE = re.compile(r"^(?P<lead>\s*post\s*:\s*)(?P<value>[^#\n]*?)(?P<tail>\s*(#.*)?)$")
_PLAIN = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class RosterEdit:
    path: str
    line_no: int
    old: str | None           # the old line (None: inserted)
    new: str
    text: str = field(repr=False, default="")

    def describe(self) -> str:
        if self.old is None:
            return f"{self.path}:{self.line_no}: insert '{self.new.strip()}'"
        return f"{self.path}:{self.line_no}: '{self.old.strip()}' -> '{self.new.strip()}'"


def roster_edit(path: str, person_id: str, new_post: str, model) -> RosterEdit | None:
    """The one-line edit of roster.yaml that sets ``person_id``'s post; None when it
    already says so. UsageError (with the manual edit) when it cannot be done safely."""
    manual = (f"edit {path} by hand: under people: {person_id}: set 'post: {new_post}', "
              "then rerun")
    if not _PLAIN.match(new_post):
        raise UsageError(f"post name {new_post!r} cannot be written safely; {manual}")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    doc = parse_yaml(text, path)
    before = parse_roster(doc, model)
    if before.people[person_id].post == new_post:
        return None
    lines = text.split("\n")
    post_line = doc.lines.get(("people", person_id, "post"))
    if post_line is not None:
        m = _POST_LINE.match(lines[post_line - 1])
        if not m:
            raise UsageError(f"the post line of {person_id} is not a simple 'post: VALUE' line; "
                             + manual)
        old = lines[post_line - 1]
        new = f"{m['lead']}{new_post}{m['tail']}"
        lines[post_line - 1] = new
        edit = RosterEdit(path, post_line, old, new)
    else:
        children = [ln for key, ln in doc.lines.items()
                    if len(key) == 3 and key[:2] == ("people", person_id)]
        person_line = doc.lines.get(("people", person_id))
        if not children or person_line is None or min(children) <= person_line:
            raise UsageError(f"{person_id} has no block of keys to add 'post:' to; " + manual)
        first = lines[min(children) - 1]
        indent = first[: len(first) - len(first.lstrip())]
        new = f"{indent}post: {new_post}"
        lines.insert(person_line, new)
        edit = RosterEdit(path, person_line + 1, None, new)
    edit.text = "\n".join(lines)
    after = parse_roster(parse_yaml(edit.text, path), model)       # must still validate
    want = before.people[person_id]
    got = after.people[person_id]
    same_others = all(after.people.get(k) == v for k, v in before.people.items()
                      if k != person_id) and set(after.people) == set(before.people)
    want.post, saved = new_post, want.post
    try:
        if got != want or not same_others:
            raise UsageError("editing the roster line would change more than the post; " + manual)
    finally:
        want.post = saved
    return edit


def write_roster(edit: RosterEdit) -> None:
    mode = os.stat(edit.path).st_mode & 0o7777
    tmp = os.path.join(os.path.dirname(os.path.abspath(edit.path)),
                       f".{os.path.basename(edit.path)}.opskit-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(edit.text)
    os.replace(tmp, edit.path)


@dataclass
class HostTransfer:
    host: str
    kind: str = "none"               # grant | freeze | none
    status: str = "ok"
    error: str | None = None
    plan: HostPlan | None = None
    freeze: HostFreeze | None = None

    @property
    def steps(self):
        if self.plan:
            return self.plan.steps
        if self.freeze:
            return self.freeze.steps
        return []

    @property
    def ok(self) -> bool:
        if self.status != "ok":
            return False
        if self.freeze is not None:
            return self.freeze.ok
        return not any(s.ok is False for s in self.steps)

    def as_dict(self) -> dict:
        return {"host": self.host, "change": self.kind, "status": self.status,
                "error": self.error,
                "plan": self.plan.as_dict() if self.plan else None,
                "freeze": self.freeze.as_dict() if self.freeze else None}


@dataclass
class TransferRun(HostRunOutcome):
    person: str
    old_post: str | None
    new_post: str
    roles_before: list[str]
    roles_after: list[str]
    hosts: list[HostTransfer]
    edit: RosterEdit | None
    dry_run: bool = False
    roster_written: bool = False
    duration: float = 0.0
    passwords: dict = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict:
        return {"person": self.person, "old_post": self.old_post, "new_post": self.new_post,
                "roles_before": self.roles_before, "roles_after": self.roles_after,
                "dry_run": self.dry_run,
                "roster_edit": self.edit.describe() if self.edit else None,
                "roster_written": self.roster_written, "failed_hosts": self.failed_hosts,
                "exit_code": self.exit_code, "duration": round(self.duration, 3),
                "hosts": [h.as_dict() for h in self.hosts]}


def new_roles(roster, person, new_post: str) -> list[str]:
    post_roles = roster.model.post(new_post).roles
    granted = roster.grants.get(person.id, [])
    return list(dict.fromkeys([*post_roles, *person.roles, *granted]))


def transfer(specs: Sequence[Any], roster, person, new_post: str, settings: Settings, *,
             dry_run: bool = False) -> TransferRun:
    started = time.monotonic()
    model = roster.model
    model.post(new_post)                                  # unknown post: exit 2
    if not person.active:
        raise UsageError(f"{person.id} has status '{person.status}' in the roster; only an "
                         "active person can be transferred (a departed one stays frozen)")
    roles = new_roles(roster, person, new_post)
    conflicts = model.conflicts(roles)
    if conflicts:
        raise UsageError(f"transferring {person.id} to {new_post} would break "
                         + "; ".join(c.describe() for c in conflicts),
                         hint="the person's own or granted roles conflict with the new post's")
    edit = roster_edit(roster.source, person.id, new_post, model) if roster.source else None
    moved = _with_post(person, new_post)
    info = {str(getattr(s, "name", s)): (getattr(s, "groups", []) or [],
                                         getattr(s, "vars", {}) or {}) for s in specs}
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    passwords = {} if dry_run else initial_passwords([person])

    def work(host: Host) -> HostTransfer:
        groups, variables = info[host.name]
        target = Target.of(host, variables)
        post_roster = _RosterView(roster, person.id, new_post)
        if on_host(post_roster, moved, groups):
            state = read_state(target, [person.login], settings.min_uid, settings.host_timeout)
            plan = plan_host(target, roster, [person], groups, settings,
                             overrides={person.id: (roles, True)}, state=state,
                             passwords=passwords)
            if not dry_run and plan.steps:
                run_steps(target, plan.steps, timeout=settings.host_timeout)
            return HostTransfer(host.name, "grant", plan=plan)
        result = freeze_host(target, person.login, person.id, settings, stamp, dry_run)
        kind = "freeze" if result.account else "none"
        return HostTransfer(host.name, kind, status="ok" if result.status == "ok" else
                            result.status, error=result.error, freeze=result)

    outcomes = fan_out(list(specs), work, concurrency=settings.concurrency,
                       timeout_per_host=settings.host_timeout, ssh_settings=settings.ssh_settings)
    hosts = [o.value if o.ok else HostTransfer(o.name, status=o.status, error=o.error)
             for o in outcomes]
    run = TransferRun(person.id, person.post, new_post, roster.roles_of(person), roles, hosts,
                      edit, dry_run, passwords=passwords)
    if not dry_run and not run.failed_hosts and edit is not None:
        write_roster(edit)
        run.roster_written = True
    run.duration = time.monotonic() - started
    return run


def _with_post(person, post: str):
    import dataclasses
    return dataclasses.replace(person, post=post)


class _RosterView:
    """The roster as if ``person_id`` held ``post`` (for host-group membership)."""

    def __init__(self, roster, person_id: str, post: str):
        self._roster, self._pid, self._post = roster, person_id, post

    def host_groups_of(self, person):
        post_groups = self._roster.model.posts[self._post].host_groups
        return list(dict.fromkeys([*post_groups, *person.host_groups]))
