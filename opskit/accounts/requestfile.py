"""Access-request files: the record of one request and how the store keeps it (R-ACC-3).

The workflow and its rules are in opskit.accounts.requests; this module only
reads and writes the files, so that loading the declared model
(opskit.accounts.declared) can merge the applied grants without the workflow.

  applied_grants(config) -> dict[person_id, list[role]]  roles granted by applied requests

Storage: one JSON file per request in ``accounts.requests_dir`` (default
``<state_dir>/access``), named ``AR-0001.json``; every change is an appended event
(``who``, ``when``, ``comment``) and the state is computed by replaying the events.
Writers hold an exclusive ``FileLock`` on ``<dir>/.lock`` for read-decide-write;
files are replaced atomically (temp file, fsync, rename, fsync of the directory), so
readers never need the lock and a crash leaves either the old or the new file.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from opskit.core.atomicfile import write_atomic
from opskit.core.errors import OperationalError
from opskit.core.state import resolve_state_dir

FORMAT = 1
ROLE, UNFREEZE = "role", "unfreeze"
KINDS = (ROLE, UNFREEZE)
REQUESTED, APPROVED, REJECTED, APPLIED, WITHDRAWN = (
    "requested", "approved", "rejected", "applied", "withdrawn")
STATES = (REQUESTED, APPROVED, REJECTED, APPLIED, WITHDRAWN)
OPEN_STATES = (REQUESTED, APPROVED)

REQUEST_ID = re.compile(r"^AR-(\d{4,})$")

# --- the request ---------------------------------------------------------------------------

@dataclass
class AccessRequest:
    id: str
    kind: str                      # 'role' | 'unfreeze'
    person: str
    role: str | None
    tier: str | None
    reason: str
    ticket: str
    needed: int                    # distinct approvals needed, fixed at request time
    events: list[dict] = field(default_factory=list)   # {event, actor, time, comment, ...}

    # --- derived from the events --------------------------------------------------------
    @property
    def requester(self) -> str:
        return self.events[0]["actor"] if self.events else ""

    @property
    def requested_at(self) -> str:
        return self.events[0]["time"] if self.events else ""

    @property
    def state(self) -> str:
        state = REQUESTED
        for e in self.events[1:]:
            state = {"approve": state, "reject": REJECTED, "withdraw": WITHDRAWN,
                     "apply": APPLIED}.get(e["event"], state)
            if e["event"] == "approve" and len(self.approvers_until(e)) >= self.needed:
                state = APPROVED
        return state

    def approvers_until(self, last: dict | None = None) -> list[str]:
        out: list[str] = []
        for e in self.events:
            if e["event"] == "approve" and e["actor"] not in out:
                out.append(e["actor"])
            if e is last:
                break
        return out

    @property
    def approvers(self) -> list[str]:
        return self.approvers_until()

    def last(self, event: str) -> dict | None:
        for e in reversed(self.events):
            if e["event"] == event:
                return e
        return None

    @property
    def applier(self) -> str | None:
        e = self.last("apply")
        return e["actor"] if e else None

    @property
    def what(self) -> str:
        return f"role {self.role}" if self.kind == ROLE else "unfreeze"

    def waiting_for(self) -> str:
        if self.state == REQUESTED:
            missing = self.needed - len(self.approvers)
            return f"{missing} more approval(s)" + (" (mutual review, R-ACC-5)"
                                                    if self.tier == "special" else "")
        if self.state == APPROVED:
            return ("apply by a designated admin" if self.kind == ROLE else
                    f"opskit users unfreeze {self.person} --request {self.id}")
        return "-"

    def row(self) -> dict:
        """One line for ``access list``."""
        return {"id": self.id, "state": self.state, "kind": self.kind, "person": self.person,
                "role": self.role, "tier": self.tier, "requester": self.requester,
                "approvers": self.approvers, "needed": self.needed, "applier": self.applier,
                "requested_at": self.requested_at, "ticket": self.ticket,
                "waiting_for": self.waiting_for()}

    def to_dict(self) -> dict:
        """The full record for ``access show --json``: the row plus reason and history."""
        return {**self.row(), "reason": self.reason, "events": [dict(e) for e in self.events]}

    def to_file(self) -> dict:
        return {"format": FORMAT, "id": self.id, "kind": self.kind, "person": self.person,
                "role": self.role, "tier": self.tier, "reason": self.reason,
                "ticket": self.ticket, "needed": self.needed, "events": self.events}

    @classmethod
    def from_file(cls, data: Any, path: str) -> "AccessRequest":
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            req = cls(data["id"], data["kind"], data["person"], data.get("role"),
                      data.get("tier"), data.get("reason", ""), data.get("ticket", ""),
                      int(data["needed"]), list(data["events"]))
            if req.kind not in KINDS or not req.events or req.events[0]["event"] != "request":
                raise ValueError("bad kind or first event")
            for e in req.events:
                if not isinstance(e, dict) or not {"event", "actor", "time"} <= set(e):
                    raise ValueError("an event lacks event/actor/time")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise OperationalError(f"access request file {path} is damaged ({exc})",
                                   hint="restore it from backup; every change is also in the "
                                        "audit log") from None
        return req


# --- the files ------------------------------------------------------------------------------

def store_dir(config) -> str:
    """``accounts.requests_dir`` (relative to the config file), else ``<state_dir>/access``."""
    configured = config.get("accounts.requests_dir")
    if configured:
        return config.relative_path(configured)
    return os.path.join(resolve_state_dir(config.get("state_dir")), "access")


def write_request(path: str, data: dict) -> None:
    """Replace the request file ``path`` atomically (temp file, fsync, rename, fsync of the
    directory); OperationalError (exit 3) naming the file if it cannot be written."""
    body = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    try:
        write_atomic(path, body, sync_dir=True)
    except OSError as exc:
        raise OperationalError(f"cannot write access request {path}: {exc.strerror}") from None


def read_request(path: str) -> AccessRequest:
    """The request in ``path``; OperationalError (exit 3) naming the file if it is unreadable,
    damaged or holds another id."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise OperationalError(f"cannot read access request {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise OperationalError(f"access request file {path} is not valid JSON ({exc})") from None
    req = AccessRequest.from_file(data, path)
    if f"{req.id}.json" != os.path.basename(path):
        raise OperationalError(f"access request file {path} holds {req.id}")
    return req


def scan_requests(directory: str) -> list[AccessRequest]:
    """Every request file in ``directory`` (none if it does not exist yet), by number."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OperationalError(f"cannot list access requests in {directory}: "
                               f"{exc.strerror}") from None
    out = [read_request(os.path.join(directory, n)) for n in names
           if n.endswith(".json") and REQUEST_ID.match(n[:-5])]
    return sorted(out, key=lambda r: int(REQUEST_ID.match(r.id).group(1)))


def applied_grants(config) -> dict[str, list[str]]:
    """Roles granted to people by applied access requests, by person id (in request order).
    Reads without the lock (files are replaced atomically) and creates nothing."""
    grants: dict[str, list[str]] = {}
    for req in scan_requests(store_dir(config)):
        if req.kind == ROLE and req.role and req.state == APPLIED:
            roles = grants.setdefault(req.person, [])
            if req.role not in roles:
                roles.append(req.role)
    return grants
