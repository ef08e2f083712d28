"""`opskit policy`: Policy checks: removable media, wireless, routes, firewalls and ports."""
import click

from .app import OpskitGroup


@click.group("policy", cls=OpskitGroup)
def group() -> None:
    """Policy checks: removable media, wireless, routes, firewalls and ports (R-MED-2, R-NET-1, R-NET-3, R-NET-5)."""
