"""`opskit backup db`: PostgreSQL backups into the repository, restores, drills (issue 24).

Registered on the backup group by opskit.cli.backup (imported at its end).
Thin: resolve repository and databases, call opskit.backup.db, emit Results.
"""
from __future__ import annotations

import shlex

import click

from opskit.backup.locks import RepoLock
from opskit.core.errors import OpskitError, UsageError

from .app import App, OpskitGroup, output_options, pass_app
from . import archivegate
from .backup import _open, _stale_s, group, purpose_option, repo_option


@group.group("db", cls=OpskitGroup)
def db_group() -> None:
    """Database backups: logical dumps, restores and restore drills (docs/database-backup.md).

    \b
    Databases are configured under backup.databases; each 'db run' stores one
    snapshot of kind pg-logical per database: the schema, every table's rows
    (deduplicated day to day) and the globals (roles, tablespaces).

    \b
        opskit backup db run                       # every configured database
        opskit backup db run --db claims --tag daily
        opskit backup db restore latest --target-dsn postgresql://u@db2/claims_copy
        opskit backup db drill --db claims
    """


def _bindir(app: App) -> str | None:
    value = app.config.get("backup.pg.bindir")
    return app.config.relative_path(value) if value else None


@db_group.command("run")
@click.option("--db", "names", multiple=True, metavar="NAME",
              help="Database from backup.databases (repeatable). Default: all of them.")
@click.option("--stdin-from-command", "command", metavar="CMD",
              help="Instead: store the standard output of CMD (another engine's dump tool, "
                   "split like a shell would, no shell run) as one stream.")
@click.option("--name", "stream_name", metavar="NAME", default="dump", show_default=True,
              help="With --stdin-from-command: the stream's name in the snapshot.")
@click.option("--tag", "tags", multiple=True, metavar="T", help="Tag the snapshots (repeatable).")
@repo_option
@output_options()
@pass_app
def run_cmd(app: App, names, command, stream_name, tags, repo, passphrase_file) -> None:
    """Dump databases straight into the repository (no copy on disk).

    One consistent snapshot per database while it keeps working; per-table row
    counts and checksums are recorded for drills. Exit 3 when a database could
    not be saved (the others are), 1 on warnings.
    """
    from opskit.backup.db import logical
    from opskit.backup.db.report import run_result
    from opskit.backup.db.settings import database_targets
    if command:
        if names:
            raise UsageError("give --db or --stdin-from-command, not both")
        argv = shlex.split(command)
        if not argv:
            raise UsageError("--stdin-from-command: empty command")
        if "/" in stream_name or stream_name in ("", ".", ".."):
            raise UsageError(f"--name {stream_name!r}: must be a plain name")
        r = _open(app, repo, passphrase_file, write_only_ok=True)
        with RepoLock(r, stale_after_s=_stale_s(app)):
            done = [logical.backup_command_stream(r, argv, stream_name, tags=list(tags))]
        app.audit_details = {"snapshot": done[0][0], "command": argv[0], "name": stream_name}
        app.emit(run_result(done, []))
        return
    targets = database_targets(app.config, list(names))
    if not targets:
        raise UsageError("no databases configured: add one under backup.databases "
                         "(docs/database-backup.md)")
    r = _open(app, repo, passphrase_file, write_only_ok=True)
    done, failures = [], []
    with RepoLock(r, stale_after_s=_stale_s(app)):
        for target in targets:
            try:
                done.append(logical.LogicalBackup(r, target, bindir=_bindir(app))
                            .run(tags=list(tags)))
            except OpskitError as exc:
                if len(targets) == 1:
                    raise
                failures.append(str(exc))
    app.audit_details = {"snapshots": [sid for sid, _ in done], "failures": failures,
                         "databases": [t.name for t in targets]}
    app.emit(run_result(done, failures))


@db_group.command("restore")
@click.argument("snapshot")
@click.option("--target-dsn", required=True, metavar="DSN",
              help="Database to restore into (libpq string or URL, no password in it).")
@click.option("--target-password-file", metavar="FILE",
              help="File holding the target's password (0600). Else libpq's sources.")
@click.option("--force", is_flag=True,
              help="The target database holds tables: drop and recreate it first.")
@click.option("--no-owner", is_flag=True,
              help="Do not restore owners and grants (the roles do not exist there).")
@click.option("--with-globals", is_flag=True,
              help="First create the backed-up roles and tablespaces (existing ones are kept).")
@purpose_option
@repo_option
@output_options(tabular=False)
@pass_app
def restore_cmd(app: App, snapshot, target_dsn, target_password_file, force, no_owner,
                with_globals, purpose, repo, passphrase_file) -> None:
    """Restore a pg-logical SNAPSHOT ('latest' or an id prefix) into a database.

    A target that already holds tables is refused (exit 2) unless --force.
    Every block read is verified; a damaged repository stops with its name (exit 3).
    An archive snapshot needs --purpose and an approval of it (R-AUD-6, docs/archives.md).
    """
    from opskit.backup.db.report import restore_result
    from opskit.backup.db.restore import LogicalRestore
    from opskit.backup.db.settings import target_from_dsn
    pw = app.config.relative_path(target_password_file) if target_password_file else None
    target = target_from_dsn("target", target_dsn, pw)
    r = _open(app, repo, passphrase_file)
    with RepoLock(r, stale_after_s=_stale_s(app)):
        r.load_index(repair=False)
        snaps = [s for s in r.snapshots() if s.get("kind") == "pg-logical"]
        if not snaps:
            raise UsageError(f"repository {r.backend.location} has no database snapshots")
        snap = r.resolve_snapshot(snapshot, snaps)
        # R-AUD-6: an archive is read only with an approval, and the read is registered
        access = archivegate.read(app, r, snap, purpose, dry_run=False,
                                  target=target.describe())
        rep = LogicalRestore(r, snap, target, bindir=_bindir(app), force=force,
                             no_owner=no_owner, with_globals=with_globals).run()
    app.audit_details.update({"snapshot": snap["id"], "target": target.describe(),
                              "tables": rep.tables, "rows": rep.rows,
                              "recreated": rep.recreated})
    app.emit(archivegate.annotate(restore_result(rep), access))


@db_group.command("drill")
@click.option("--db", "name", metavar="NAME",
              help="Drill the newest snapshot of this database (default: of any).")
@click.option("--snapshot", "snapshot_ref", default="latest", show_default=True,
              help="'latest' or a snapshot id prefix.")
@click.option("--site", default="local", show_default=True,
              help="Where to restore from: 'local' or a site name from the config.")
@click.option("--repo", "repo", metavar="PATH", help="Local repository (with --site local).")
@click.option("--passphrase-file", metavar="FILE", help="Passphrase file (mode 0600).")
@output_options()
@pass_app
def drill_cmd(app: App, name, snapshot_ref, site, repo, passphrase_file) -> None:
    """Prove a database backup restores (R-BAK-5): scratch cluster, verify, RTO/RPO.

    \b
    Starts a scratch PostgreSQL cluster on a free local port, restores the
    snapshot into it (roles first), compares every table's row count and
    checksum with those recorded at backup time, runs the database's
    assertions (backup.databases.NAME.assertions), then stops and removes
    the cluster. Writes the report to <state dir>/drills/ like file drills
    and an audit entry. Exit 0 only when everything verified and RTO/RPO hold.
    """
    from opskit.backup import open_repo
    from opskit.backup.db.drill import run_db_drill
    from opskit.backup.db.report import drill_result
    from opskit.backup.db.settings import database_targets
    from opskit.backup.report import write_drill_report
    from opskit.backup.repository import RepositoryError
    from .backup import _prompt
    from .backup_drill import _site_location, archive_drill
    assertions = database_targets(app.config, [name])[0].assertions if name else []
    location, targets = _site_location(app, site, repo)
    if not open_repo.repository_exists(location, app.config):
        raise RepositoryError(f"site {site}: no repository at {location}")
    r = open_repo.open_repository(location, open_repo.get_passphrase(
        app.config, passphrase_file, _prompt), app.config)
    if r.keys.write_only:
        raise RepositoryError("a drill restores data: it needs a full key, not a write-only one")
    with RepoLock(r, stale_after_s=_stale_s(app)):
        report = run_db_drill(r, snapshot_ref=snapshot_ref, database=name,
                              assertions=assertions, targets=targets, operator=app.operator,
                              bindir=_bindir(app), os_user=app.config.get("backup.pg.drill_os_user"),
                              site=site)
    json_path, md_path = write_drill_report(app.state_dir, report)
    app.audit_details = {"drill": {k: v for k, v in report.to_json().items()
                                   if k not in ("tables", "failures")},
                         "failures": report.failures[:20], "report": json_path}
    result = drill_result(report, json_path, md_path)
    archive_drill(app, r, report, result)
    app.emit(result)
