"""Tables and JSON for ``opskit users transfer``."""
from __future__ import annotations

from opskit.core.output import Result, Table

from .transfer import TransferRun


def transfer_result(run: TransferRun) -> Result:
    rows = []
    for h in run.hosts:
        verified = None
        if h.freeze is not None and h.freeze.account:
            verified = "-" if h.freeze.verified is None else "yes" if h.freeze.verified else "NO"
        rows.append({"host": h.host, "change": h.kind,
                     "status": h.status if h.status == "ok" else h.status.upper(),
                     "steps": len(h.steps), "failed": sum(1 for s in h.steps if s.ok is False),
                     "verified": verified, "error": h.error})
    steps = [{**s.as_dict(), "change": h.kind} for h in run.hosts for s in h.steps]
    cols = ["host", "change", "action", "detail"] + ([] if run.dry_run else ["result", "error"])
    tables = [Table(["host", "change", "status", "steps", "failed", "verified", "error"], rows,
                    title=f"Transfer of {run.person}: {run.old_post or '(no post)'} -> "
                          f"{run.new_post}"),
              Table(cols, steps, title="Steps planned" if run.dry_run else "Steps")]
    notes = [{"host": h.host, "note": n.note} for h in run.hosts if h.plan for n in h.plan.notes]
    if notes:
        tables.append(Table(["host", "note"], notes, title="Notes"))
    head = "users transfer --dry-run" if run.dry_run else "users transfer"
    text = (f"{head} {run.person}: {run.old_post or '(no post)'} -> {run.new_post}; roles "
            f"{', '.join(run.roles_before) or '(none)'} -> "
            f"{', '.join(run.roles_after) or '(none)'}")
    messages = [text]
    if run.edit is None:
        messages.append("roster: already names the new post; nothing to edit")
    elif run.roster_written:
        messages.append(f"roster edited: {run.edit.describe()}")
    elif run.dry_run:
        messages.append(f"roster edit to be made: {run.edit.describe()}")
    if run.failed_hosts:
        text += f"; INCOMPLETE, failed hosts: {', '.join(run.failed_hosts)}"
        messages.append(f"failed hosts: {', '.join(run.failed_hosts)}; the roster was not "
                        "changed; rerun the same command to finish")
    return Result(data=run.as_dict(), tables=tables, messages=messages, summary=text,
                  exit_code=run.exit_code)
