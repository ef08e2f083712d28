"""`opskit correct`: Data corrections: request, approval by someone else, controlled execution and a verifiable ledger."""
import click

from .app import OpskitGroup


@click.group("correct", cls=OpskitGroup)
def group() -> None:
    """Data corrections: request, approval by someone else, controlled execution and a verifiable ledger (R-DAT-1..3)."""
