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
@click.option("--jobs", "-j", type=click.IntRange(1, 64), metavar="N",
              help="Tables dumped at once, sharing one snapshot. Default: "
                   "backup.databases.NAME.jobs, else min(4, cores).")
@repo_option
@output_options()
@pass_app
def run_cmd(app: App, names, command, stream_name, tags, jobs, repo, passphrase_file) -> None:
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
                done.append(logical.LogicalBackup(r, target, bindir=_bindir(app), jobs=jobs)
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
@click.option("--target-dsn", metavar="DSN",
              help="pg-logical: database to restore into (libpq string or URL, no password).")
@click.option("--target-password-file", metavar="FILE",
              help="File holding the target's password (0600). Else libpq's sources.")
@click.option("--target-datadir", metavar="DIR",
              help="pg-base: data directory to unpack into, set up to replay the archived WAL.")
@click.option("--to-time", metavar="T", help="pg-base: recover up to this time (ISO, with zone).")
@click.option("--to-lsn", metavar="L", help="pg-base: recover up to this WAL position (0/3000028).")
@click.option("--to-xid", metavar="X", help="pg-base: recover up to this transaction id.")
@click.option("--target-action", type=click.Choice(["promote", "pause", "shutdown"]),
              default="promote", show_default=True,
              help="pg-base: what the server does on reaching the target.")
@click.option("--owner", metavar="USER",
              help="pg-base: owner of the restored files (default: the directory's owner).")
@click.option("--restore-command", metavar="CMD",
              help="pg-base: restore_command to write (default: this opskit's wal-fetch).")
@click.option("--force", is_flag=True,
              help="Replace what the target holds (a database's tables, a directory's files).")
@click.option("--no-owner", is_flag=True,
              help="pg-logical: do not restore owners and grants.")
@click.option("--with-globals", is_flag=True,
              help="pg-logical: first create the backed-up roles and tablespaces.")
@purpose_option
@repo_option
@output_options(tabular=False)
@pass_app
def restore_cmd(app: App, snapshot, target_dsn, target_password_file, target_datadir, to_time,
                to_lsn, to_xid, target_action, owner, restore_command, force, no_owner,
                with_globals, purpose, repo, passphrase_file) -> None:
    """Restore a database SNAPSHOT ('latest' or an id prefix).

    \b
    pg-logical snapshots go into a database (--target-dsn); a target that
    already holds tables is refused (exit 2) unless --force.
    pg-base snapshots go into a data directory (--target-datadir) with
    recovery settings: starting PostgreSQL there replays the archived WAL up
    to --to-time/--to-lsn/--to-xid (default: all of it). A non-empty
    directory needs --force; one a running server uses is always refused.
    Every block read is verified; a damaged repository stops with its name (exit 3).
    An archive snapshot needs --purpose and an approval of it (R-AUD-6, docs/archives.md).
    """
    if bool(target_dsn) == bool(target_datadir):
        raise UsageError("give --target-dsn (pg-logical) or --target-datadir (pg-base)")
    if target_datadir:
        return _restore_physical(app, snapshot, target_datadir, to_time, to_lsn, to_xid,
                                 target_action, owner, restore_command, force, purpose, repo,
                                 passphrase_file)
    if to_time or to_lsn or to_xid:
        raise UsageError("--to-time/--to-lsn/--to-xid need a base backup and --target-datadir")
    from opskit.backup.db.report import restore_result
    from opskit.backup.db.restore import LogicalRestore
    from opskit.backup.db.settings import target_from_dsn
    pw = app.config.relative_path(target_password_file) if target_password_file else None
    target = target_from_dsn("target", target_dsn, pw)
    r = _open(app, repo, passphrase_file)
    with RepoLock(r, stale_after_s=_stale_s(app)):
        r.load_index(repair=False)
        snap = _pick(r, snapshot, "pg-logical")
        # R-AUD-6: an archive is read only with an approval, and the read is registered
        access = archivegate.read(app, r, snap, purpose, dry_run=False,
                                  target=target.describe())
        rep = LogicalRestore(r, snap, target, bindir=_bindir(app), force=force,
                             no_owner=no_owner, with_globals=with_globals).run()
    app.audit_details.update({"snapshot": snap["id"], "target": target.describe(),
                              "tables": rep.tables, "rows": rep.rows,
                              "recreated": rep.recreated})
    app.emit(archivegate.annotate(restore_result(rep), access))


def _pick(r, ref: str, kind: str) -> dict:
    snaps = [s for s in r.snapshots() if s.get("kind") == kind]
    if not snaps:
        raise UsageError(f"repository {r.backend.location} has no {kind} snapshots")
    return r.resolve_snapshot(ref, snaps)


def _wal_fetch_command(app: App, repo: str | None, cluster: str) -> str:
    """restore_command running this opskit's wal-fetch on the same repository and config."""
    import os
    import sys
    from opskit.backup import open_repo
    location, _ = open_repo.repo_location(app.config, app.state_dir, repo)
    words = [sys.executable, "-m", "opskit"]
    if app.config.source:
        words += ["--config", os.path.abspath(app.config.source)]
    words += ["backup", "wal-fetch", "--cluster", cluster, "--repo", location]
    return " ".join(shlex.quote(w) for w in words) + " %f %p"


def _restore_physical(app, snapshot, datadir, to_time, to_lsn, to_xid, action, owner,
                      restore_command, force, purpose, repo, passphrase_file) -> None:
    from opskit.backup.db.pitr import PhysicalRestore, RecoveryTarget
    from opskit.backup.db.report import physical_restore_result
    target = RecoveryTarget(to_time, to_lsn, to_xid, action)
    target.validate()
    r = _open(app, repo, passphrase_file)
    with RepoLock(r, stale_after_s=_stale_s(app)):
        r.load_index(repair=False)
        snap = _pick(r, snapshot, "pg-base")
        access = archivegate.read(app, r, snap, purpose, dry_run=False, target=datadir)
        command = restore_command or _wal_fetch_command(app, repo, snap["pg_base"]["cluster"])
        rep = PhysicalRestore(r, snap, datadir, target, command, force=force,
                              owner=owner).run()
    app.audit_details = {"snapshot": snap["id"], "target_datadir": rep.target,
                         "recovery": {k: v for k, v in rep.settings.items()
                                      if k != "restore_command"}, "emptied": rep.emptied}
    app.emit(archivegate.annotate(physical_restore_result(rep), access))


@db_group.command("drill")
@click.option("--db", "name", metavar="NAME",
              help="Drill the newest snapshot of this database (default: of any).")
@click.option("--snapshot", "snapshot_ref", default="latest", show_default=True,
              help="'latest' or a snapshot id prefix.")
@click.option("--kind", type=click.Choice(["pg-logical", "pg-base"]),
              help="Only snapshots of this kind (default: the newest of either).")
@click.option("--to-time", metavar="T",
              help="pg-base: replay WAL up to this time (ISO, with zone) instead of to the end.")
@click.option("--site", default="local", show_default=True,
              help="Where to restore from: 'local' or a site name from the config.")
@click.option("--drill-host", metavar="HOST",
              help="Run the scratch cluster on HOST (from the inventory) over SSH, host key "
                   "verified, instead of here (HOST needs the PostgreSQL server programs "
                   "of the backup's major version).")
@click.option("--repo", "repo", metavar="PATH", help="Local repository (with --site local).")
@click.option("--passphrase-file", metavar="FILE", help="Passphrase file (mode 0600).")
@output_options()
@pass_app
def drill_cmd(app: App, name, snapshot_ref, kind, to_time, site, drill_host, repo,
              passphrase_file) -> None:
    """Prove a database backup restores (R-BAK-5): scratch cluster, verify, RTO/RPO.

    \b
    Starts a scratch PostgreSQL cluster on a free local port (or on a drill
    host over SSH, reached through a tunnel: --drill-host) and restores the
    snapshot into it. pg-logical: roles first, then every table's row
    count and checksum compared with those recorded at backup time.
    pg-base: the WAL chain checked (a missing segment is named), the base
    backup unpacked and the archived WAL replayed to the end (or --to-time),
    then every table of every database read in full; RPO is the age of the
    last replayed commit. Both run the database's assertions
    (backup.databases.NAME.assertions), then stop and remove the cluster.
    Writes the report to <state dir>/drills/ like file drills and an audit
    entry. Exit 0 only when everything verified and RTO/RPO hold.
    """
    from opskit.backup import open_repo
    from opskit.backup.db.drill import run_db_drill
    from opskit.backup.db.report import drill_result
    from opskit.backup.db.settings import database_targets
    from opskit.backup.report import write_drill_report
    from opskit.backup.repository import RepositoryError
    from .backup import _prompt
    from .backup_drill import _site_location, archive_drill
    assertions = {t.name: t.assertions for t in database_targets(app.config, [name] if name
                                                                  else None)}
    location, targets = _site_location(app, site, repo)
    if not open_repo.repository_exists(location, app.config):
        raise RepositoryError(f"site {site}: no repository at {location}")
    r = open_repo.open_repository(location, open_repo.get_passphrase(
        app.config, passphrase_file, _prompt), app.config)
    if r.keys.write_only:
        raise RepositoryError("a drill restores data: it needs a full key, not a write-only one")
    host = None
    if drill_host:
        from opskit.hosts.inventory import SSHSettings, load_inventory
        entry = load_inventory(app.config).host(drill_host)
        if entry.is_local:
            raise UsageError(f"--drill-host {drill_host}: the inventory makes it this machine; "
                             "leave --drill-host out to drill here, or give the host an "
                             "address to drill there over SSH")
        host = entry.connect(SSHSettings.from_config(app.config))
    try:
        with RepoLock(r, stale_after_s=_stale_s(app)):
            report = run_db_drill(r, snapshot_ref=snapshot_ref, database=name, kind=kind,
                                  to_time=to_time, assertions=assertions, targets=targets,
                                  operator=app.operator, bindir=_bindir(app),
                                  os_user=app.config.get("backup.pg.drill_os_user"), site=site,
                                  drill_host=host)
    finally:
        if host is not None:
            host.close()
    json_path, md_path = write_drill_report(app.state_dir, report)
    app.audit_details = {"drill": {k: v for k, v in report.to_json().items()
                                   if k not in ("tables", "failures")},
                         "failures": report.failures[:20], "report": json_path}
    result = drill_result(report, json_path, md_path)
    archive_drill(app, r, report, result)
    app.emit(result)
