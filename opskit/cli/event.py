"""`opskit event`: the security-event register (R-AUD-4)."""
from __future__ import annotations

import click

from .app import App, OpskitGroup, output_options, pass_app
from .incident import person, when


@click.group("event", cls=OpskitGroup)
def group() -> None:
    """Security events: time, place, type, scope, measures, person responsible (R-AUD-4).

    \b
    Each event must be recorded within incidents.event_record_hours (24) of
    happening -- 'list' flags the late ones -- and is kept at least
    incidents.event_retention_days (183): 'prune' refuses to drop anything
    younger. See docs/incidents.md.

    \b
      opskit event record --at 2026-11-01T08:00 --place "server room" \\
          --type "USB stick inserted" --scope db01 --measures "removed, scanned" \\
          --responsible zhang.wei
      opskit event list --since 30d
      opskit event prune --before 2026-01-01
    """


@group.command("record")
@click.option("--at", "at", metavar="TIME", help="When it happened (default now).")
@click.option("--place", required=True, metavar="WHERE", help="Where it happened.")
@click.option("--type", "type_", required=True, metavar="TYPE", help="Kind of event.")
@click.option("--scope", required=True, metavar="TEXT", help="What was affected.")
@click.option("--measures", required=True, metavar="TEXT", help="Measures taken.")
@click.option("--responsible", required=True, metavar="WHO", help="The person responsible.")
@output_options(tabular=False)
@pass_app
def record_cmd(app: App, at, place, type_, scope, measures, responsible) -> None:
    """Record a security event with its six required fields."""
    from opskit.incidents import events
    from opskit.incidents.report import event_result
    stated, now = when(at)
    row = events.record(app.state_dir, actor=person(app), at=stated, now=now,
                        record_hours=app.config.get("incidents.event_record_hours"),
                        place=place, type=type_, scope=scope, measures=measures,
                        responsible=responsible)
    app.audit_details.update({"event": row["id"], "in_time": row["in_time"],
                              "rule_ids": ["R-AUD-4"]})
    app.emit(event_result(row))


@group.command("list")
@click.option("--since", metavar="WHEN", help="Only events recorded since (7d, 2026-11-01).")
@output_options()
@pass_app
def list_cmd(app: App, since) -> None:
    """List security events (late records flagged)."""
    from opskit.core.audit import parse_since
    from opskit.incidents import clocks, events
    from opskit.incidents.report import event_list_result
    now = clocks.utcnow()
    found = events.load(app.state_dir, parse_since(since, now) if since else None)
    app.emit(event_list_result([events.row(e, now) for e in found]))


@group.command("prune")
@click.option("--before", required=True, metavar="TIME",
              help="Drop events recorded before this time (never inside the retention floor).")
@output_options(tabular=False)
@pass_app
def prune_cmd(app: App, before) -> None:
    """Drop old events; refused for anything younger than the retention floor."""
    from opskit.incidents import clocks, events
    from opskit.incidents.report import prune_result
    cut, now = when(before, "--before")
    app.audit_details["rule_ids"] = ["R-AUD-4"]
    dropped = events.prune(app.state_dir, before=cut, now=now,
                           retention_days=app.config.get("incidents.event_retention_days"))
    app.audit_details["pruned"] = dropped
    app.emit(prune_result(dropped, clocks.iso(cut)))
