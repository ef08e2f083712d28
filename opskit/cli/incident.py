"""`opskit incident`: security incidents with the regulation's clocks (R-INC-1)."""
from __future__ import annotations

import click

from opskit.incidents import clocks

from .app import App, OpskitGroup, output_options, pass_app

GRADES = ["general", "large", "major", "especially-major", "一般", "较大", "重大", "特别重大"]


@click.group("incident", cls=OpskitGroup)
def group() -> None:
    """Security incidents: graded, reported and closed against the clock (R-INC-1).

    \b
    The clock starts at the stated detection time. Defaults (incidents.deadlines):
    report to information security within 2 h, major and especially-major also to
    the superior within 1 h, first response (the first update) within 24 h,
    analysis and rectification (close) within 72 h. Every step is a record in a
    hash-chained register under the state directory and an audit entry.
    --at TIME states when a step happened (default: now; never in the future).
    See docs/incidents.md.

    \b
      opskit incident open --grade major --type intrusion --place "db01" \\
          --scope "claims DB" --description "unknown login" --detected-at 2026-11-01T08:00
      opskit incident report INC-0001 --to security --recipient "info-sec duty"
      opskit incident update INC-0001 --measures "account locked"
      opskit incident close INC-0001 --analysis ... --rectification ... --effect ...
      opskit incident overdue            # exit 1 naming each missed deadline
    """


# --- shared plumbing (event, error and approve-op use these too) -----------------------

def person(app: App) -> str:
    """Who acts: the declared operator (--operator, $OPSKIT_OPERATOR, config), else the
    OS login."""
    from opskit.accounts.requests import os_login

    from .access import declared_operator
    name = declared_operator(app) or os_login()
    app.audit_details["actor"] = name
    return name


def when(text: str | None, what: str = "--at") -> tuple:
    """(the stated time, now): ``text`` parsed, or now when not given."""
    now = clocks.utcnow()
    return (clocks.parse_when(text, what) if text else now), now


def automatic_incident(app: App, result, kind: str, detail: str,
                       evidence_path: str | None) -> None:
    """Something opskit detected itself (a failed drill, a tampered audit log, a policy
    regression, a stopped replication) opens an incident with the evidence attached
    (#25 item 1), unless one of the same kind and detail is still open (an hourly job
    must not open one per run). A register that cannot be written is reported but never
    hides the command's own verdict."""
    from opskit.core.errors import OpskitError
    from opskit.incidents import incidents, open_automatic
    try:
        same = [i for i in incidents.load(app.state_dir).values()
                if i.automatic and i.state == "open" and i.type == kind and i.scope == detail]
        inc = same[0] if same else open_automatic(app.state_dir, kind, detail, evidence_path)
    except (OpskitError, OSError) as exc:
        result.messages.append(f"could not open an incident for this failure: {exc}")
        return
    app.audit_details["incident"] = inc.id
    if isinstance(result.data, dict):
        result.data["incident"] = inc.id
    verb = "incident still open" if same else "opened incident"
    result.messages.append(f"{verb} {inc.id} (R-INC-1): 'opskit incident show {inc.id}'")


at_option = click.option("--at", "at", metavar="TIME",
                         help="When this happened (ISO-8601; default now).")


def _emit_step(app: App, inc, now, headline: str) -> None:
    from opskit.incidents.report import incident_step_result
    app.audit_details.update({"incident": inc.id, "grade": inc.grade, "state": inc.state,
                              "rule_ids": ["R-INC-1"]})
    app.emit(incident_step_result(inc, now, headline))


def _step(app: App, step: str, incident_id: str, at: str | None, headline: str, **fields) -> None:
    """Run one step (update, report, close) of the domain at the stated time."""
    from opskit.incidents import incidents
    stated, now = when(at)
    inc = getattr(incidents, step)(app.state_dir, incident_id, actor=person(app), at=stated,
                                   now=now, **fields)
    _emit_step(app, inc, now, headline.format(id=inc.id))


# --- commands ----------------------------------------------------------------------------

@group.command("open")
@click.option("--grade", required=True, type=click.Choice(GRADES), help="Incident grade.")
@click.option("--type", "type_", required=True, metavar="TYPE", help="Kind of incident.")
@click.option("--place", required=True, metavar="WHERE", help="Where it happened.")
@click.option("--scope", required=True, metavar="TEXT", help="What and who is affected.")
@click.option("--description", required=True, metavar="TEXT", help="First description.")
@click.option("--detected-at", metavar="TIME", help="When it was detected (default now): the "
                                                    "clock starts here.")
@output_options(tabular=False)
@pass_app
def open_cmd(app: App, grade, type_, place, scope, description, detected_at) -> None:
    """Open an incident; its deadlines run from the detection time."""
    from opskit.incidents import incidents
    from opskit.incidents.settings import deadlines_for
    detected, now = when(detected_at, "--detected-at")
    grade = incidents.grade_of(grade)
    inc = incidents.open_incident(app.state_dir, actor=person(app), grade=grade, type=type_,
                                  place=place, scope=scope, description=description,
                                  detected_at=detected, now=now,
                                  hours=deadlines_for(app.config, grade))
    _emit_step(app, inc, now, f"opened {inc.id} ({inc.grade}, {inc.type})")


@group.command("update")
@click.argument("incident_id")
@click.option("--measures", default="", metavar="TEXT", help="Measures taken.")
@click.option("--findings", default="", metavar="TEXT", help="What was found.")
@at_option
@output_options(tabular=False)
@pass_app
def update_cmd(app: App, incident_id, measures, findings, at) -> None:
    """Record measures and findings (the first update is the first response)."""
    _step(app, "update", incident_id, at, "updated {id}", measures=measures, findings=findings)


@group.command("report")
@click.argument("incident_id")
@click.option("--to", "to", required=True, type=click.Choice(["security", "superior"]),
              help="Information security, or the superior (major and above).")
@click.option("--recipient", required=True, metavar="WHO", help="Who was told.")
@at_option
@output_options(tabular=False)
@pass_app
def report_cmd(app: App, incident_id, to, recipient, at) -> None:
    """Record who was told and when."""
    _step(app, "report", incident_id, at, f"{{id}} reported to {to} ({recipient})", to=to,
          recipient=recipient)


@group.command("close")
@click.argument("incident_id")
@click.option("--analysis", required=True, metavar="TEXT", help="Cause analysis.")
@click.option("--rectification", required=True, metavar="TEXT", help="What was rectified.")
@click.option("--effect", required=True, metavar="TEXT", help="The effect of the measures.")
@at_option
@output_options(tabular=False)
@pass_app
def close_cmd(app: App, incident_id, analysis, rectification, effect, at) -> None:
    """Close with analysis, rectification and effect."""
    _step(app, "close", incident_id, at, "closed {id}", analysis=analysis,
          rectification=rectification, effect=effect)


@group.command("list")
@click.option("--open", "only_open", is_flag=True, help="Only incidents not yet closed.")
@click.option("--at", "at", metavar="TIME", help="Evaluate the clocks as of TIME (default now).")
@output_options()
@pass_app
def list_cmd(app: App, only_open, at) -> None:
    """List incidents with their next deadline and what was missed."""
    from opskit.incidents import incidents
    from opskit.incidents.report import incident_list_result
    now = when(at)[0]
    found = [i for i in incidents.load(app.state_dir).values()
             if not only_open or i.state == "open"]
    app.emit(incident_list_result(found, now))


@group.command("show")
@click.argument("incident_id")
@click.option("--at", "at", metavar="TIME", help="Evaluate the clocks as of TIME (default now).")
@output_options()
@pass_app
def show_cmd(app: App, incident_id, at) -> None:
    """One incident: facts, deadlines and history."""
    from opskit.incidents import incidents
    from opskit.incidents.report import incident_show_result
    app.emit(incident_show_result(incidents.get(app.state_dir, incident_id), when(at)[0]))


@group.command("overdue")
@click.option("--at", "at", metavar="TIME", help="Evaluate the clocks as of TIME (default now).")
@click.option("--metrics", "metrics_file", metavar="FILE",
              help="Also write Prometheus gauges (open incidents by grade, seconds to the next "
                   "deadline) to FILE (default: the scheduler's metrics directory).")
@output_options()
@pass_app
def overdue_cmd(app: App, at, metrics_file) -> None:
    """Missed deadlines: exit 1 naming each one (run hourly by the scheduler)."""
    from opskit.incidents import incidents, metrics
    from opskit.incidents.report import overdue_result
    now = when(at)[0]
    found = list(incidents.load(app.state_dir).values())
    rows = incidents.overdue(found, now)
    path = metrics_file or metrics.default_path(app.state_dir,
                                                app.config.get("schedule.metrics_dir"))
    metrics.write(path, found, now)
    app.audit_details.update({"missed": [f"{r['id']} {r['deadline']}" for r in rows],
                              "metrics": path, "rule_ids": ["R-INC-1"]})
    app.emit(overdue_result(rows, now))


@group.command("verify")
@output_options()
@pass_app
def verify_cmd(app: App) -> None:
    """Check the hash chains of the incident, event, error, approval and archive registers."""
    from opskit.archives.register import register as archive_register
    from opskit.incidents.registers import verify_all
    from opskit.incidents.report import verify_result
    problems = verify_all(app.state_dir)
    problems["archive accesses and destructions"] = archive_register(app.state_dir).verify()
    app.emit(verify_result(problems))
