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


def correction_risk(st) -> str | None:
    """Why a correction request is high-risk, or None: its rules ask for the top
    sign-off level (leader) or an audit supervisor, or it deletes rows."""
    req = st.requirement
    if "leader" in req.levels:
        return "signed off up to the leader level"
    if req.auditor:
        return "needs an audit supervisor's sign-off"
    if st.operation.lower() == "delete":
        return "deletes rows"
    return None


def applies(app: App, operation: str) -> bool:
    """True when ``operation`` is in incidents.high_risk_operations (worth planning for)."""
    from opskit.incidents import twoperson
    return twoperson.is_high_risk(operation, app.config.get("incidents.high_risk_operations"))


def gate(app: App, operation: str, details: dict, *, dry_run: bool, needed: bool) -> dict | None:
    """None when no review applies; else the review needed (dry run) or obtained."""
    from opskit.incidents import clocks, twoperson
    cfg = app.config
    if not needed or not applies(app, operation):
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


def annotate(result: Result, review: dict | None, key: str = "two_person_review",
             label: str = "two-person review (R-SEC-2)") -> Result:
    """Add the review (needed or obtained) to a command's result under ``key``."""
    if review is None:
        return result
    if isinstance(result.data, dict):
        result.data[key] = review
    if review["status"] == "approved":
        result.messages.append(f"{label}: approved by {', '.join(review['approved_by'])}")
    else:
        result.messages.append(f"{label}: this run needs {review['approvals']} approval(s) by "
                               f"a second person; the reviewer runs: {review['command']}")
    return result


def policy_disables(app: App, policy) -> list[dict]:
    """R-SEC-2 at policy load time: a policy file that disables a check needs a standing
    approval of its content hash (operation 'policy'); without one its disables are
    ignored -- the checks run anyway -- and each such file is returned as a finding."""
    from opskit.incidents import twoperson
    from opskit.policy.disables import content_hash, disabling_files, reenable
    if not applies(app, "policy check"):
        return []
    cfg = app.config
    found, approved = [], {}
    for path, checks in sorted(disabling_files(policy).items()):
        subject = twoperson.subject_of("policy", {"sha256": content_hash(path)})
        names = twoperson.standing(app.state_dir, operation="policy", subject=subject,
                                   reviewers=cfg.get("incidents.reviewers"))
        if len(names) >= cfg.get("incidents.approvals_required"):
            approved[path] = names
            continue
        found.append({"file": path, "disables": checks, "subject": subject,
                      "rule": twoperson.RULE,
                      "command": f"opskit approve-op policy --subject {subject} --for AUTHOR "
                                 "--key REVIEWER_KEY"})
    reenable(policy, {f["file"] for f in found})
    app.audit_details.update(unapproved_disables=found, approved_disables=approved)
    return found


def note_disables(result: Result, found: list[dict]) -> Result:
    """Add the unapproved disabling policy files to a policy result as findings (exit 1)."""
    if not found:
        return result
    if isinstance(result.data, dict):
        result.data["unapproved_disables"] = found
    for f in found:
        result.messages.append(
            f"finding (R-SEC-2): {f['file']} disables {', '.join(f['disables'])} without a "
            f"second person's approval of its content: the check(s) ran anyway; the reviewer "
            f"runs: {f['command']}")
    result.exit_code = max(result.exit_code, 1)
    return result
