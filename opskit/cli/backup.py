"""`opskit backup`: encrypted, deduplicated backups (R-BAK-1, R-BAK-2, R-BAK-4).

Thin layer: resolve the repository and passphrase, call the engines in
opskit.backup, emit the Results that opskit.backup.report makes of theirs.
"""
from __future__ import annotations

import os
import sys

import click

from opskit.backup import open_repo
from opskit.backup import report
from opskit.backup.locks import RepoLock, list_locks, remove_locks
from opskit.backup.repository import Repository
from opskit.core.errors import OperationalError, UsageError

from . import archivegate, highrisk
from .app import App, OpskitGroup, output_options, pass_app
from .progress import TerminalProgress, VerboseProgress


@click.group("backup", cls=OpskitGroup)
def group() -> None:
    """Encrypted, deduplicated backups: run, list, restore, check (R-BAK-1, R-BAK-2, R-BAK-4).

    \b
    With no config, the repository lives in the state directory and the
    first 'opskit backup run DIR' creates it. The passphrase comes from
    --passphrase-file, $OPSKIT_PASSPHRASE, $OPSKIT_PASSPHRASE_FILE,
    backup.passphrase_file in the config, or a prompt.

    \b
    Examples:
        opskit backup run /srv/claims /etc --tag daily
        opskit backup run --full /srv/claims          # weekly full (R-BAK-4)
        opskit backup snapshots
        opskit backup restore latest --target /tmp/restore --include /etc/ssh
        opskit backup check --read-data-subset 10
    """


def repo_option(func):
    func = click.option("--passphrase-file", metavar="FILE",
                        help="Read the passphrase from FILE (first line; must be mode 0600).")(func)
    return click.option("--repo", "repo", metavar="PATH",
                        help="Repository location. Default: backup.repo from the config, "
                             "else <state dir>/repo.")(func)


purpose_option = click.option(
    "--purpose", metavar="TEXT",
    help="Why an archive snapshot is read (R-AUD-6): its approval names this purpose.")


def _prompt(confirm: bool) -> bytes:
    if not sys.stdin.isatty():
        raise OperationalError("no passphrase given and no terminal to ask on: set "
                               "OPSKIT_PASSPHRASE_FILE (a 0600 file), backup.passphrase_file "
                               "in the config, or --passphrase-file")
    value = click.prompt("Repository passphrase", hide_input=True,
                         confirmation_prompt=confirm and "Repeat passphrase")
    if not value:
        raise UsageError("empty passphrase")
    return value.encode()


def _open(app: App, repo: str | None, passphrase_file: str | None, *,
          write_only_ok: bool = False) -> Repository:
    """Open the repository; unless ``write_only_ok``, a write-only key is refused
    with a clear message (it can add backups but read nothing back)."""
    location, _default = open_repo.repo_location(app.config, app.state_dir, repo)
    if not open_repo.repository_exists(location, app.config):
        from opskit.backup.repository import RepositoryError
        raise RepositoryError(f"no repository at {location}",
                              hint=f"create one with: opskit backup init --repo {location}")
    passphrase = open_repo.get_passphrase(app.config, passphrase_file, _prompt)
    r = open_repo.open_repository(location, passphrase, app.config)
    if r.keys.write_only and not write_only_ok:
        from opskit.backup.repository import RepositoryError
        command = click.get_current_context().command_path
        raise RepositoryError(
            f"'{command}' needs a full key: this passphrase opens a write-only key slot, which "
            "can add backups but cannot decrypt any file content or name",
            hint="use the restore passphrase (kept offline) or the recovery sheet")
    return r


def _stale_s(app: App) -> float:
    return float(app.config.get("backup.lock_stale_minutes")) * 60


def _insecure_option(func):
    return click.option("--insecure-passphrase", "insecure", is_flag=True,
                        help="Accept a passphrase shorter than 8 characters for a new "
                             "repository (tests only).")(func)


@group.command("init")
@_insecure_option
@repo_option
@output_options(tabular=False)
@pass_app
def init_cmd(app: App, insecure: bool, repo: str | None, passphrase_file: str | None) -> None:
    """Create a new encrypted repository.

    Losing the passphrase loses the backups: nobody, opskit included, can
    decrypt them without it. Keep a copy offline, or print a recovery sheet
    with 'opskit backup key export --paper'.
    """
    location, _ = open_repo.repo_location(app.config, app.state_dir, repo)
    if open_repo.repository_exists(location, app.config):
        raise UsageError(f"a repository already exists at {location}")
    r = _create(app, location, passphrase_file, insecure)
    app.emit(report.init_result(location, r.config.id))


MIN_PASSPHRASE = 8


def _create(app: App, location: str, passphrase_file, insecure: bool) -> Repository:
    """A new repository: a passphrase of at least 8 characters, and restic's warning."""
    passphrase = open_repo.get_passphrase(app.config, passphrase_file, _prompt, confirm=True)
    if len(passphrase) < MIN_PASSPHRASE and not insecure:
        raise UsageError(f"the passphrase has {len(passphrase)} characters; a new repository "
                         f"needs at least {MIN_PASSPHRASE}",
                         hint="choose a longer one (--insecure-passphrase accepts it for tests)")
    r = open_repo.init_repository(location, passphrase, app.config)
    click.echo(f"created repository {r.config.id[:12]} at {location}\n"
               "Keep the passphrase safe: losing it means the backups cannot be restored by "
               "anyone. 'opskit backup key export --paper' prints a recovery sheet.", err=True)
    return r


@group.command("run")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--full", is_flag=True, help="Re-read every file instead of trusting unchanged "
                                           "size/mtime/ctime/inode (the weekly full of R-BAK-4).")
@click.option("--exclude", multiple=True, metavar="PATTERN",
              help="Glob to skip, matched on full path and name (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="T", help="Tag the snapshot (repeatable).")
@click.option("--dry-run", is_flag=True,
              help="Show what would be read (new, changed, unchanged files); write nothing.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress and nothing on stdout; problems still go to stderr (for cron).")
@click.option("-v", "--verbose", is_flag=True,
              help="List every file (or whole directory) as it is read; with --dry-run, "
                   "list the files that would be read.")
@_insecure_option
@repo_option
@output_options(tabular=False)
@pass_app
def run_cmd(app: App, paths: tuple[str, ...], full: bool, exclude: tuple[str, ...],
            tags: tuple[str, ...], dry_run: bool, quiet: bool, verbose: bool, insecure: bool,
            repo: str | None, passphrase_file: str | None) -> None:
    """Back up PATHS (default: backup.paths from the config).

    Incremental by default: files whose size, mtime, ctime and inode match the
    previous snapshot of the same paths are not read again. Unreadable files
    are listed and the run exits 1; everything else is still backed up.
    """
    if quiet and verbose:
        raise UsageError("-q and -v exclude each other")
    roots = _backup_roots(app, paths)
    location, is_default = open_repo.repo_location(app.config, app.state_dir, repo)
    exists = open_repo.repository_exists(location, app.config)
    if not exists and not is_default:
        from opskit.backup.repository import RepositoryError
        raise RepositoryError(f"no repository at {location}",
                              hint=f"create one with: opskit backup init --repo {location}")
    excludes = list(app.config.get("backup.exclude")) + list(exclude)
    if dry_run:
        r = _open(app, repo, passphrase_file, write_only_ok=True) if exists else None
        _dry_run(app, r, roots, excludes, full, location, verbose)
        return
    r = _open_or_create(app, location, exists, passphrase_file, insecure)
    if r.keys.write_only and not full:
        full = True   # no parent can be read: every file is read again, dedup still applies
    progress = _backup_progress(quiet, verbose)
    with RepoLock(r, stale_after_s=_stale_s(app)):
        parent = _parent(app, r, roots)
        from opskit.backup.archiver import Archiver
        archiver = Archiver(r, excludes=excludes, full=full, progress=progress,
                            workers=app.config.get("backup.workers"))
        try:
            sid, snap = archiver.run(roots, tags=list(tags), parent=parent)
        finally:
            progress.close()
    st = archiver.stats
    app.audit_details = {"snapshot": sid, "repository": location, "paths": roots,
                         "full": full, "files": st.files, "bytes": st.bytes,
                         "errors": st.errors[:20]}
    result = report.run_result(sid, snap, st, location, roots, full)
    app.emit_quiet(result) if quiet else app.emit(result)


def _backup_roots(app: App, paths: tuple[str, ...]) -> list[str]:
    paths = list(paths) or list(app.config.get("backup.paths"))
    if not paths:
        raise UsageError("nothing to back up: give PATHS or set backup.paths in the config")
    for p in paths:
        if not os.path.lexists(p):
            raise UsageError(f"path {p} does not exist")
    return sorted({os.path.abspath(p) for p in paths})


def _open_or_create(app: App, location: str, exists: bool, passphrase_file,
                    insecure: bool) -> Repository:
    if exists:
        passphrase = open_repo.get_passphrase(app.config, passphrase_file, _prompt)
        return open_repo.open_repository(location, passphrase, app.config)
    return _create(app, location, passphrase_file, insecure)


def _parent(app: App, r: Repository, roots: list[str]) -> dict | None:
    """The newest snapshot of the same host and paths; a full backup still records
    it as parent (for diffs) but re-reads every file."""
    if r.keys.write_only:
        return None
    candidates = [s for s in r.snapshots()
                  if sorted(s.get("paths", [])) == roots and s.get("host") == app.hostname]
    return candidates[-1] if candidates else None


def _backup_progress(quiet: bool, verbose: bool):
    if verbose:
        return VerboseProgress("backup")
    return TerminalProgress("backup", enabled=False if quiet else None)


def _dry_run(app: App, r: Repository | None, roots, excludes, full, location, verbose) -> None:
    from opskit.backup.archiver import excluded_by
    from opskit.backup.backup_plan import parent_files, plan_backup

    app.audited = False          # nothing read from or written to the repository
    parent = None
    if r is not None and not r.keys.write_only:
        with RepoLock(r, stale_after_s=_stale_s(app)):
            r.load_index(repair=False)
            parent = _parent(app, r, roots)
            nodes = parent_files(r, parent)
    else:
        nodes = {}
    plan = plan_backup(roots, lambda path: excluded_by(excludes, path), nodes, full)
    where = location if r is not None else f"{location} (would be created)"
    app.emit(report.backup_plan_result(plan, where, roots, full,
                                       parent["id"] if parent else None, verbose))


@group.command("snapshots")
@click.option("--tag", "tags", multiple=True, help="Only snapshots with this tag.")
@click.option("--host", help="Only snapshots of this host.")
@repo_option
@output_options()
@pass_app
def snapshots_cmd(app: App, tags, host, repo, passphrase_file) -> None:
    """List snapshots, oldest first."""
    r = _open(app, repo, passphrase_file)
    snaps = [s for s in r.snapshots()
             if (not tags or set(tags) & set(s.get("tags", []))) and (not host or s.get("host") == host)]
    app.emit(report.snapshots_result(snaps, getattr(r, "damaged_snapshots", [])))


@group.command("ls")
@click.argument("snapshot")
@click.argument("path", required=False, default="/")
@repo_option
@output_options()
@pass_app
def ls_cmd(app: App, snapshot: str, path: str, repo, passphrase_file) -> None:
    """List files in SNAPSHOT ('latest' or an id prefix) under PATH, recursively.

    Columns as in 'ls -l': mode, owner, group, size, mtime (local, to the
    minute), path and '-> target' for symlinks. --json keeps mode as a number
    with its text, uid/gid, the mtime in ISO 8601 with its zone, and the target.
    """
    r = _open(app, repo, passphrase_file)
    r.load_index(repair=False)
    snap = r.resolve_snapshot(snapshot)
    from opskit.backup.listing import list_entries
    app.emit(report.ls_result(list_entries(r, snap, path)))


@group.command("restore")
@click.argument("snapshot")
@click.option("--target", required=True, type=click.Path(file_okay=False),
              help="Directory to restore into (files land at TARGET/<original path>).")
@click.option("--include", "includes", multiple=True, metavar="PATH",
              help="Restore only this path of the snapshot (repeatable).")
@click.option("--overwrite", is_flag=True,
              help="Replace existing files without asking (protected account, sudoers, PAM, "
                   "sshd and cron files still need --include).")
@click.option("--dry-run", is_flag=True,
              help="Show what would be created, replaced or held back; change nothing.")
@purpose_option
@repo_option
@output_options(tabular=False)
@pass_app
def restore_cmd(app: App, snapshot: str, target: str, includes, overwrite: bool, dry_run: bool,
                purpose, repo, passphrase_file) -> None:
    """Restore SNAPSHOT ('latest' or an id prefix) into TARGET.

    Content, mode, mtime, symlinks, hard links, xattrs/ACLs, empty directories
    and (as root) owners are restored; every chunk is verified against its id.
    Entries whose names could leave TARGET are refused.

    
    Into a directory that already holds files, opskit first works out what
    would be replaced (--dry-run lists it), then asks on a terminal, or needs
    --overwrite without one. Account, sudoers, PAM, sshd and cron files that
    exist are never replaced unless named with --include (e.g.
    --include /etc/passwd); they are listed and the exit code is 1.

    An archive snapshot (docs/archives.md) is read only with --purpose and an
    approval of that purpose for you (R-AUD-6); the read is registered.
    """
    from opskit.backup.restore_plan import RestorePlan, plan_restore
    from opskit.backup.restorer import Restorer

    r = _open(app, repo, passphrase_file)
    with RepoLock(r, stale_after_s=_stale_s(app)):
        r.load_index(repair=False)
        snap = r.resolve_snapshot(snapshot)
        fresh = not os.path.exists(target) or not os.listdir(target)
        plan = RestorePlan() if fresh else plan_restore(r, snap, target, list(includes))
        if dry_run:
            access = archivegate.read(app, r, snap, purpose, dry_run=True)
            app.emit(archivegate.annotate(
                report.restore_plan_result(snap, os.path.abspath(target), plan), access))
            return
        _confirm_replace(plan, target, overwrite)
        # R-AUD-6: an archive is read only with an approval, and the read is registered
        access = archivegate.read(app, r, snap, purpose, dry_run=False,
                                  target=os.path.abspath(target))
        progress = TerminalProgress("restore")
        restorer = Restorer(r, target, includes=list(includes), progress=progress,
                            workers=app.config.get("backup.workers"), excludes=plan.excluded())
        try:
            stats = restorer.run(snap)
        finally:
            progress.close()
    target = os.path.abspath(target)
    app.audit_details.update({"snapshot": snap["id"], "target": target,
                              "replaced": len(plan.replace), "held": plan.held[:20],
                              "files": stats.files, "errors": stats.errors[:20]})
    app.emit(archivegate.annotate(report.restore_result(snap, target, stats, plan.held), access))


def _confirm_replace(plan, target: str, overwrite: bool) -> None:
    """Replacing existing files needs a 'yes' on a terminal, or --overwrite."""
    if not plan.replace or overwrite:
        return
    some = ", ".join(plan.replace[:3]) + (" ..." if len(plan.replace) > 3 else "")
    what = f"restore would replace {len(plan.replace)} existing file(s) under {target} ({some})"
    if not sys.stdin.isatty():
        raise UsageError(what, hint="--dry-run lists them; --overwrite replaces them")
    if not click.confirm(f"{what}. Replace them?", default=False):
        raise UsageError("restore cancelled: nothing was changed")


@group.command("check")
@click.option("--read-data", is_flag=True, help="Read and verify every pack (slow, thorough).")
@click.option("--read-data-subset", type=click.FloatRange(0, 100, min_open=True), metavar="PCT",
              help="Read and verify a random PCT percent of the packs.")
@click.option("--site", "site_name", metavar="SITE",
              help="Verify the off-site copy at SITE instead (same as 'check-site SITE').")
@repo_option
@output_options()
@pass_app
def check_cmd(app: App, read_data: bool, read_data_subset: float | None, site_name, repo,
              passphrase_file):
    """Verify the repository: structure always, data with --read-data(-subset).

    Exit 1 when anything is damaged or missing; each problem names the object
    and the snapshots that depend on it.
    """
    if read_data and read_data_subset:
        raise UsageError("give --read-data or --read-data-subset, not both")
    if site_name:
        click.get_current_context().invoke(check_site_cmd, site_name=site_name,
                                           read_data=read_data,
                                           read_data_subset=read_data_subset, repo=repo,
                                           passphrase_file=passphrase_file)
        return
    r = _open(app, repo, passphrase_file)
    fraction = 1.0 if read_data else (read_data_subset or 0) / 100
    with RepoLock(r, stale_after_s=_stale_s(app)):
        from opskit.backup.checker import Checker
        checked = Checker(r).run(read_data_fraction=fraction)
        _wal_chain(r, checked)
    app.emit(report.check_result(checked, fraction))


def _wal_chain(r: Repository, checked) -> None:
    """With base backups in the repository, a gap in their WAL is a finding of
    plain 'check' too: the snapshot cannot be recovered past it."""
    from opskit.backup.db.walchain import chain_findings, check_repository
    if any(s.get("kind") == "pg-base" for s in r.snapshots()):
        checked.wal_chains = check_repository(r)
        checked.errors += chain_findings(checked.wal_chains)


@group.command("diff")
@click.argument("snap_a")
@click.argument("snap_b")
@repo_option
@output_options()
@pass_app
def diff_cmd(app: App, snap_a: str, snap_b: str, repo, passphrase_file) -> None:
    """Show what changed between two snapshots (+ added, - removed, M content,
    U metadata, T type)."""
    r = _open(app, repo, passphrase_file)
    r.load_index(repair=False)
    snaps = r.snapshots()
    a, b = r.resolve_snapshot(snap_a, snaps), r.resolve_snapshot(snap_b, snaps)
    from opskit.backup.differ import Differ
    app.emit(report.diff_result(a, b, Differ(r).run(a, b)))


@group.command("unlock")
@click.option("--all", "all_locks", is_flag=True, help="Remove every lock, not only stale ones.")
@repo_option
@output_options()
@pass_app
def unlock_cmd(app: App, all_locks: bool, repo, passphrase_file) -> None:
    """Remove stale locks (dead process on this host, or not refreshed in time)."""
    r = _open(app, repo, passphrase_file, write_only_ok=True)
    removed = remove_locks(r, all_locks=all_locks, stale_after_s=_stale_s(app))
    remaining = list_locks(r, _stale_s(app))
    app.emit(report.unlock_result(removed, remaining))


# --- retention and prune (R-BAK-2, R-BAK-4) -------------------------------------------
def _policy_from(app: App, flags: dict, tags: tuple[str, ...]):
    from opskit.backup.retention import Policy, parse_duration
    cfg = app.config
    given = {k: v for k, v in flags.items() if v}
    source = given if given else {k: cfg.get(f"backup.retention.{k}") for k in flags}
    within = source.get("keep_within")
    if within:
        try:
            parse_duration(within)
        except UsageError as exc:     # name where the bad value came from (#28 item 9)
            if given:
                raise UsageError(f"--keep-within: {exc.message}", hint=exc.hint) from None
            raise cfg.error("backup.retention.keep_within", exc.message, exc.hint) from None
    return Policy(keep_last=int(source.get("keep_last") or 0),
                  keep_hourly=int(source.get("keep_hourly") or 0),
                  keep_daily=int(source.get("keep_daily") or 0),
                  keep_weekly=int(source.get("keep_weekly") or 0),
                  keep_monthly=int(source.get("keep_monthly") or 0),
                  keep_yearly=int(source.get("keep_yearly") or 0),
                  keep_within=parse_duration(within) if within else None,
                  tags=list(tags)), ("flags" if given else "config backup.retention")


def _timezone(app: App):
    name = app.config.get("backup.retention.timezone")
    if not name:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise app.config.error("backup.retention.timezone", f"unknown time zone {name!r}") from None


@group.command("forget")
@click.option("--keep-last", type=click.IntRange(0), help="Keep the N newest snapshots.")
@click.option("--keep-hourly", type=click.IntRange(0), help="Newest of each of the last N hours.")
@click.option("--keep-daily", type=click.IntRange(0), help="Newest of each of the last N days.")
@click.option("--keep-weekly", type=click.IntRange(0), help="Newest of each of the last N weeks.")
@click.option("--keep-monthly", type=click.IntRange(0), help="Newest of each of the last N months.")
@click.option("--keep-yearly", type=click.IntRange(0), help="Newest of each of the last N years.")
@click.option("--keep-within", metavar="DURATION", help="Keep everything younger (14d, 6mo, 1y; m is minutes, mo months).")
@click.option("--tag", "tags", multiple=True, help="Apply only to snapshots with this tag.")
@click.option("--dry-run", is_flag=True, help="Show what would be forgotten; change nothing.")
@click.option("--prune", "then_prune", is_flag=True, help="Run prune afterwards.")
@repo_option
@output_options()
@pass_app
def forget_cmd(app: App, keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly,
               keep_yearly, keep_within, tags, dry_run, then_prune, repo, passphrase_file):
    """Forget snapshots a retention policy does not keep.

    \b
    With no --keep-* flag the policy comes from backup.retention in the config,
    so cron needs no flags. A floor no flag can lower always holds: snapshots
    younger than backup.retention.floor_days (default 30) and the newest
    drill-verified snapshot stay. Groups are per host and path set.
    """
    from opskit.backup.retention import Floor, decide, group_key, newest_drill_verified
    flags = {"keep_last": keep_last, "keep_hourly": keep_hourly, "keep_daily": keep_daily,
             "keep_weekly": keep_weekly, "keep_monthly": keep_monthly,
             "keep_yearly": keep_yearly, "keep_within": keep_within}
    policy, source = _policy_from(app, flags, tags)
    floor = Floor(float(app.config.get("backup.retention.floor_days")),
                  newest_drill_verified(app.state_dir))
    tz = _timezone(app)
    r = _open(app, repo, passphrase_file)
    with RepoLock(r, exclusive=not dry_run, stale_after_s=_stale_s(app)):
        groups: dict = {}
        for snap in r.snapshots():
            groups.setdefault(group_key(snap), []).append(snap)
        rows, forgotten, dropping = [], [], []
        for _key, snaps in sorted(groups.items(), key=lambda kv: str(kv[0])):
            for d in decide(snaps, policy, floor, tz=tz):
                rows.append(report.decision_row(d))
                if not d.keep:
                    forgotten.append(d.snapshot["id"])
                    dropping.append(d.snapshot)
        locked = []
        all_snaps = [s for snaps in groups.values() for s in snaps]
        # R-SEC-2: dropping snapshots is a high-risk operation (opskit.cli.highrisk)
        review = highrisk.gate(app, "backup forget", {"repository": r.config.id,
                                                      "snapshots": sorted(forgotten)},
                               dry_run=dry_run, needed=bool(forgotten))
        # R-AUD-6: dropping an archive needs its own approval and leaves a record
        destruction = archivegate.destroy(app, r, dropping, dry_run=dry_run)
        if not dry_run:
            from opskit.backup.backends import ObjectLocked
            for sid in list(forgotten):
                try:
                    r.backend.delete(f"snapshots/{sid}")
                except ObjectLocked as exc:   # S3 Object Lock: kept until it expires
                    forgotten.remove(sid)
                    locked.append({"snapshot": sid, "retain_until": exc.retain_until})
            archivegate.destroyed(app, r, destruction, forgotten)
        # WAL older than the oldest kept base backup goes with it (#24)
        from opskit.backup.db.walchain import forget_wal
        wal_removed, wal_locked = forget_wal(
            r, [s for s in all_snaps if s["id"] not in forgotten], dry_run=dry_run)
    app.audit_details.update({"forgotten": forgotten, "dry_run": dry_run,
                              "policy_source": source, "kept_under_retention": locked,
                              "wal_removed": len(wal_removed), "wal_locked": wal_locked})
    result = report.forget_result(rows, forgotten, locked, dry_run, source)
    if wal_removed or wal_locked:
        result.messages.append(f"WAL files {'to remove' if dry_run else 'removed'} (older than "
                               f"the oldest kept base backup): {len(wal_removed)}"
                               + (f", {len(wal_locked)} under retention" if wal_locked else ""))
        result.data["wal_removed"] = wal_removed
    result = highrisk.annotate(result, review)
    app.emit(archivegate.annotate(result, destruction, key="archive_destruction"))
    if then_prune and not dry_run:
        click.get_current_context().invoke(prune_cmd, dry_run=False, repo=repo,
                                           passphrase_file=passphrase_file)


@group.command("prune")
@click.option("--dry-run", is_flag=True, help="Show what would go and the bytes freed.")
@repo_option
@output_options()
@pass_app
def prune_cmd(app: App, dry_run: bool, repo, passphrase_file) -> None:
    """Remove data no snapshot needs; repack packs that are mostly garbage.

    Crash-safe: interrupted at any point, the repository still passes
    'check --read-data' and a rerun finishes the job.
    """
    from opskit.backup import prune
    r = _open(app, repo, passphrase_file)
    with RepoLock(r, exclusive=True, stale_after_s=_stale_s(app)):
        r.load_index(repair=False)
        p, used, packs = prune.plan(r)
        done = None if dry_run else prune.apply(r, p, used, packs)
    app.audit_details = {"plan": p.to_json(), "done": done}
    app.emit(report.prune_result(p, done, dry_run))


# --- keys -----------------------------------------------------------------------------
@group.group("key", cls=OpskitGroup)
def key_group() -> None:
    """Key slots: several passphrases can open one repository.

    \b
    Changing a passphrase rewraps the master key only; no data is
    re-encrypted. 'key export --paper' prints a recovery sheet to keep offline.
    """


def _new_passphrase(new_passphrase_file: str | None) -> bytes:
    if new_passphrase_file:
        return open_repo.read_passphrase_file(new_passphrase_file)
    env = os.environ.get("OPSKIT_NEW_PASSPHRASE")
    if env:
        return env.encode()
    if not sys.stdin.isatty():
        raise UsageError("no new passphrase: use --new-passphrase-file or OPSKIT_NEW_PASSPHRASE")
    value = click.prompt("New passphrase", hide_input=True, confirmation_prompt="Repeat new passphrase")
    if not value:
        raise UsageError("empty passphrase")
    return value.encode()


new_passphrase_option = click.option(
    "--new-passphrase-file", metavar="FILE",
    help="Read the new passphrase from FILE (0600); else $OPSKIT_NEW_PASSPHRASE or a prompt.")


@key_group.command("list")
@repo_option
@output_options()
@pass_app
def key_list_cmd(app: App, repo, passphrase_file) -> None:
    """List key slots (the one you unlocked with is marked current)."""
    from opskit.backup.keyslots import list_slots
    r = _open(app, repo, passphrase_file)
    app.emit(report.key_list_result(list_slots(r)))


@key_group.command("add")
@click.option("--write-only", is_flag=True,
              help="A slot for backup hosts: can add snapshots (with dedup) but cannot decrypt "
                   "any file content or name, old or new (docs/write-only-keys.md).")
@new_passphrase_option
@repo_option
@output_options(tabular=False)
@pass_app
def key_add_cmd(app: App, write_only: bool, new_passphrase_file, repo, passphrase_file) -> None:
    """Add a key slot with a new passphrase."""
    from opskit.backup.keyslots import add_slot
    r = _open(app, repo, passphrase_file)
    sid = add_slot(r, _new_passphrase(new_passphrase_file), write_only=write_only)
    kind = "write-only key slot" if write_only else "key slot"
    app.emit(report.key_step_result({"added": sid, "write_only": write_only},
                                    f"added {kind} {sid[:12]}"))


@key_group.command("remove")
@click.argument("key_id")
@click.option("--dry-run", is_flag=True, help="Show the slot and the approval needed; remove "
                                              "nothing.")
@repo_option
@output_options(tabular=False)
@pass_app
def key_remove_cmd(app: App, key_id: str, dry_run: bool, repo, passphrase_file) -> None:
    """Remove key slot KEY_ID (an id prefix); the last usable one is refused.

    A high-risk operation (R-SEC-2): it needs a second person's approval of this
    slot of this repository ('opskit approve-op'; --dry-run shows the line).
    """
    from opskit.backup.keyslots import remove_slot, removable_slot
    r = _open(app, repo, passphrase_file)
    slot = removable_slot(r, key_id)
    review = highrisk.gate(app, "backup key remove",
                           {"repository": r.config.id, "slot": slot.id, "kind": slot.kind},
                           dry_run=dry_run, needed=True)
    if dry_run:
        app.emit(highrisk.annotate(report.key_step_result(
            {"remove": slot.id, "dry_run": True}, f"would remove key slot {slot.id[:12]}"),
            review))
        return
    gone = remove_slot(r, slot.id)
    app.emit(highrisk.annotate(report.key_step_result(
        {"removed": gone.id}, f"removed key slot {gone.id[:12]}"), review))


@key_group.command("passwd")
@new_passphrase_option
@repo_option
@output_options(tabular=False)
@pass_app
def key_passwd_cmd(app: App, new_passphrase_file, repo, passphrase_file) -> None:
    """Change the passphrase of the slot you unlock with (rewraps the key only)."""
    from opskit.backup.keyslots import change_passphrase
    r = _open(app, repo, passphrase_file)
    old, new = change_passphrase(r, _new_passphrase(new_passphrase_file))
    app.emit(report.key_step_result(
        {"old": old, "new": new}, f"passphrase changed: slot {old[:12]} replaced by {new[:12]}"))


@key_group.command("export")
@click.option("--paper", is_flag=True, required=True, help="Print a typeable recovery sheet.")
@repo_option
@pass_app
def key_export_cmd(app: App, paper: bool, repo, passphrase_file) -> None:
    """Print a recovery sheet holding the master keys (keep it offline).

    Anyone with the sheet and the repository can read every backup: print it,
    put it in the safe, do not store it on the backed-up machines.
    """
    from opskit.backup.keyslots import paper_sheet
    r = _open(app, repo, passphrase_file)
    click.echo(paper_sheet(r), nl=False)
    app.summary = f"exported recovery sheet of repository {r.config.id[:12]}"


@key_group.command("import")
@click.option("--sheet", "sheet_file", type=click.File("r"), default="-",
              help="Recovery sheet file (default: standard input).")
@new_passphrase_option
@click.option("--repo", "repo", metavar="PATH", help="Repository location.")
@output_options(tabular=False)
@pass_app
def key_import_cmd(app: App, sheet_file, new_passphrase_file, repo) -> None:
    """Regain access from a recovery sheet: adds a slot with a new passphrase."""
    from opskit.backup.backends import open_backend
    from opskit.backup.keyslots import import_sheet
    location, _ = open_repo.repo_location(app.config, app.state_dir, repo)
    text = sheet_file.read()
    r, sid = import_sheet(open_backend(location), text, _new_passphrase(new_passphrase_file))
    app.emit(report.key_step_result(
        {"added": sid, "repository": r.config.id},
        f"recovery sheet accepted: added key slot {sid[:12]} to repository {r.config.id[:12]}"))


# --- off-site replication (R-BAK-3; docs/replication.md) ------------------------------
class _ReplicateProgress:
    """Adapts the replicator's callbacks to the terminal progress line."""

    def __init__(self, site: str):
        self.bar = TerminalProgress(f"replicate to {site}")

    def total(self, objects: int, nbytes: int) -> None:
        self.bar.total(objects, nbytes)

    def sent(self, name: str, nbytes: int) -> None:
        with self.bar._lock:
            self.bar.files += 1
        self.bar.bytes_read(nbytes)

    def close(self) -> None:
        self.bar.close()


def _source_backend(app: App, repo: str | None):
    from opskit.backup.backends import open_backend
    location, _ = open_repo.repo_location(app.config, app.state_dir, repo)
    if not open_repo.repository_exists(location, app.config):
        from opskit.backup.repository import RepositoryError
        raise RepositoryError(f"no repository at {location}",
                              hint=f"create one with: opskit backup init --repo {location}")
    return location, open_backend(location)


@group.command("replicate")
@click.option("--to", "to_sites", multiple=True, metavar="SITE",
              help="Site from 'sites:' in the config (repeatable). Default: every site.")
@click.option("--read-back", is_flag=True,
              help="Download every uploaded object again and re-hash it (slower; the default "
                   "checks the size on the site and the hash of what was sent).")
@click.option("--workers", type=click.IntRange(1, 64), help="Parallel uploads (default: the "
                                                           "site's 'workers', 8).")
@click.option("--repo", "repo", metavar="PATH", help="Local repository to copy. Default: "
                                                      "backup.repo, else <state dir>/repo.")
@output_options()
@pass_app
def replicate_cmd(app: App, to_sites: tuple[str, ...], read_back: bool, workers, repo) -> None:
    """Copy the repository's new objects to off-site copies (S3, SFTP).

    \b
    Only what a site lacks is sent; each object is verified after upload;
    packs and index go before the snapshots that need them, so an interrupted
    run leaves a consistent copy and the rerun finishes it. Needs no
    passphrase (objects are copied encrypted). Safe while a backup runs.
    """
    from opskit.backup.replicate import configured_sites, get_site, replicate
    from opskit.core.errors import OpskitError
    sites = [get_site(app.config, s) for s in to_sites] if to_sites else \
        list(configured_sites(app.config).values())
    if not sites:
        raise UsageError("no sites configured: add one under 'sites:' in the config "
                         "(docs/replication.md) or name one with --to")
    _location, source = _source_backend(app, repo)
    rows, results, failures = [], [], []
    for site in sites:
        bar = _ReplicateProgress(site.name)
        try:
            res = replicate(source, site, app.state_dir, verify="read" if read_back else "size",
                            progress=bar, workers=workers)
        except OpskitError as exc:
            _replication_stopped(app, site.name, exc)
            if len(sites) == 1:
                raise
            failures.append(str(exc))
            rows.append(report.failed_row(site.name, str(exc)))
            continue
        finally:
            bar.close()
        results.append(res.to_json())
        rows.append(report.replicated_row(site.name, res))
    app.audit_details = {"results": results, "failures": failures}
    show_table = len(rows) > 1 or app.output_format != "table"
    app.emit(report.replicate_result(rows, results, failures, show_table))


def _replication_stopped(app: App, site: str, exc) -> None:
    """A replication that stopped (exit 3) opens an incident with the site's state
    (last attempt and error) attached; the id goes to stderr and the audit entry."""
    from opskit.backup.replicate import state_file
    from opskit.core.output import Result
    from .incident import automatic_incident
    if getattr(exc, "exit_code", 3) != 3:
        return
    note = Result(data={})
    automatic_incident(app, note, "replication-stopped", f"replication to site {site} stopped",
                       state_file(app.state_dir, site))
    for line in note.messages:
        click.echo(line, err=True)


@group.command("sites")
@click.option("--passphrase-file", metavar="FILE",
              help="Passphrase to read snapshot times (lag in hours); without one only "
                   "snapshot counts are shown.")
@click.option("--repo", "repo", metavar="PATH", help="Local repository (default as 'backup run').")
@output_options()
@pass_app
def sites_cmd(app: App, passphrase_file, repo) -> None:
    """Off-site copies: newest snapshot, lag behind local, size, last replicated/verified.

    From the state recorded by 'replicate' and 'check-site' (no network).
    A site whose newest copy is older than its rpo_hours is flagged (exit 1).
    """
    import datetime as _dt
    from opskit.backup.replicate import configured_sites, load_state
    sites = configured_sites(app.config)
    location, source = _source_backend(app, repo)
    times: dict[str, str] = {}
    local_ids = [n.split("/")[-1] for n, _ in source.list("snapshots/")]
    passphrase = open_repo.find_passphrase(app.config, passphrase_file)
    if passphrase is not None:
        r = open_repo.open_repository(location, passphrase, app.config)
        if not r.keys.write_only:
            times = {s["id"]: s.get("time", "") for s in r.snapshots()}
    now = _dt.datetime.now(_dt.timezone.utc).isoformat()
    rows, breached = [], []
    for name, site in sorted(sites.items()):
        row, late = report.site_row(name, site, load_state(app.state_dir, name), local_ids,
                                    times, now)
        rows.append(row)
        if late:
            breached.append(name)
    app.emit(report.sites_result(rows, breached))


@group.command("check-site")
@click.argument("site_name", metavar="SITE")
@click.option("--read-data", is_flag=True, help="Read and re-hash every pack on the site.")
@click.option("--read-data-subset", type=click.FloatRange(0, 100, min_open=True), metavar="PCT",
              help="Read and re-hash this percentage of the site's packs.")
@click.option("--repo", "repo", metavar="PATH", help="Local repository (default as 'backup run').")
@click.option("--passphrase-file", metavar="FILE",
              help="Passphrase file (mode 0600): with it, the site's WAL chain is checked too.")
@output_options()
@pass_app
def check_site_cmd(app: App, site_name: str, read_data: bool, read_data_subset, repo,
                   passphrase_file=None) -> None:
    """Verify an off-site copy (the 'check --site' of docs/replication.md).

    \b
    Every key, config, index and snapshot object on the site is downloaded
    and its BLAKE3 compared with its name; packs too with --read-data(-subset),
    else their sizes are compared with the local ones. Objects replicated
    earlier and now missing are named. Exit 1 on findings; the next
    'replicate' re-sends what is damaged or missing. Needs no passphrase,
    except for the WAL chain: when the site holds a WAL archive and a
    passphrase is at hand, the site's chain from its oldest base backup is
    walked like 'backup db check' does (first missing segment named).
    """
    from opskit.backup.replicate import check_site, get_site
    if read_data and read_data_subset:
        raise UsageError("give --read-data or --read-data-subset, not both")
    site = get_site(app.config, site_name)
    location, source = _source_backend(app, repo)
    fraction = 1.0 if read_data else (read_data_subset or 0) / 100
    # with a passphrase at hand, the site's index files are decrypted to prove
    # every pack they name is there too (#28 item 5); any key slot will do
    passphrase = open_repo.find_passphrase(app.config, passphrase_file)
    keys = open_repo.open_repository(location, passphrase, app.config).keys if passphrase else None
    checked = check_site(source, site, app.state_dir, read_data_fraction=fraction, keys=keys)
    note = _site_wal_chain(app, site, checked, passphrase_file)
    app.audit_details = {"site": site.name, "errors": checked.errors}
    result = report.check_site_result(site.name, checked)
    if note:
        result.messages.append(note)
    app.emit(result)


def _site_wal_chain(app: App, site, checked, passphrase_file) -> str | None:
    """Walk the site's WAL chain into ``checked`` (a finding per gap); a note when
    it could not be walked for want of a passphrase."""
    if not checked.wal_files:
        return None
    passphrase = open_repo.find_passphrase(app.config, passphrase_file)
    if passphrase is None:
        return ("note: WAL chain on the site not checked: no passphrase (--passphrase-file, "
                "OPSKIT_PASSPHRASE_FILE or backup.passphrase_file)")
    from opskit.backup.db.walchain import chain_findings, check_repository
    site_repo = open_repo.open_repository(site.url, passphrase, app.config)
    checked.wal_chains = check_repository(site_repo)
    checked.errors += chain_findings(checked.wal_chains)
    return None


# restore drills and repairs live in their own modules; importing them registers
# `backup drill` and `backup repair`
from . import backup_drill  # noqa: E402,F401
from . import backup_repair  # noqa: E402,F401
# database backups too: importing it registers `backup db`
from . import backup_db  # noqa: E402,F401
# point-in-time recovery: wal-push, wal-fetch, db basebackup, db check
from . import backup_pitr  # noqa: E402,F401
