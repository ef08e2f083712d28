"""Turn provisioning plans and freeze certificates into what people read (tables) and
scripts read (``--json``): one row per host first, then one row per change."""
from __future__ import annotations

from opskit.core.output import Result, Table

from .approvals import AccessCheck
from .provision import FleetPlan


def _host_rows(fleet: FleetPlan) -> list[dict]:
    rows = []
    for h in fleet.hosts:
        failed = sum(1 for s in h.steps if s.ok is False)
        done = sum(1 for s in h.steps if s.ok)
        rows.append({"host": h.host,
                     "status": h.status if h.reachable else h.status.upper(),
                     "accounts": h.accounts if h.reachable else None,
                     "changes": len(h.steps) if h.reachable else None,
                     "applied": done if fleet.applied else None,
                     "failed": failed if fleet.applied else None,
                     "notes": len(h.notes),
                     "error": h.error})
    return rows


def plan_result(fleet: FleetPlan, *, verb: str) -> Result:
    """``verb``: 'plan' or 'apply' (with ``fleet.dry_run`` for apply --dry-run)."""
    columns = ["host", "status", "accounts", "changes", "notes", "error"]
    if fleet.applied:
        columns = ["host", "status", "accounts", "changes", "applied", "failed", "notes", "error"]
    tables = [Table(columns, _host_rows(fleet), title="Hosts")]
    step_cols = ["host", "person", "action", "detail"]
    if fleet.applied:
        step_cols += ["result", "error"]
    tables.append(Table(step_cols, [s.as_dict() for s in fleet.steps()],
                        title="Changes" + (" applied" if fleet.applied else " planned")))
    notes = fleet.notes()
    if notes:
        tables.append(Table(["host", "person", "note"], [n.as_dict() for n in notes],
                            title="Notes"))
    n_steps = len(fleet.steps())
    down = [h.host for h in fleet.hosts if not h.reachable]
    failed = [s for s in fleet.steps() if s.ok is False]
    attention = [n for n in notes if n.attention]
    if fleet.applied:
        text = (f"users apply: {n_steps - len(failed)} of {n_steps} change(s) applied on "
                f"{len(fleet.hosts)} host(s)")
    else:
        what = "apply --dry-run" if fleet.dry_run else "plan"
        text = f"users {what}: {n_steps} change(s) on {len(fleet.hosts)} host(s)"
        if n_steps == 0 and not down:
            text += "; nothing to do"
    if failed:
        text += f"; {len(failed)} failed on {', '.join(sorted({s.host for s in failed}))}"
    if attention:
        text += f"; {len(attention)} note(s) need attention"
    if down:
        text += f"; failed hosts: {', '.join(down)}"
    messages = [text]
    if down or failed:
        messages.append("rerun 'opskit users apply' once the hosts are back: it finishes the job")
    return Result(data={"command": f"users {verb}", **fleet.as_dict()}, tables=tables,
                  messages=messages, summary=text, exit_code=fleet.exit_code)


def access_check_result(check: AccessCheck, strict: bool = False) -> Result:
    """``opskit access verify``: the re-check of every request file and recorded decision
    (approvals.check_records); exit 1 for a forged or unmatched one, and with ``strict``
    when the roster was not there to check against."""
    rows = [f.to_dict() for f in check.findings]
    lines = check.lines() or [f"no access requests in {check.store} and no access decisions "
                              "in the audit log"]
    return Result(data=check.to_dict(), messages=lines, summary=lines[0],
                  tables=[Table(["request", "entry", "problem", "rule"], rows,
                                title="Forged or unmatched access decisions")] if rows else [],
                  exit_code=check.exit_code(strict))
