"""`opskit backup`: Encrypted, deduplicated backups: run, list, restore, check."""
import click

from .app import OpskitGroup


@click.group("backup", cls=OpskitGroup)
def group() -> None:
    """Encrypted, deduplicated backups: run, list, restore, check (R-BAK-1, R-BAK-2, R-BAK-4)."""
