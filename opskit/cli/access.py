"""`opskit access`: Access requests: raised by a section head, approved by a manager, applied by the designated admin."""
import click

from .app import OpskitGroup


@click.group("access", cls=OpskitGroup)
def group() -> None:
    """Access requests: raised by a section head, approved by a manager, applied by the designated admin (R-ACC-3)."""
