"""Access-request files: the record of one request and how the store keeps it (R-ACC-3).

The workflow and its rules are in opskit.accounts.requests; this module only
reads and writes the files, so that loading the declared model
(opskit.accounts.declared) can merge the applied grants without the workflow.

  applied_grants(config, keys_of) -> dict[person_id, list[role]]  roles granted by applied
      requests, each verified (``verify``) against the roster's signing keys

Signatures (R-ACC-3, R-ACC-5, R-DAT-2): every event is signed with its actor's Ed25519 key
(``Person.signing_key`` in the roster). The request's *content hash* is the SHA-256 of the
canonical JSON of the per-field digests of CONTENT_FIELDS; the first event carries those
digests (so an edited field is named), and event *i* signs ``{request: content hash,
prev: SHA-256 of event i-1 with its signature, event: event i without its signature}``
under CONTEXT. So an approval cannot be moved to another request, an edited field or
event breaks a signature, and a removed event breaks the next one's ``prev``.

Storage: one JSON file per request in ``accounts.requests_dir`` (default
``<state_dir>/access``), named ``AR-0001.json``; every change is an appended event
(``who``, ``when``, ``comment``) and the state is computed by replaying the events.
Writers hold an exclusive ``FileLock`` on ``<dir>/.lock`` for read-decide-write;
files are replaced atomically (temp file, fsync, rename, fsync of the directory), so
readers never need the lock and a crash leaves either the old or the new file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from opskit.core.atomicfile import write_atomic
from opskit.core.audit import canonical
from opskit.core import errors
from opskit.core.errors import OperationalError
from opskit.core.signing import Signer, block_key, fingerprint, sign_block, verify_signature
from opskit.core.state import resolve_state_dir

FORMAT = 2                         # 2: signed events; 1 (unsigned) is read but never verifies
CONTEXT = b"opskit-access-request-v1\n"
CONTENT_FIELDS = ("id", "kind", "person", "role", "tier", "reason", "ticket", "needed", "post")
ROLE, UNFREEZE, TRANSFER = "role", "unfreeze", "transfer"
KINDS = (ROLE, UNFREEZE, TRANSFER)
REQUESTED, APPROVED, REJECTED, APPLIED, WITHDRAWN = (
    "requested", "approved", "rejected", "applied", "withdrawn")
STATES = (REQUESTED, APPROVED, REJECTED, APPLIED, WITHDRAWN)
OPEN_STATES = (REQUESTED, APPROVED)

REQUEST_ID = re.compile(r"^AR-(\d{4,})$")


class Refused(errors.Refused):
    """A step of the access-request workflow was refused (exit 2); by default
    under R-ACC-3 (request form, approval, designated applier)."""

    def __init__(self, message: str, *, rule: str = "R-ACC-3", hint: str | None = None):
        super().__init__(message, rule=rule, hint=hint)


# --- the request ---------------------------------------------------------------------------

@dataclass
class AccessRequest:
    id: str
    kind: str                      # 'role' | 'unfreeze' | 'transfer'
    person: str
    role: str | None
    tier: str | None
    reason: str
    ticket: str
    needed: int                    # distinct approvals needed, fixed (and signed) at request time
    events: list[dict] = field(default_factory=list)   # {event, actor, time, comment, ...}
    post: str | None = None        # a transfer's new post

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
            if e["event"] == "approve" and len(self.approvers_until(e)) >= self.needed_until(e):
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

    def needed_until(self, last: dict | None = None) -> int:
        """Approvals needed: the signed number of the request, raised by an approval that
        found the role had become special (never lowered)."""
        needed = self.needed
        for e in self.events:
            needed = max(needed, int(e.get("needed") or 0))
            if e is last:
                break
        return needed

    @property
    def approvals_needed(self) -> int:
        return self.needed_until()

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
        if self.kind == TRANSFER:
            return f"transfer to post {self.post}"
        return f"role {self.role}" if self.kind == ROLE else "unfreeze"

    def waiting_for(self) -> str:
        if self.state == REQUESTED:
            missing = self.approvals_needed - len(self.approvers)
            return f"{missing} more approval(s)" + (" (mutual review, R-ACC-5)"
                                                    if self.tier == "special" else "")
        if self.state == APPROVED:
            return {ROLE: "apply by a designated admin",
                    UNFREEZE: f"opskit users unfreeze {self.person} --request {self.id}",
                    TRANSFER: f"opskit users transfer {self.person} --to-post {self.post} "
                              f"--request {self.id}"}[self.kind]
        return "-"

    def row(self) -> dict:
        """One line for ``access list``."""
        return {"id": self.id, "state": self.state, "kind": self.kind, "person": self.person,
                "role": self.role, "post": self.post, "tier": self.tier,
                "requester": self.requester,
                "approvers": self.approvers, "needed": self.approvals_needed,
                "applier": self.applier,
                "requested_at": self.requested_at, "ticket": self.ticket,
                "waiting_for": self.waiting_for()}

    def to_dict(self) -> dict:
        """The full record for ``access show --json``: the row plus reason and history."""
        return {**self.row(), "reason": self.reason, "events": [dict(e) for e in self.events]}

    def to_file(self) -> dict:
        return {"format": FORMAT, "id": self.id, "kind": self.kind, "person": self.person,
                "role": self.role, "tier": self.tier, "reason": self.reason,
                "ticket": self.ticket, "needed": self.needed, "post": self.post,
                "events": self.events}

    @classmethod
    def from_file(cls, data: Any, path: str) -> "AccessRequest":
        try:
            if data.get("format") not in (1, FORMAT):
                raise ValueError(f"unknown format {data.get('format')!r}")
            req = cls(data["id"], data["kind"], data["person"], data.get("role"),
                      data.get("tier"), data.get("reason", ""), data.get("ticket", ""),
                      int(data["needed"]), list(data["events"]), data.get("post"))
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


# --- signatures --------------------------------------------------------------------------------

def _sha(obj: Any) -> str:
    return hashlib.sha256(canonical(obj)).hexdigest()


def field_digests(req: AccessRequest) -> dict[str, str]:
    """SHA-256 of each content field's canonical JSON (stored, signed, in the first event)."""
    return {f: _sha(getattr(req, f)) for f in CONTENT_FIELDS}


def content_hash(req: AccessRequest) -> str:
    """The request's content hash: SHA-256 over its field digests."""
    return _sha(field_digests(req))


def _message(req: AccessRequest, index: int, event: dict) -> bytes:
    prev = _sha(req.events[index - 1]) if index else ""
    body = {k: v for k, v in event.items() if k != "signature"}
    return canonical({"request": content_hash(req), "prev": prev, "event": body})


def sign_event(req: AccessRequest, event: dict, signer: Signer) -> dict:
    """``event`` (to be appended to ``req``) with its signature block; the first event
    also carries the field digests it vouches for."""
    if not req.events:
        event = {**event, "fields": field_digests(req)}
    return {**event, "signature": sign_block(signer, _message(req, len(req.events), event),
                                             CONTEXT)}


def _tampered(where: str, what: str, rule: str = "R-ACC-3") -> Refused:
    return Refused(f"access request file {where}: {what}; refused ({rule})", rule=rule,
                   hint="a request is changed only by signed opskit steps; compare with the "
                        "audit log and restore the file from backup")


def signature_problems(req: AccessRequest, keys_of: Callable[[str], list[bytes]]
                       ) -> list[str]:
    """What is wrong with the signatures of ``req`` against the keys the roster registers
    for each actor (``keys_of(person_id)``): an unsigned file, an edited field, an event
    unsigned, signed by a key not registered for its actor, or not verifying (made over
    another request, or something edited since). Empty when every signature holds."""
    first = req.events[0]
    signed = first.get("fields") if isinstance(first.get("fields"), dict) else None
    if signed is None or "signature" not in first:
        return ["it is not signed (written before signed approvals, or by hand); move it out "
                "of the store and raise the request again"]
    out = [f"field '{name}' differs from what {req.requester} signed"
           for name, digest in field_digests(req).items() if signed.get(name) != digest]
    for i, event in enumerate(req.events):
        label = event_label(req, i)
        raw = block_key(event.get("signature"))
        if not raw:
            out.append(f"{label} is not signed")
        elif raw not in keys_of(event["actor"]):
            fp = fingerprint(raw) if len(raw) == 32 else "a malformed key"
            out.append(f"{label} is signed with key {fp}, which the roster does not register "
                       f"for {event['actor']}")
        elif not verify_signature(raw, event["signature"].get("sig", ""),
                                  _message(req, i, event), CONTEXT):
            out.append(f"{label}: the signature does not verify (it was made over another "
                       "request, or the event, the request or an earlier event was edited "
                       "since)")
    return out


def event_label(req: AccessRequest, index: int) -> str:
    """``event 3 (approve by lead.one)``: how findings name an event (1-based)."""
    e = req.events[index]
    return f"event {index + 1} ({e['event']} by {e['actor']})"


def workflow_problems(req: AccessRequest) -> list[tuple[str, str]]:
    """(rule id, problem) for each signed event that breaks a rule no key holder may break
    alone, replaying the events: approve or reject only while requested and never by the
    requester or the person; each approval by another person *and another key*; at least
    two approvals for a special-tier request (R-ACC-5); apply only once approved, by
    none of requester, approvers or person (R-ACC-1); withdraw only by the requester."""
    out: list[tuple[str, str]] = []
    floor = 2 if req.tier == "special" else 1
    if req.needed < floor:
        out.append(("R-ACC-5", f"it asks for {req.needed} approval(s) although a "
                               f"{req.tier or 'role'} request needs at least {floor}"))
    state, actors, keys = REQUESTED, [], set()
    for i, e in enumerate(req.events[1:], start=1):
        event, actor = e["event"], e["actor"]
        key = block_key(e.get("signature"))
        bad = None
        if event in ("approve", "reject"):
            if actor in (req.requester, req.person):
                bad = ("R-ACC-3", "the requester or the person decides their own request")
            elif state != REQUESTED:
                bad = ("R-ACC-3", f"the request was already {state}")
            elif event == "approve" and (actor in actors or key in keys):
                bad = ("R-ACC-5" if req.tier == "special" else "R-ACC-3",
                       "a second approval by the same " + ("person" if actor in actors
                                                            else "key"))
        elif event == "apply":
            if actor in (req.requester, req.person, *actors):
                bad = ("R-ACC-1", "applied by the requester, an approver or the person")
            elif state != APPROVED:
                bad = ("R-ACC-5" if req.tier == "special" else "R-ACC-3",
                       f"applied while {state}: {len(actors)} of "
                       f"{max(req.needed_until(e), floor)} distinct approval(s)")
        elif event == "withdraw":
            if actor != req.requester or state not in OPEN_STATES:
                bad = ("R-ACC-3", "withdrawn by someone else than the requester, or after "
                                  f"the request was {state}")
        else:
            bad = ("R-ACC-3", f"unknown event '{event}'")
        if bad:
            out.append((bad[0], f"{event_label(req, i)} breaks the workflow although it is "
                                f"signed: {bad[1]}"))
            continue
        if event == "approve":
            actors.append(actor)
            keys.add(key)
            if len(actors) >= max(req.needed_until(e), floor):
                state = APPROVED
        else:
            state = {"reject": REJECTED, "withdraw": WITHDRAWN, "apply": APPLIED}[event]
    return out


def problems(req: AccessRequest, keys_of: Callable[[str], list[bytes]]
             ) -> list[tuple[str, str]]:
    """(rule id, problem) for everything wrong with ``req``: its signatures first (R-ACC-3),
    then, once they hold, the workflow its signed events replay."""
    bad = [("R-ACC-3", p) for p in signature_problems(req, keys_of)]
    return bad or workflow_problems(req)


def verify(req: AccessRequest, keys_of: Callable[[str], list[bytes]], where: str) -> None:
    """Check every signature of ``req`` against the keys the roster registers for each
    actor (``keys_of(person_id)``) and the workflow its signed events replay; Refused
    (exit 2) naming the field or event otherwise."""
    bad = problems(req, keys_of)
    if bad:
        raise _tampered(where, bad[0][1], bad[0][0])


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


def normal_id(text: str | None) -> str | None:
    """``AR-0001`` for what a person types (``ar-1``, `` AR-0001``); None if it is no id."""
    rid = (text or "").strip().upper()
    m = re.match(r"^AR-(\d{1,9})$", rid)
    if m:
        rid = f"AR-{int(m.group(1)):04d}"
    return rid if REQUEST_ID.match(rid) else None


def request_files(directory: str) -> list[str]:
    """Paths of the request files in ``directory`` (none if it does not exist yet), by
    number."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OperationalError(f"cannot list access requests in {directory}: "
                               f"{exc.strerror}") from None
    names = [n for n in names if n.endswith(".json") and REQUEST_ID.match(n[:-5])]
    return [os.path.join(directory, n)
            for n in sorted(names, key=lambda n: int(REQUEST_ID.match(n[:-5]).group(1)))]


def scan_requests(directory: str) -> list[AccessRequest]:
    """Every request in ``directory`` (none if it does not exist yet), by number."""
    return [read_request(path) for path in request_files(directory)]


def applied_grants(config, keys_of: Callable[[str], list[bytes]]) -> dict[str, list[str]]:
    """Roles granted to people by applied access requests, by person id (in request order),
    each request verified first (``verify``): a forged or edited grant is refused (exit 2).
    Reads without the lock (files are replaced atomically) and creates nothing."""
    grants: dict[str, list[str]] = {}
    directory = store_dir(config)
    for req in scan_requests(directory):
        if req.kind == ROLE and req.role and req.state == APPLIED:
            verify(req, keys_of, os.path.join(directory, f"{req.id}.json"))
            roles = grants.setdefault(req.person, [])
            if req.role not in roles:
                roles.append(req.role)
    return grants
