"""`opskit approve-op`: a second person's signed approval of a high-risk operation (R-SEC-2)."""
from __future__ import annotations

import click

from .app import App, OpskitCommand, output_options, pass_app
from .error import key_option, signing_key


def approval_options(func):
    """--for WHO, --comment and --key: what every signed approval takes."""
    func = key_option(func)
    func = click.option("--comment", default="", metavar="TEXT",
                        help="Why it is approved.")(func)
    return click.option("--for", "for_person", required=True, metavar="WHO",
                        help="The person who will run it (not you).")(func)


@click.command("approve-op", cls=OpskitCommand)
@click.argument("operation")
@click.option("--subject", required=True, metavar="HEX",
              help="The subject the command's --dry-run shows (what exactly will be done).")
@approval_options
@output_options(tabular=False)
@pass_app
def group(app: App, operation, subject, for_person, comment, key_file) -> None:
    """Approve a high-risk operation as the second person (R-SEC-2).

    \b
    The operator runs the command with --dry-run, which prints the OPERATION,
    its --subject and this very command line. You sign it with your key, which
    must be registered in incidents.reviewers; you may not approve an operation
    you will run yourself, and one key counts once. The approval is used up by
    the run and expires after incidents.approval_valid_hours. See docs/incidents.md.

    \b
      opskit approve-op 'backup forget' --subject 3f2a... --for zhang.wei \\
          --key ~/.ssh/id_ed25519 --comment "ticket T-88"
    """
    from opskit.core.output import Result
    from opskit.incidents import clocks, twoperson
    entry = twoperson.approve(app.state_dir, operation=operation, subject=subject,
                              for_person=for_person, signer=signing_key(app, key_file),
                              reviewers=app.config.get("incidents.reviewers"), comment=comment,
                              now=clocks.utcnow(),
                              valid_hours=app.config.get("incidents.approval_valid_hours"))
    app.audit_details.update({"operation": operation, "subject": subject, "for": for_person,
                              "reviewer": entry["actor"], "rule_ids": ["R-SEC-2"]})
    text = f"{entry['actor']} approved '{operation}' for {for_person} (subject {subject[:12]})"
    app.emit(Result(data={k: entry[k] for k in ("seq", "time", "operation", "subject", "for",
                                                "actor", "comment")},
                    messages=[text], summary=text))
