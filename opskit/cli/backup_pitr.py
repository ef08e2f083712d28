"""Point-in-time recovery commands (issue 24): ``backup wal-push``, ``backup wal-fetch``,
``backup db basebackup``, ``backup db check``.

Registered by opskit.cli.backup (imported at its end). Thin: resolve the
repository, cluster and database, call opskit.backup.db, emit Results.
wal-push and wal-fetch run under PostgreSQL (archive_command,
restore_command): every failure is one line on stderr with a non-zero exit,
so the server log says why and PostgreSQL retries.
"""
from __future__ import annotations

import contextlib
import time

import click

from opskit.backup.locks import RepoLock
from opskit.core.errors import OpskitError, UsageError

from .app import App, output_options, pass_app
from .backup import _open, _stale_s, group, repo_option
from .backup_db import _bindir, db_group


def cluster_option(func):
    return click.option("--cluster", metavar="NAME",
                        help="Cluster name in the repository (wal/NAME/). Default: "
                             "backup.pg.cluster ('main').")(func)


def _cluster(app: App, cluster: str | None) -> str:
    return cluster or app.config.get("backup.pg.cluster")


@contextlib.contextmanager
def _one_line():
    """Errors without their hint: the server log shows stderr, one line per failure."""
    try:
        yield
    except OpskitError as exc:
        exc.hint = None
        raise


@group.command("wal-push")
@click.argument("path", type=click.Path())
@cluster_option
@repo_option
@output_options(tabular=False)
@pass_app
def wal_push_cmd(app: App, path, cluster, repo, passphrase_file) -> None:
    """Archive one WAL file: PostgreSQL's archive_command.

    \b
        archive_mode = on
        archive_command = 'opskit backup wal-push %p'

    \b
    Exit 0 only once the file is durable in the repository (written whole and
    fsynced). Pushing the same file again succeeds; a different file under an
    archived name is refused (exit 1). Any other failure exits 3 with one line
    on stderr, and PostgreSQL retries. A write-only key is enough.
    """
    from opskit.backup.db import walmetrics
    from opskit.backup.db.report import wal_push_result
    from opskit.backup.db.wal import WalArchive
    name = _cluster(app, cluster)
    with _one_line():
        pushed = WalArchive(_open(app, repo, passphrase_file, write_only_ok=True), name).push(path)
    if app.config.get("backup.pg.wal_metrics"):
        try:
            walmetrics.write(walmetrics.path_for(app.state_dir, name,
                                                 app.config.get("schedule.metrics_dir")),
                             name, time.time(), pushed.name)
        except OSError as exc:   # the segment is safe; a gauge must not make PostgreSQL retry
            click.echo(f"opskit: warning: metrics not written: {exc.strerror}", err=True)
    app.audit_details = {"cluster": name, "file": pushed.name, "stored": pushed.stored}
    app.emit(wal_push_result(name, pushed))


@group.command("wal-fetch")
@click.argument("name")
@click.argument("dest", type=click.Path())
@cluster_option
@click.option("--site", "site_name", metavar="SITE",
              help="Fetch from this off-site copy (from 'sites:' in the config): a disaster "
                   "recovery that replays the WAL replicated there.")
@repo_option
@output_options(tabular=False)
@pass_app
def wal_fetch_cmd(app: App, name, dest, cluster, site_name, repo, passphrase_file) -> None:
    """Fetch archived WAL file NAME into DEST: PostgreSQL's restore_command.

    \b
        restore_command = 'opskit backup wal-fetch %f %p'
        restore_command = 'opskit backup wal-fetch --site dr %f %p'   # from off-site

    Exit 1 when the archive has no such file (PostgreSQL then ends recovery or
    tries the next timeline), 3 when it cannot be read. Needs a full key.
    """
    from opskit.backup.db.report import wal_fetch_result
    from opskit.backup.db.wal import WalArchive
    if site_name:
        if repo:
            raise UsageError("give --site or --repo, not both")
        from opskit.backup.replicate import get_site
        repo = get_site(app.config, site_name).url
    cname = _cluster(app, cluster)
    with _one_line():
        size = WalArchive(_open(app, repo, passphrase_file), cname).fetch(name, dest)
    app.audit_details = {"cluster": cname, "file": name, "found": size is not None}
    app.emit(wal_fetch_result(cname, name, dest, size))


def _basebackup_target(app: App, name: str | None):
    from opskit.backup.db.settings import database_targets
    targets = database_targets(app.config, [name] if name else None)
    if not targets:
        raise UsageError("no databases configured: add the cluster's connection under "
                         "backup.databases (docs/database-backup.md)")
    if len(targets) > 1:
        raise UsageError("several databases are configured: name the one to connect "
                         "through with --db (" + ", ".join(t.name for t in targets) + ")")
    return targets[0]


@db_group.command("basebackup")
@click.option("--db", "name", metavar="NAME",
              help="Connect through this backup.databases entry (superuser or "
                   "pg_backup_start rights on the database host, else REPLICATION). "
                   "Default: the only one configured.")
@cluster_option
@click.option("--tag", "tags", multiple=True, metavar="T", help="Tag the snapshot (repeatable).")
@repo_option
@output_options(tabular=False)
@pass_app
def basebackup_cmd(app: App, name, cluster, tags, repo, passphrase_file) -> None:
    """Stream a physical base backup of the cluster into the repository (kind pg-base).

    \b
    The cluster's files go straight into the repository as one tar (no copy on
    disk), without WAL: the server must archive with 'opskit backup wal-push'
    (this is checked). On the database host opskit reads the data directory
    itself (pg_backup_start/stop, the connection needs that privilege);
    elsewhere through pg_basebackup (REPLICATION privilege); see
    backup.pg.base_source. With the archived WAL it restores to any point in
    time after it:
        opskit backup db restore SNAPSHOT --target-datadir DIR --to-time T
    """
    from opskit.backup.db.basebackup import BaseBackup
    from opskit.backup.db.report import basebackup_result
    target = _basebackup_target(app, name)
    cname = _cluster(app, cluster)
    r = _open(app, repo, passphrase_file, write_only_ok=True)
    with RepoLock(r, stale_after_s=_stale_s(app)):
        sid, snap = BaseBackup(r, target, cname, bindir=_bindir(app),
                               checkpoint=app.config.get("backup.pg.checkpoint"),
                               source=app.config.get("backup.pg.base_source")
                               ).run(tags=list(tags))
    app.audit_details = {"snapshot": sid, "cluster": cname, "database": target.name,
                         "start_lsn": snap["pg_base"]["start_lsn"],
                         "stop_lsn": snap["pg_base"]["stop_lsn"]}
    app.emit(basebackup_result(sid, snap))


@db_group.command("check")
@cluster_option
@repo_option
@output_options()
@pass_app
def check_cmd(app: App, cluster, repo, passphrase_file) -> None:
    """Verify the WAL chain from each cluster's oldest base backup has no gap.

    Follows timeline switches through the archived history files and names the
    first missing segment (or history file). Exit 1 when one is missing.
    """
    from opskit.backup.db.report import chain_result
    from opskit.backup.db.walchain import check_repository
    r = _open(app, repo, passphrase_file)
    with RepoLock(r, stale_after_s=_stale_s(app)):
        reports = check_repository(r, cluster)
    if not reports:
        raise UsageError(f"repository {r.backend.location} has no WAL archive and no base "
                         "backup")
    app.audit_details = {"clusters": [{"cluster": x.cluster, "ok": x.ok,
                                       "missing": x.missing[:1]} for x in reports]}
    app.emit(chain_result(reports))
