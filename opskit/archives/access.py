"""Reading and destroying archives (R-AUD-6): approval first, then registration.

Reading an archive snapshot (``backup restore``, ``backup db restore``) needs
an approval naming the snapshot and the purpose, signed by a reviewer
(``incidents.reviewers``) other than the reader, for that reader: the
two-person library (opskit.incidents.twoperson) with operation ``archive
read`` and subject = SHA-256 of {snapshot, purpose}. One approval, one read;
the read is registered (register.py) before any data is written.

Destroying archive snapshots (``backup forget`` dropping them) needs an
``archive destroy`` approval over the repository and exactly those snapshots
and leaves a destruction record. Restore drills are exempt (they prove the
archive can be read, R-BAK-5) but every drill of an archive is registered.
"""
from __future__ import annotations

import datetime as _dt
import shlex

from opskit.core.errors import Refused, UsageError
from opskit.incidents import clocks, twoperson
from opskit.incidents.clocks import refused

from . import register

RULE = "R-AUD-6"
READ, DESTROY = "archive read", "archive destroy"


def read_subject(snapshot_id: str, purpose: str) -> str:
    """The subject an archive read is approved under."""
    return twoperson.subject_of(READ, {"snapshot": snapshot_id, "purpose": purpose.strip()})


def destroy_subject(repository: str, snapshot_ids: list[str]) -> str:
    """The subject a destruction is approved under: the repository and every snapshot."""
    return twoperson.subject_of(DESTROY, {"repository": repository,
                                          "snapshots": sorted(snapshot_ids)})


def read_needed(snap: dict, reason: str, purpose: str | None, runner: str, required: int) -> dict:
    """What a dry run shows for an archive read, with the reviewer's command line."""
    shown = shlex.quote(purpose.strip()) if purpose and purpose.strip() else "'PURPOSE'"
    return {"status": "approval needed", "rule": RULE, "operation": READ,
            "snapshot": snap["id"], "archive": reason, "purpose": purpose, "for": runner,
            "approvals": required,
            "command": f"opskit archive approve {snap['id']} --purpose {shown} --for {runner} "
                       "--key REVIEWER_KEY"}


def destroy_needed(repository: str, archived: list[tuple[dict, str]], runner: str,
                   required: int) -> dict:
    """What a dry run shows for a destruction of archives, with the approve-op line."""
    ids = [s["id"] for s, _ in archived]
    subject = destroy_subject(repository, ids)
    return {**twoperson.needed(DESTROY, subject, runner, required), "rule": RULE,
            "status": "approval needed", "repository": repository, "snapshots": ids}


def approve_read(state_dir: str, *, snapshot_id: str, purpose: str, for_person: str, signer,
                 reviewers: dict, comment: str, now: _dt.datetime, valid_hours: float) -> dict:
    """A reviewer's signed approval of one read of one archive snapshot for one purpose."""
    if len(snapshot_id) != 64 or any(c not in "0123456789abcdef" for c in snapshot_id):
        raise UsageError(f"snapshot {snapshot_id!r}: give the full 64-hex id (the reader's "
                         "refusal or --dry-run shows it)")
    if not purpose.strip():
        raise UsageError("--purpose: an archive is read for a stated purpose (R-AUD-6)")
    return twoperson.approve(state_dir, operation=READ,
                             subject=read_subject(snapshot_id, purpose), for_person=for_person,
                             signer=signer, reviewers=reviewers, comment=comment, now=now,
                             valid_hours=valid_hours,
                             details={"snapshot": snapshot_id, "purpose": purpose.strip()})


def _approved(state_dir: str, operation: str, subject: str, runner: str, gate: dict,
              now: _dt.datetime, message: str, hint: str) -> list[str]:
    """twoperson.check under this rule's refusal (exit 2 naming R-AUD-6)."""
    try:
        return twoperson.check(state_dir, operation=operation, subject=subject, runner=runner,
                               reviewers=gate["reviewers"], required=gate["required"],
                               valid_hours=gate["valid_hours"], now=now)
    except Refused:
        raise refused(message, rule=RULE, hint=hint) from None


def authorise_read(state_dir: str, *, snap: dict, reason: str, purpose: str | None,
                   runner: str, command: str, repository: str, gate: dict,
                   now: _dt.datetime, target: str | None = None) -> dict:
    """Before reading an archive: the approval for this snapshot, purpose and reader is
    used up and the access registered (returned). Refused (exit 2, R-AUD-6) otherwise.
    ``gate``: reviewers, required, valid_hours (the incidents.* settings)."""
    need = read_needed(snap, reason, purpose, runner, gate["required"])
    what = f"snapshot {snap['id'][:12]} is an archive ({reason})"
    if not purpose or not purpose.strip():
        raise refused(f"{what}: reading it needs --purpose and an approval of that purpose",
                      rule=RULE, hint=need["command"])
    names = _approved(state_dir, READ, read_subject(snap["id"], purpose), runner, gate, now,
                      f"{what}: reading it needs an approved access request for {runner} "
                      f"naming the snapshot and the purpose {purpose.strip()!r}",
                      need["command"])
    return register.append(state_dir, {
        "time": clocks.iso(now), "step": register.ACCESS, "command": command,
        "repository": repository, **register.snapshot_fields(snap, reason),
        "purpose": purpose.strip(), "actor": runner, "approved_by": names, "target": target})


def register_drill(state_dir: str, *, snap: dict, reason: str, runner: str, command: str,
                   repository: str, now: _dt.datetime, verdict: str) -> dict:
    """A drill of an archive: exempt from approval (R-BAK-5), registered all the same."""
    return register.append(state_dir, {
        "time": clocks.iso(now), "step": register.DRILL, "command": command,
        "repository": repository, **register.snapshot_fields(snap, reason),
        "purpose": "restore drill (R-BAK-5): exempt from approval", "actor": runner,
        "approved_by": [], "verdict": verdict})


def authorise_destroy(state_dir: str, *, repository: str, archived: list[tuple[dict, str]],
                      runner: str, gate: dict, now: _dt.datetime) -> list[str]:
    """Before dropping archive snapshots: the approval of exactly these is used up;
    the reviewers are returned. Refused (exit 2, R-AUD-6) otherwise."""
    need = destroy_needed(repository, archived, runner, gate["required"])
    return _approved(state_dir, DESTROY, need["subject"], runner, gate, now,
                     f"this run would destroy {len(archived)} archive snapshot(s) "
                     f"({', '.join(s['id'][:12] for s, _ in archived[:5])}): destruction "
                     f"needs an approval for {runner}", need["command"])


def record_destruction(state_dir: str, *, repository: str, destroyed: list[tuple[dict, str]],
                       runner: str, command: str, approved_by: list[str],
                       now: _dt.datetime) -> dict:
    """The destruction record of archive snapshots actually dropped."""
    return register.append(state_dir, {
        "time": clocks.iso(now), "step": register.DESTROY, "command": command,
        "repository": repository, "actor": runner, "approved_by": approved_by,
        "snapshots": [register.snapshot_fields(s, why) for s, why in destroyed]})
