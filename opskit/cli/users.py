"""`opskit users`: Accounts: provisioning from the roster, departure and transfer freezes."""
import click

from .app import OpskitGroup


@click.group("users", cls=OpskitGroup)
def group() -> None:
    """Accounts: provisioning from the roster, departure and transfer freezes (R-ACC-1, R-ACC-6)."""
