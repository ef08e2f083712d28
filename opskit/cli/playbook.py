"""`opskit playbook`: Playbooks: ordered runbooks of opskit steps with variables, all recorded in the audit log.."""
import click

from .app import OpskitGroup


@click.group("playbook", cls=OpskitGroup)
def group() -> None:
    """Playbooks: ordered runbooks of opskit steps with variables, all recorded in the audit log."""
