"""Two-person review of high-risk operations (R-SEC-2, 高风险操作需双人复核).

A high-risk command (``incidents.high_risk_operations``) computes a *subject*:
the SHA-256 of what exactly it is about to do (operation, repository, the
snapshots it would drop...). It then needs, for that subject and for the
person about to run it, ``incidents.approvals_required`` signed approvals by
reviewers registered in ``incidents.reviewers`` -- each a different key, none
the runner's -- given within ``incidents.approval_valid_hours``. Running uses
the approvals up (a ``use`` record): one approval, one run.

The records live in the hash-chained ``<state_dir>/incidents/approvals.jsonl``.

Wiring a command (backup forget is the example; docs/incidents.md):

1. compute ``subject = subject_of(op, details)`` once the plan is known;
2. with ``--dry-run`` show ``needed(...)``; with nothing to do, skip the gate;
3. otherwise call ``check(...)`` before the first change: it raises Refused
   (exit 2, R-SEC-2) naming the command that gives the approval.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os

from opskit.core.audit import canonical
from opskit.core.errors import Refused, UsageError
from opskit.core.signing import Signer

from . import clocks, signatures
from .chain import Register, register_at
from .clocks import refused

RULE = "R-SEC-2"


def register(state_dir: str) -> Register:
    """The approval register of this state directory."""
    return register_at(state_dir, "approvals.jsonl")


def is_high_risk(operation: str, configured: list[str]) -> bool:
    """True when ``operation`` or a group it belongs to ('policy' for 'policy apply')
    is in the configured list."""
    words = operation.split()
    return any(" ".join(words[:n]) in configured for n in range(1, len(words) + 1))


def subject_of(operation: str, details: dict) -> str:
    """SHA-256 (hex) naming exactly what a run would do."""
    return hashlib.sha256(canonical({"operation": operation, "details": details})).hexdigest()


def _payload(operation: str, subject: str, for_person: str, at: str) -> dict:
    return {"approve": "high-risk-operation", "operation": operation, "subject": subject,
            "for": for_person, "at": at}


def _usable(records: list[dict], operation: str, subject: str, now: _dt.datetime,
            valid_hours: float) -> list[dict]:
    """Approvals of (operation, subject) not used yet and not expired."""
    used = {seq for r in records if r.get("step") == "use" for seq in r.get("approvals", [])}
    return [r for r in records if r.get("step") == "approve" and r["operation"] == operation
            and r["subject"] == subject and r["seq"] not in used
            and now - clocks.parse_when(r["time"]) <= clocks.hours(valid_hours)]


def approve(state_dir: str, *, operation: str, subject: str, for_person: str, signer: Signer,
            reviewers: dict, comment: str, now: _dt.datetime,
            valid_hours: float = 24.0, details: dict | None = None) -> dict:
    """Record a reviewer's signed approval; refused for an unregistered key, for the
    person who will run it (self-approval) and for a key that already approved it.
    ``details`` (what the subject hashes, e.g. an archive read's snapshot and purpose)
    is kept in clear beside it, so registers can show what was approved."""
    if len(subject) != 64 or any(c not in "0123456789abcdef" for c in subject):
        raise UsageError("--subject must be the 64-hex subject the command's --dry-run shows")
    if not for_person.strip():
        raise UsageError("--for names the person who will run the operation")
    keys = signatures.registered_keys(reviewers, "incidents.reviewers")
    at = clocks.iso(now)
    payload = _payload(operation, subject, for_person, at)

    def decide(records: list[dict]) -> dict:
        block = signatures.sign(signer, payload)
        name = signatures.signer_name(block, payload, keys, RULE,
                                      "reviewer (incidents.reviewers)")
        if name == for_person:
            raise refused(f"{name} would approve their own operation (self-approval): a "
                          "second person must review it", rule=RULE)
        for r in _usable(records, operation, subject, now, valid_hours):
            if r["signature"]["key"] == block["key"]:
                raise refused(f"key {block['fingerprint']} ({name}) already approved this "
                              "operation: the same key twice is one review", rule=RULE)
        entry = {"time": at, "step": "approve", "operation": operation, "subject": subject,
                 "for": for_person, "actor": name, "comment": comment, "signature": block}
        if details is not None:
            entry["details"] = details
        return entry

    return register(state_dir).append(decide)


def standing(state_dir: str, *, operation: str, subject: str, reviewers: dict) -> list[str]:
    """Reviewers whose valid signed approval of (operation, subject) is on record, for a
    subject that is approved once and then stands (a policy file's content hash): not
    used up, no expiry; a key no longer registered or a forged record does not count."""
    keys = signatures.registered_keys(reviewers, "incidents.reviewers")
    names = []
    for r in register(state_dir).records():
        if r.get("step") != "approve" or r["operation"] != operation or r["subject"] != subject:
            continue
        try:
            name = signatures.signer_name(r["signature"], _payload(
                operation, subject, r["for"], r["time"]), keys, RULE, "reviewer")
        except Refused:
            continue
        if name not in names:
            names.append(name)
    return names


def needed(operation: str, subject: str, runner: str, required: int) -> dict:
    """What a dry run shows: the approval(s) this run needs and how to give them."""
    return {"operation": operation, "subject": subject, "for": runner, "approvals": required,
            "rule": RULE,
            "command": f"opskit approve-op '{operation}' --subject {subject} --for {runner} "
                       "--key REVIEWER_KEY"}


def check(state_dir: str, *, operation: str, subject: str, runner: str, reviewers: dict,
          required: int, valid_hours: float, now: _dt.datetime) -> list[str]:
    """Before a high-risk run: enough valid approvals for this subject and runner, by
    distinct registered keys other than the runner's; they are used up. Returns the
    reviewers; Refused (exit 2, R-SEC-2) otherwise."""
    keys = signatures.registered_keys(reviewers, "incidents.reviewers")

    def decide(records: list[dict]) -> dict:
        found, seen, names = [], set(), []
        for r in _usable(records, operation, subject, now, valid_hours):
            if r["for"] != runner:
                continue
            try:
                name = signatures.signer_name(r["signature"], _payload(
                    operation, subject, r["for"], r["time"]), keys, RULE, "reviewer")
            except Refused:
                continue                     # key no longer registered, or forged
            if name == runner or r["signature"]["key"] in seen:
                continue
            seen.add(r["signature"]["key"])
            found.append(r["seq"])
            names.append(name)
        if len(found) < required:
            need = needed(operation, subject, runner, required)
            raise refused(f"'{operation}' is a high-risk operation: it needs {required} "
                          f"approval(s) by a second person for {runner} (has {len(found)})",
                          rule=RULE, hint=need["command"])
        return {"time": clocks.iso(now), "step": "use", "operation": operation,
                "subject": subject, "actor": runner, "approvals": found, "reviewers": names}

    entry = register(state_dir).append(decide)
    return entry["reviewers"]
