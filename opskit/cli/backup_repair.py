"""`opskit backup repair index|snapshots`: mend a damaged repository (#28 item 3).

Registered on the backup group by opskit.cli.backup (imported at its end).
See docs/backup.md, "When the repository is damaged".
"""
from __future__ import annotations

import click

from opskit.backup import report
from opskit.backup.locks import RepoLock

from .app import App, OpskitGroup, output_options, pass_app
from .backup import _open, _stale_s, group, repo_option

dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Show what would be done; change nothing.")


@group.group("repair", cls=OpskitGroup)
def repair_group() -> None:
    """Mend a damaged repository: rebuild the index, rewrite snapshots.

    \b
    Run 'opskit backup check --read-data' first; it names what is damaged.
    Then, in this order:
        opskit backup repair index --dry-run      # then without --dry-run
        opskit backup repair snapshots --dry-run  # then without --dry-run
        opskit backup check --read-data && opskit backup drill --all
    See docs/backup.md, 'When the repository is damaged'.
    """


@repair_group.command("index")
@dry_run_option
@repo_option
@output_options()
@pass_app
def repair_index_cmd(app: App, dry_run: bool, repo, passphrase_file) -> None:
    """Rebuild the index from the pack headers and replace every index file.

    A pack whose header cannot be read is left out (its data is lost) and
    listed; 'repair snapshots' then rewrites the snapshots that needed it.
    """
    from opskit.backup.repair import repair_index
    r = _open(app, repo, passphrase_file)
    with RepoLock(r, exclusive=not dry_run, stale_after_s=_stale_s(app)):
        rep = repair_index(r, dry_run=dry_run)
    app.audit_details = {"repair_index": rep.to_json()}
    app.emit(report.repair_index_result(rep, dry_run))


@repair_group.command("snapshots")
@dry_run_option
@repo_option
@output_options()
@pass_app
def repair_snapshots_cmd(app: App, dry_run: bool, repo, passphrase_file) -> None:
    """Rewrite snapshots that refer to lost data; drop those that cannot be read.

    \b
    A file whose data is gone, or a directory whose tree is gone, is left out
    of a new copy of the snapshot (tagged 'repaired', 'repaired_from' the old
    id); the old snapshot is removed. A snapshot whose file or root tree is
    unreadable is dropped. Exit 1 when anything was (or would be) lost.
    """
    from opskit.backup.repair import repair_snapshots
    r = _open(app, repo, passphrase_file)
    with RepoLock(r, exclusive=not dry_run, stale_after_s=_stale_s(app)):
        r.load_index(repair=False)
        rep = repair_snapshots(r, dry_run=dry_run)
    app.audit_details = {"repair_snapshots": rep.to_json()}
    app.emit(report.repair_snapshots_result(rep, dry_run))
