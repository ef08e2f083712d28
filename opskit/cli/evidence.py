"""`opskit evidence`: the auditor evidence pack (R-AUD-2, R-AUD-4)."""
import click

from .app import OpskitCommand


@click.command("evidence", cls=OpskitCommand)
def group() -> None:
    """Collect the newest evidence for every covered rule into one folder (R-AUD-2)."""
    raise click.UsageError("not implemented yet")
