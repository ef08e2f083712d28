"""`opskit error`: business-error reports (R-AUD-5)."""
from __future__ import annotations

import click

from .app import App, OpskitGroup, output_options, pass_app
from .incident import at_option, person, when

GRADES = ["general", "larger", "major", "一般", "较大", "重大"]


@click.group("error", cls=OpskitGroup)
def group() -> None:
    """Business errors: report, supervisor review, rectify, close (R-AUD-5).

    \b
    Graded general/larger/major (一般/较大/重大), reported within
    incidents.error_report_hours (24) of happening, reviewed by a business
    supervisor -- a signature by a key registered in incidents.supervisors,
    never the reporter's own -- and rectified within incidents.error_rectify_days
    (7) with measures, owner, time and effect, naming the correction requests
    (opskit correct) that fixed the data. See docs/incidents.md.

    \b
      opskit error report --grade 较大 --description "claims paid twice" \\
          --occurred-at 2026-11-01T09:00
      opskit --operator li.super error review ERR-0001 --key ~/.ssh/id_ed25519
      opskit error rectify ERR-0001 --measures "reversed" --owner wang.fang \\
          --effect "balances match" --correction CR-12
      opskit error close ERR-0001
    """


def signing_key(app: App, key_file: str | None):
    """The caller's Ed25519 key: --key, else incidents.key_file, else the default."""
    from opskit.core.signing import load_signer
    from opskit.core.state import StateLayout
    path = key_file or app.config.get("incidents.key_file") or \
        StateLayout(app.state_dir).corrections_key
    signer = load_signer(app.config.relative_path(path) if not key_file else path)
    app.audit_details["key"] = signer.fingerprint
    return signer


key_option = click.option("--key", "key_file", metavar="FILE",
                          help="Your Ed25519 private key (default incidents.key_file).")


def _emit(app: App, err, headline: str) -> None:
    from opskit.core.output import Result
    from opskit.incidents import clocks
    now = clocks.utcnow()
    app.audit_details.update({"error": err.id, "state": err.state, "rule_ids": ["R-AUD-5"]})
    app.emit(Result(data=err.to_dict(now), messages=[headline, f"state: {err.state}"],
                    summary=headline))


@group.command("report")
@click.option("--grade", required=True, type=click.Choice(GRADES), help="Error grade.")
@click.option("--description", required=True, metavar="TEXT", help="What went wrong.")
@click.option("--occurred-at", metavar="TIME", help="When it happened (default now).")
@output_options(tabular=False)
@pass_app
def report_cmd(app: App, grade, description, occurred_at) -> None:
    """Report a business error (within 24 h of it happening)."""
    from opskit.incidents import business
    occurred, now = when(occurred_at, "--occurred-at")
    err = business.report(app.state_dir, actor=person(app), grade=grade,
                          description=description, occurred=occurred, now=now,
                          report_hours=app.config.get("incidents.error_report_hours"),
                          rectify_days=app.config.get("incidents.error_rectify_days"))
    _emit(app, err, f"reported {err.id} ({err.grade})")


@group.command("review")
@click.argument("error_id")
@click.option("--comment", default="", metavar="TEXT", help="The supervisor's remarks.")
@key_option
@output_options(tabular=False)
@pass_app
def review_cmd(app: App, error_id, comment, key_file) -> None:
    """The business supervisor's signed review."""
    from opskit.incidents import business, clocks
    err = business.review(app.state_dir, error_id, signer=signing_key(app, key_file),
                          supervisors=app.config.get("incidents.supervisors"),
                          comment=comment, now=clocks.utcnow())
    _emit(app, err, f"{err.id} reviewed by {err.reviews[-1]['by']}")


@group.command("rectify")
@click.argument("error_id")
@click.option("--measures", required=True, metavar="TEXT", help="Measures taken.")
@click.option("--owner", required=True, metavar="WHO", help="Who owns the rectification.")
@click.option("--effect", required=True, metavar="TEXT", help="The effect.")
@click.option("--correction", "corrections", multiple=True, metavar="CR-N",
              help="A correction request that fixed the data (repeatable).")
@at_option
@output_options(tabular=False)
@pass_app
def rectify_cmd(app: App, error_id, measures, owner, effect, corrections, at) -> None:
    """Record the rectification report (within 7 days of the error)."""
    from opskit.incidents import business
    stated, now = when(at)
    err = business.rectify(app.state_dir, error_id, actor=person(app), measures=measures,
                           owner=owner, effect=effect, corrections=list(corrections),
                           at=stated, now=now)
    _emit(app, err, f"{err.id} rectified")


@group.command("close")
@click.argument("error_id")
@output_options(tabular=False)
@pass_app
def close_cmd(app: App, error_id) -> None:
    """Close a reviewed and rectified business error."""
    from opskit.incidents import business, clocks
    err = business.close(app.state_dir, error_id, actor=person(app),
                         supervisors=app.config.get("incidents.supervisors"),
                         now=clocks.utcnow())
    _emit(app, err, f"closed {err.id}")


@group.command("list")
@output_options()
@pass_app
def list_cmd(app: App) -> None:
    """List business errors with their state and missed clocks."""
    from opskit.core.output import Result, Table
    from opskit.incidents import business, clocks
    now = clocks.utcnow()
    rows = [e.row(now) for e in business.load(app.state_dir).values()]
    app.emit(Result(data=rows, tables=[Table(["id", "state", "grade", "occurred", "reporter",
                                              "reviewed_by", "corrections", "missed"], rows,
                                             title="Business errors (R-AUD-5)")],
                    summary=f"{len(rows)} business error(s)"))


@group.command("show")
@click.argument("error_id")
@output_options(tabular=False)
@pass_app
def show_cmd(app: App, error_id) -> None:
    """One business error with its review, rectification and clocks."""
    from opskit.incidents import business
    _emit(app, business.get(app.state_dir, error_id), error_id.upper())
