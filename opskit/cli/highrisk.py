"""The R-SEC-2 gate a high-risk command calls (opskit.incidents.twoperson).

    review = highrisk.gate(app, "backup forget", {...what exactly...},
                           dry_run=dry_run, needed=bool(what_would_be_dropped))
    ...                                   # Refused (exit 2) raised above when unapproved
    app.emit(highrisk.annotate(result, review))

With --dry-run the gate returns what approval is needed (and the command line
that gives it) instead of checking; a run that would change nothing protected
(``needed`` false) or an operation not in incidents.high_risk_operations passes
without one. docs/incidents.md lists how each high-risk command is wired.
"""
from __future__ import annotations

from opskit.core.output import Result

from .app import App
from .incident import person


def gate(app: App, operation: str, details: dict, *, dry_run: bool, needed: bool) -> dict | None:
    """None when no review applies; else the review needed (dry run) or obtained."""
    from opskit.incidents import clocks, twoperson
    cfg = app.config
    if not needed or not twoperson.is_high_risk(operation, cfg.get("incidents.high_risk_operations")):
        return None
    subject = twoperson.subject_of(operation, details)
    runner = person(app)
    required = cfg.get("incidents.approvals_required")
    if dry_run:
        review = {"status": "approval needed",
                  **twoperson.needed(operation, subject, runner, required)}
    else:
        reviewers = twoperson.check(app.state_dir, operation=operation, subject=subject,
                                    runner=runner, reviewers=cfg.get("incidents.reviewers"),
                                    required=required,
                                    valid_hours=cfg.get("incidents.approval_valid_hours"),
                                    now=clocks.utcnow())
        review = {"status": "approved", "operation": operation, "subject": subject,
                  "for": runner, "approved_by": reviewers, "rule": twoperson.RULE}
    app.audit_details["two_person_review"] = review
    return review


def annotate(result: Result, review: dict | None) -> Result:
    """Add the review (needed or obtained) to a command's result."""
    if review is None:
        return result
    if isinstance(result.data, dict):
        result.data["two_person_review"] = review
    if review["status"] == "approved":
        result.messages.append(f"two-person review (R-SEC-2): approved by "
                               f"{', '.join(review['approved_by'])}")
    else:
        result.messages.append(f"two-person review (R-SEC-2): this run needs "
                               f"{review['approvals']} approval(s) by a second person; "
                               f"the reviewer runs: {review['command']}")
    return result
