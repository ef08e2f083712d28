"""`opskit schedule`: Scheduler: run opskit jobs on a timetable, or print cron/systemd units."""
import click

from .app import OpskitGroup


@click.group("schedule", cls=OpskitGroup)
def group() -> None:
    """Scheduler: run opskit jobs on a timetable, or print cron/systemd units (R-BAK-4, R-BAK-5)."""
