"""`opskit backup`: encrypted, deduplicated backups (R-BAK-1, R-BAK-2, R-BAK-4).

Thin layer: resolve the repository and passphrase, call the engines in
opskit.backup, render their results.
"""
from __future__ import annotations

import os
import sys

import click

from opskit.backup import service
from opskit.backup.archiver import Archiver
from opskit.backup.checker import Checker
from opskit.backup.differ import Differ
from opskit.backup.locks import RepoLock, list_locks, remove_locks
from opskit.backup.repository import Repository
from opskit.backup.restorer import Restorer
from opskit.backup.tree import TYPE_DIR, decode_name
from opskit.core.errors import EXIT_FINDINGS, UsageError
from opskit.core.output import Result, Table

from .app import App, OpskitGroup, output_options, pass_app
from .progress import TerminalProgress, human_bytes


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


def _prompt(confirm: bool) -> bytes:
    if not sys.stdin.isatty():
        raise click.UsageError("no passphrase given and no terminal to ask on: set "
                               "OPSKIT_PASSPHRASE or use --passphrase-file")
    value = click.prompt("Repository passphrase", hide_input=True,
                         confirmation_prompt=confirm and "Repeat passphrase")
    if not value:
        raise UsageError("empty passphrase")
    return value.encode()


def _open(app: App, repo: str | None, passphrase_file: str | None) -> Repository:
    location, _default = service.repo_location(app.config, app.state_dir, repo)
    if not service.repository_exists(location):
        from opskit.backup.repository import RepositoryError
        raise RepositoryError(f"no repository at {location}",
                              hint=f"create one with: opskit backup init --repo {location}")
    passphrase = service.get_passphrase(app.config, passphrase_file, _prompt)
    return service.open_repository(location, passphrase, app.config)


def _stale_s(app: App) -> float:
    return float(app.config.get("backup.lock_stale_minutes", 60)) * 60


@group.command("init")
@repo_option
@output_options(tabular=False)
@pass_app
def init_cmd(app: App, repo: str | None, passphrase_file: str | None) -> None:
    """Create a new encrypted repository."""
    location, _ = service.repo_location(app.config, app.state_dir, repo)
    if service.repository_exists(location):
        raise UsageError(f"a repository already exists at {location}")
    passphrase = service.get_passphrase(app.config, passphrase_file, _prompt, confirm=True)
    r = service.init_repository(location, passphrase, app.config)
    app.emit(Result(data={"repository": location, "id": r.config.id},
                    messages=[f"created repository {r.config.id[:12]} at {location}",
                              "Keep the passphrase safe: without it the backups cannot be "
                              "restored."],
                    summary=f"created repository {r.config.id[:12]} at {location}"))


@group.command("run")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--full", is_flag=True, help="Re-read every file instead of trusting unchanged "
                                           "size/mtime/ctime/inode (the weekly full of R-BAK-4).")
@click.option("--exclude", multiple=True, metavar="PATTERN",
              help="Glob to skip, matched on full path and name (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="T", help="Tag the snapshot (repeatable).")
@repo_option
@output_options(tabular=False)
@pass_app
def run_cmd(app: App, paths: tuple[str, ...], full: bool, exclude: tuple[str, ...],
            tags: tuple[str, ...], repo: str | None, passphrase_file: str | None) -> None:
    """Back up PATHS (default: backup.paths from the config).

    Incremental by default: files whose size, mtime, ctime and inode match the
    previous snapshot of the same paths are not read again. Unreadable files
    are listed and the run exits 1; everything else is still backed up.
    """
    paths = list(paths) or list(app.config.get("backup.paths", []))
    if not paths:
        raise UsageError("nothing to back up: give PATHS or set backup.paths in the config")
    for p in paths:
        if not os.path.lexists(p):
            raise UsageError(f"path {p} does not exist")
    location, is_default = service.repo_location(app.config, app.state_dir, repo)
    if not service.repository_exists(location):
        if not is_default:
            from opskit.backup.repository import RepositoryError
            raise RepositoryError(f"no repository at {location}",
                                  hint=f"create one with: opskit backup init --repo {location}")
        passphrase = service.get_passphrase(app.config, passphrase_file, _prompt, confirm=True)
        r = service.init_repository(location, passphrase, app.config)
        click.echo(f"created repository {r.config.id[:12]} at {location}", err=True)
    else:
        passphrase = service.get_passphrase(app.config, passphrase_file, _prompt)
        r = service.open_repository(location, passphrase, app.config)
    excludes = list(app.config.get("backup.exclude", [])) + list(exclude)
    progress = TerminalProgress("backup")
    with RepoLock(r, stale_after_s=_stale_s(app)):
        roots = sorted({os.path.abspath(p) for p in paths})
        # the newest snapshot of the same host and paths; a full backup still records
        # it as parent (for diffs) but re-reads every file
        candidates = [s for s in r.snapshots() if sorted(s.get("paths", [])) == roots
                      and s.get("host") == app.hostname]
        parent = candidates[-1] if candidates else None
        archiver = Archiver(r, excludes=excludes, full=full, progress=progress,
                            workers=app.config.get("backup.workers"))
        try:
            sid, snap = archiver.run(roots, tags=list(tags), parent=parent)
        finally:
            progress.close()
    st = archiver.stats
    summary = (f"snapshot {sid[:8]} saved: {st.files} files, {human_bytes(st.bytes)} "
               f"({st.files_new} new, {st.files_changed} changed, {st.files_unmodified} unchanged), "
               f"added {human_bytes(st.bytes_added)} -> {human_bytes(st.bytes_stored)} stored, "
               f"{st.duration_s:.1f}s" + (f", {len(st.errors)} errors" if st.errors else ""))
    messages = [summary]
    for err in st.errors[:50]:
        messages.append(f"  error: {err['path']}: {err['error']}")
    if len(st.errors) > 50:
        messages.append(f"  ... and {len(st.errors) - 50} more")
    app.audit_details = {"snapshot": sid, "repository": location, "paths": roots,
                         "full": full, "files": st.files, "bytes": st.bytes,
                         "errors": st.errors[:20]}
    app.emit(Result(data={"snapshot": sid, "repository": location, "paths": roots,
                          "parent": snap.get("parent"), "full": full, "tags": snap["tags"],
                          "stats": st.to_json(), "errors": st.errors},
                    messages=messages, summary=summary,
                    exit_code=EXIT_FINDINGS if st.errors else 0))


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
    rows = [{"id": s["id"][:8], "time": s["time"][:19].replace("T", " "), "host": s.get("host"),
             "paths": s.get("paths"), "tags": s.get("tags"), "full": s.get("full"),
             "files": s.get("stats", {}).get("files"),
             "size": human_bytes(s.get("stats", {}).get("bytes", 0))} for s in snaps]
    app.emit(Result(data=snaps, tables=[Table(["id", "time", "host", "paths", "tags", "full",
                                               "files", "size"], rows)],
                    summary=f"{len(snaps)} snapshots"))


@group.command("ls")
@click.argument("snapshot")
@click.argument("path", required=False, default="/")
@repo_option
@output_options()
@pass_app
def ls_cmd(app: App, snapshot: str, path: str, repo, passphrase_file) -> None:
    """List files in SNAPSHOT ('latest' or an id prefix) under PATH, recursively."""
    r = _open(app, repo, passphrase_file)
    r.load_index(repair=False)
    snap = r.resolve_snapshot(snapshot)
    want = "/" + path.strip("/")
    rows: list[dict] = []

    def walk(tree_id: bytes, base: str) -> None:
        for node in r.load_tree(tree_id).get("nodes", []):
            name = os.fsdecode(decode_name(node))
            full = base.rstrip("/") + "/" + name
            inside = full == want or full.startswith(want.rstrip("/") + "/") or want == "/"
            if inside:
                rows.append({"type": node.get("type"), "mode": oct(node.get("mode", 0) & 0o7777),
                             "user": node.get("user") or node.get("uid"),
                             "size": node.get("size"), "path": full})
            if node.get("type") == TYPE_DIR and (inside or want.startswith(full.rstrip("/") + "/")):
                walk(bytes.fromhex(node["subtree"]), full)

    walk(bytes.fromhex(snap["tree"]), "/")
    if want != "/" and not rows:
        raise UsageError(f"path {want} is not in snapshot {snap['id'][:8]}")
    app.emit(Result(data=rows, tables=[Table(["type", "mode", "user", "size", "path"], rows)],
                    summary=f"{len(rows)} entries"))


@group.command("restore")
@click.argument("snapshot")
@click.option("--target", required=True, type=click.Path(file_okay=False),
              help="Directory to restore into (files land at TARGET/<original path>).")
@click.option("--include", "includes", multiple=True, metavar="PATH",
              help="Restore only this path of the snapshot (repeatable).")
@repo_option
@output_options(tabular=False)
@pass_app
def restore_cmd(app: App, snapshot: str, target: str, includes, repo, passphrase_file) -> None:
    """Restore SNAPSHOT ('latest' or an id prefix) into TARGET.

    Content, mode, mtime, symlinks, empty directories and (as root) owners are
    restored; every chunk is verified against its id. Entries whose names
    could leave TARGET are refused.
    """
    r = _open(app, repo, passphrase_file)
    progress = TerminalProgress("restore")
    with RepoLock(r, stale_after_s=_stale_s(app)):
        r.load_index(repair=False)
        snap = r.resolve_snapshot(snapshot)
        restorer = Restorer(r, target, includes=list(includes), progress=progress,
                            workers=app.config.get("backup.workers"))
        try:
            stats = restorer.run(snap)
        finally:
            progress.close()
    summary = (f"restored snapshot {snap['id'][:8]} to {os.path.abspath(target)}: {stats.files} files, "
               f"{stats.dirs} dirs, {stats.symlinks} symlinks, {human_bytes(stats.bytes)}"
               + (f", {len(stats.errors)} errors" if stats.errors else ""))
    messages = [summary] + [f"  error: {e['path']}: {e['error']}" for e in stats.errors[:50]]
    app.audit_details = {"snapshot": snap["id"], "target": os.path.abspath(target),
                         "files": stats.files, "errors": stats.errors[:20]}
    app.emit(Result(data={"snapshot": snap["id"], "target": os.path.abspath(target),
                          **stats.to_json()}, messages=messages, summary=summary,
                    exit_code=EXIT_FINDINGS if stats.errors else 0))


@group.command("check")
@click.option("--read-data", is_flag=True, help="Read and verify every pack (slow, thorough).")
@click.option("--read-data-subset", type=click.FloatRange(0, 100, min_open=True), metavar="PCT",
              help="Read and verify a random PCT percent of the packs.")
@repo_option
@output_options()
@pass_app
def check_cmd(app: App, read_data: bool, read_data_subset: float | None, repo, passphrase_file):
    """Verify the repository: structure always, data with --read-data(-subset).

    Exit 1 when anything is damaged or missing; each problem names the object
    and the snapshots that depend on it.
    """
    if read_data and read_data_subset:
        raise UsageError("give --read-data or --read-data-subset, not both")
    r = _open(app, repo, passphrase_file)
    fraction = 1.0 if read_data else (read_data_subset or 0) / 100
    with RepoLock(r, stale_after_s=_stale_s(app)):
        report = Checker(r).run(read_data_fraction=fraction)
    rows = [{"severity": "error", **e} for e in report.errors] + \
           [{"severity": "warning", "snapshots": [], **w} for w in report.warnings]
    verdict = ("no errors found" if report.ok else f"{len(report.errors)} errors found")
    summary = (f"check: {report.snapshots} snapshots, {report.trees} trees, {report.packs} packs"
               + (f", {report.packs_read} packs read ({human_bytes(report.bytes_read)})"
                  if fraction else "") + f": {verdict}")
    app.emit(Result(data=report.to_json(),
                    tables=[Table(["severity", "object", "problem", "snapshots"], rows)] if rows else [],
                    messages=[summary], summary=summary,
                    exit_code=0 if report.ok else EXIT_FINDINGS))


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
    diff = Differ(r).run(a, b)
    summary = (f"{a['id'][:8]} -> {b['id'][:8]}: {diff.added} added, {diff.removed} removed, "
               f"{diff.modified} modified, {diff.metadata} metadata only")
    app.emit(Result(data={"from": a["id"], "to": b["id"], "changes": diff.changes,
                          "added": diff.added, "removed": diff.removed, "modified": diff.modified,
                          "metadata": diff.metadata},
                    tables=[Table(["change", "path", "type"], diff.changes)],
                    messages=[summary], summary=summary))


@group.command("unlock")
@click.option("--all", "all_locks", is_flag=True, help="Remove every lock, not only stale ones.")
@repo_option
@output_options()
@pass_app
def unlock_cmd(app: App, all_locks: bool, repo, passphrase_file) -> None:
    """Remove stale locks (dead process on this host, or not refreshed in time)."""
    r = _open(app, repo, passphrase_file)
    removed = remove_locks(r, all_locks=all_locks, stale_after_s=_stale_s(app))
    remaining = list_locks(r, _stale_s(app))
    rows = [{"lock": l.id[:12], "holder": l.describe(), "why": l.why_stale or "--all"} for l in removed]
    summary = f"removed {len(removed)} lock(s), {len(remaining)} remain"
    app.emit(Result(data={"removed": [l.__dict__ for l in removed],
                          "remaining": [l.__dict__ for l in remaining]},
                    tables=[Table(["lock", "holder", "why"], rows)], messages=[summary],
                    summary=summary))
