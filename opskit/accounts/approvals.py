"""Re-check recorded access decisions (R-ACC-3, R-ACC-5, R-ACC-1, R-DAT-2), for
``opskit audit verify``, ``opskit access verify`` and the evidence pack.

  check_records(config, entries) -> AccessCheck

Two records are checked against the roster's signing keys (``signing_key`` and
``retired_signing_keys``, docs/roster.md):

* every request file in the store (``accounts.requests_dir``): each event signed by a key
  the roster registers for its actor, over that request's content hash, the content
  unedited, and the workflow its signed events replay (requestfile.problems: two
  approvals of a special-tier request by two people with two distinct keys, apply only
  once approved, by someone else);
* every decision the audit log records (request, approve, reject, withdraw, apply of an
  access request; ``users transfer`` / ``users unfreeze`` applying one): the key the
  entry names is registered for the person it names, and the request file holds that
  person's signed event of that kind with that key.

A finding names the request and the entry (``event 3 (approve by lead.one)`` or
``audit entry seq 12 (access approve)``). Without a roster nothing can be re-checked:
that is a warning (``AccessCheck.warning``), never a pass.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

from opskit.core.errors import OpskitError
from opskit.core.signing import block_key, fingerprint

from .requestfile import (AccessRequest, normal_id, problems, read_request, request_files,
                          store_dir)

# audit command -> the signed event it records (users transfer / unfreeze apply a request)
DECISIONS = {"access request": "request", "access approve": "approve",
             "access reject": "reject", "access withdraw": "withdraw",
             "access apply": "apply", "users transfer": "apply", "users unfreeze": "apply"}


@dataclass
class Finding:
    """One forged or unmatched decision: the request, where it is recorded, what is wrong."""

    request: str
    entry: str
    problem: str
    rule: str = "R-ACC-3"

    def describe(self) -> str:
        return f"{self.request} {self.entry}: {self.problem} ({self.rule})"

    def to_dict(self) -> dict:
        return {"request": self.request, "entry": self.entry, "problem": self.problem,
                "rule": self.rule}


@dataclass
class AccessCheck:
    """What ``check_records`` found: how much it checked, findings, and a warning when the
    roster was not there to check against."""

    store: str = ""
    requests: int = 0
    decisions: int = 0
    findings: list[Finding] = field(default_factory=list)
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings and self.warning is None

    @property
    def empty(self) -> bool:
        return not self.requests and not self.decisions

    def describe(self) -> str:
        """One line for ``audit verify``."""
        if self.warning:
            return f"warning: {self.warning}"
        what = (f"{self.requests} access request file(s) and {self.decisions} decision(s) "
                "in the audit log")
        if self.findings:
            return f"access decisions: {len(self.findings)} forged or unmatched in {what}"
        return f"access decisions: {what} verified against the roster's signing keys"

    def lines(self) -> list[str]:
        """What a person reads: the one line, then one line per finding (none when there
        was nothing to check)."""
        if self.empty:
            return []
        return [self.describe(), *(f"  {f.describe()}" for f in self.findings)]

    def exit_code(self, strict: bool = False) -> int:
        """1 for a finding, or (``strict``) for records that could not be re-checked."""
        return 1 if self.findings or (strict and self.warning) else 0

    def to_dict(self) -> dict:
        return {"ok": self.ok, "store": self.store, "requests": self.requests,
                "decisions": self.decisions, "warning": self.warning,
                "findings": [f.to_dict() for f in self.findings]}


def check_records(config, entries: Iterable[dict], roster_loader=None) -> AccessCheck:
    """Re-check every request file of ``config``'s store and every access decision among
    the audit ``entries`` against the roster (``roster_loader(config)``, default the
    declared roster without grants: a forged grant must be reported, not stop the read)."""
    check = AccessCheck(store=store_dir(config))
    decisions = [d for d in (_decision(e) for e in entries) if d is not None]
    paths = request_files(check.store)
    check.requests, check.decisions = len(paths), len(decisions)
    if check.empty:
        return check
    try:
        roster = (roster_loader or _roster)(config)
    except OpskitError as exc:
        check.warning = (f"the roster is not available ({exc.message}): {check.requests} "
                         f"access request file(s) and {check.decisions} decision(s) in the "
                         "audit log were not re-checked")
        return check
    requests = _check_files(paths, roster.verifying_keys, check.findings)
    for decision in decisions:
        check.findings += _check_decision(decision, requests, roster.verifying_keys)
    return check


def _roster(config):
    from .declared import load_declared
    return load_declared(config, with_grants=False)


def _check_files(paths: list[str], keys_of, findings: list[Finding]) -> dict:
    """Every request file checked (findings appended); {id: request} of the readable ones."""
    requests: dict[str, AccessRequest] = {}
    for path in paths:
        rid = os.path.basename(path)[:-5]
        try:
            req = read_request(path)
        except OpskitError as exc:
            findings.append(Finding(rid, "file", exc.message))
            continue
        requests[req.id] = req
        findings += [Finding(req.id, _entry_of(problem), problem, rule)
                     for rule, problem in problems(req, keys_of)]
    return requests


def _entry_of(problem: str) -> str:
    """``event 3 (approve by x)`` when the problem names an event, else the request file."""
    if problem.startswith("event "):
        return problem.split(")", 1)[0] + ")"
    return "file"


def _decision(entry: dict) -> dict | None:
    """What an audit entry says was decided and signed, or None when it records no
    decision (a refusal, a dry run, a read, a transfer or unfreeze left unfinished)."""
    event = DECISIONS.get(str(entry.get("command")))
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    rid = normal_id(str(details.get("request") or ""))
    if event is None or rid is None:
        return None
    if entry["command"].startswith("access ") and details.get("event") != event:
        return None                           # refused: no event was signed
    if entry["command"].startswith("users ") and (
            details.get("dry_run") or details.get("failed_hosts") != []
            or entry.get("exit_code") not in (0, 1)):
        return None                           # not marked applied
    return {"request": rid, "event": event, "actor": details.get("actor"),
            "key": details.get("key"),
            "entry": f"audit entry seq {entry.get('seq')} ({entry['command']})"}


def _signed_by(event: dict) -> str | None:
    """Fingerprint of the key in the event's signature block (not its stored label)."""
    raw = block_key(event.get("signature"))
    return fingerprint(raw) if len(raw) == 32 else None


def _check_decision(d: dict, requests: dict, keys_of) -> list[Finding]:
    """The entry's key is registered for its actor, and the request file holds the actor's
    signed event of that kind with that key."""
    rid, entry, actor = d["request"], d["entry"], d["actor"]
    registered = {fingerprint(k) for k in keys_of(actor or "") if len(k) == 32}
    if d["key"] not in registered:
        return [Finding(rid, entry, f"{d['event']} by {actor} with key {d['key']}, which the "
                                    f"roster does not register for {actor}")]
    req = requests.get(rid)
    if req is None:
        return [Finding(rid, entry, f"records {d['event']} by {actor}, but the store has no "
                                    f"readable {rid}")]
    if not any(e["event"] == d["event"] and e["actor"] == actor
               and _signed_by(e) == d["key"]
               for e in req.events):
        return [Finding(rid, entry, f"records {d['event']} by {actor} (key {d['key']}), but "
                                    f"{rid} holds no such signed event")]
    return []
