"""`opskit hosts`: Hosts: the inventory, reachability and SSH host-key checks.."""
import click

from .app import OpskitGroup


@click.group("hosts", cls=OpskitGroup)
def group() -> None:
    """Hosts: the inventory, reachability and SSH host-key checks."""
