"""`opskit audit`: Audit trail: show, verify and checkpoint the tamper-evident log of every opskit command."""
import click

from .app import OpskitGroup


@click.group("audit", cls=OpskitGroup)
def group() -> None:
    """Audit trail: show, verify and checkpoint the tamper-evident log of every opskit command (R-DAT-1, R-AUD-1, R-AUD-3)."""
