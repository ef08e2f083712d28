"""`opskit perms`: Permission diffs: declared roles vs actual grants on hosts and PostgreSQL, with auditor reports."""
import click

from .app import OpskitGroup


@click.group("perms", cls=OpskitGroup)
def group() -> None:
    """Permission diffs: declared roles vs actual grants on hosts and PostgreSQL, with auditor reports (R-ACC-4, R-AUD-2)."""
