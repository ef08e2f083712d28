"""Tables and JSON for ``opskit users freeze`` (and the freeze part of transfer)."""
from __future__ import annotations

from opskit.core.output import Result, Table

from .freeze import FreezeRun


def freeze_result(run: FreezeRun) -> Result:
    rows = []
    for h in run.hosts:
        d = h.as_dict()
        rows.append({"host": h.host,
                     "status": h.status if h.status == "ok" else h.status.upper(),
                     "account": h.account if h.status == "ok" else None,
                     "done": len(d["done"]), "failed": len(d["failed"]),
                     "planned": len(d["planned"]),
                     "verified": ("-" if h.verified is None else "yes" if h.verified else "NO"),
                     "remaining": h.remaining, "error": h.error})
    columns = ["host", "status", "account", "planned" if run.dry_run else "done"]
    if not run.dry_run:
        columns += ["failed", "verified", "remaining"]
    columns.append("error")
    tables = [Table(columns, rows, title=f"Freeze of {run.person} ({run.login}), "
                                         f"reason {run.reason} (R-ACC-6)")]
    steps = [{**s.as_dict()} for h in run.hosts for s in h.steps]
    tables.append(Table(["host", "action", "detail"] + ([] if run.dry_run else ["result", "error"]),
                        steps, title="Steps planned" if run.dry_run else "Steps"))
    left = [{"host": h.host, "item": m} for h in run.hosts for m in h.remaining] + \
        [{"host": f"db:{d.database}", "item": m} for d in run.databases for m in d.remaining]
    if left and not run.dry_run:
        tables.append(Table(["host", "item"], left, title="Still open (blocks a complete "
                                                          "certificate, R-ACC-6)"))
    if run.databases:
        tables.append(Table(["database", "where", "status", "role", "done", "remaining", "error"],
                            [{**d.as_dict(), "done": "; ".join(d.done)} for d in run.databases],
                            title="PostgreSQL login roles"))
    manual = [{"host": h.host, "item": m} for h in run.hosts for m in h.not_removed]
    if manual:
        tables.append(Table(["host", "item"], manual, title="Names the login (no rights; "
                                                            "review)"))
    with_account = [h.host for h in run.hosts if h.account]
    if run.dry_run:
        text = (f"users freeze --dry-run {run.person}: {len(steps)} step(s) on "
                f"{len(with_account)} host(s) with an account")
    elif run.complete:
        text = (f"users freeze {run.person}: frozen and verified on {len(with_account)} "
                f"host(s) with an account ({len(run.hosts)} checked)")
    elif run.failed_hosts:
        text = (f"users freeze {run.person}: INCOMPLETE; failed hosts: "
                f"{', '.join(run.failed_hosts)}")
    else:
        text = (f"users freeze {run.person}: INCOMPLETE; still open on "
                f"{', '.join(run.open_hosts)} (see 'Still open')")
    messages = [text]
    if run.failed_hosts and not run.dry_run:
        messages.append("rerun the same command once the hosts are back: it finishes the job")
    if run.path:
        messages.append(f"certificate {run.id}: {run.path}")
    if left and not run.dry_run:
        messages.append(f"{len(left)} channel(s) still open: close them by hand (or review "
                        "and pass --reviewed PATH), then rerun")
    return Result(data=run.certificate() | {"certificate_file": run.path}, tables=tables,
                  messages=messages, summary=text, exit_code=run.exit_code)
