"""The R-AUD-6 gates of commands that read or destroy backups (opskit.archives).

    review = archivegate.read(app, r, snap, purpose, dry_run=dry_run)  # Refused when unapproved
    ...
    app.emit(archivegate.annotate(result, review))

An ordinary snapshot passes untouched (None). For an archive: a dry run shows
the approval needed and the reviewer's command line; a real read uses the
approval up and registers the access first. ``destroy`` / ``destroyed``
bracket a run that drops archive snapshots; ``drill`` registers a drill.
"""
from __future__ import annotations

from opskit.core.output import Result

from .app import App
from .incident import person


def _gate(app: App) -> dict:
    cfg = app.config
    return {"reviewers": cfg.get("incidents.reviewers"),
            "required": cfg.get("incidents.approvals_required"),
            "valid_hours": cfg.get("incidents.approval_valid_hours")}


def _reason(app: App, r, snap: dict) -> str | None:
    from opskit.archives.marks import Marks
    return Marks.from_config(app.config).reason(snap, r.backend.location, r.config.id)


def read(app: App, r, snap: dict, purpose: str | None, *, dry_run: bool,
         target: str | None = None) -> dict | None:
    """None for an ordinary snapshot; else the approval needed (dry run) or the
    registered access. Refused (exit 2, R-AUD-6) without a valid approval."""
    from opskit.archives import access
    from opskit.incidents import clocks
    reason = _reason(app, r, snap)
    if reason is None:
        return None
    runner = person(app)
    if dry_run:
        review = access.read_needed(snap, reason, purpose, runner, _gate(app)["required"])
    else:
        rec = access.authorise_read(app.state_dir, snap=snap, reason=reason, purpose=purpose,
                                    runner=runner, command=app.command or "",
                                    repository=r.config.id, gate=_gate(app),
                                    now=clocks.utcnow(), target=target)
        review = {"status": "approved", "rule": access.RULE, "operation": access.READ,
                  "snapshot": snap["id"], "archive": reason, "purpose": rec["purpose"],
                  "for": runner, "approved_by": rec["approved_by"], "registered": rec["seq"]}
    app.audit_details["archive_access"] = review
    return review


def drill(app: App, r, snapshot_id: str, verdict: str) -> str | None:
    """Register a drill of an archive snapshot (exempt from approval); a message, or None."""
    from opskit.archives import access
    from opskit.incidents import clocks
    snap = next((s for s in r.snapshots() if s["id"] == snapshot_id), None)
    reason = _reason(app, r, snap) if snap else None
    if reason is None:
        return None
    rec = access.register_drill(app.state_dir, snap=snap, reason=reason, runner=person(app),
                                command=app.command or "", repository=r.config.id,
                                now=clocks.utcnow(), verdict=verdict)
    app.audit_details["archive_access"] = {"drill": True, "snapshot": snapshot_id,
                                           "archive": reason, "registered": rec["seq"]}
    return (f"snapshot {snapshot_id[:12]} is an archive ({reason}): drills are exempt from "
            f"approval, registered as archive record {rec['seq']} (R-AUD-6)")


def destroy(app: App, r, dropping: list[dict], *, dry_run: bool) -> dict | None:
    """Before dropping ``dropping``: None when none is an archive; else the approval
    needed (dry run) or obtained. Refused (exit 2, R-AUD-6) without one."""
    from opskit.archives import access
    from opskit.archives.marks import Marks
    from opskit.incidents import clocks
    archived = Marks.from_config(app.config).archived(dropping, r.backend.location, r.config.id)
    if not archived:
        return None
    runner = person(app)
    review = access.destroy_needed(r.config.id, archived, runner, _gate(app)["required"])
    if not dry_run:
        names = access.authorise_destroy(app.state_dir, repository=r.config.id,
                                         archived=archived, runner=runner, gate=_gate(app),
                                         now=clocks.utcnow())
        review = {**review, "status": "approved", "approved_by": names}
    review["archived"] = archived                  # kept for destroyed(); not shown
    app.audit_details["archive_destruction"] = {k: v for k, v in review.items()
                                                if k != "archived"}
    return review


def destroyed(app: App, r, review: dict | None, dropped_ids: list[str]) -> None:
    """After the run: the destruction record of the archives actually dropped."""
    from opskit.archives import access
    from opskit.incidents import clocks
    if not review or review["status"] != "approved":
        return
    gone = [(s, why) for s, why in review["archived"] if s["id"] in set(dropped_ids)]
    if gone:
        rec = access.record_destruction(app.state_dir, repository=r.config.id, destroyed=gone,
                                        runner=review["for"], command=app.command or "",
                                        approved_by=review["approved_by"], now=clocks.utcnow())
        review["recorded"] = rec["seq"]
        app.audit_details["archive_destruction"]["recorded"] = rec["seq"]


def annotate(result: Result, review: dict | None, key: str = "archive_access") -> Result:
    """Add the archive approval (needed or obtained) to a command's result."""
    from .highrisk import annotate as add_review
    shown = None if review is None else {k: v for k, v in review.items() if k != "archived"}
    return add_review(result, shown, key=key, label="archive control (R-AUD-6)")
