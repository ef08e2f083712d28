"""`opskit backup drill`: restore drills with measured RTO/RPO (R-BAK-5).

Registered on the backup group by opskit.cli.backup (imported at its end).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from opskit.backup import open_repo
from opskit.backup.repository import RepositoryError
from opskit.core.errors import UsageError

from .app import App, output_options, pass_app
from .backup import _prompt, group

if TYPE_CHECKING:
    from opskit.backup.drill import Targets


def _site_location(app: App, site: str, repo: str | None) -> tuple[str, Targets]:
    from opskit.backup.drill import Targets
    if site == "local":
        location, _ = open_repo.repo_location(app.config, app.state_dir, repo)
        return location, Targets(float(app.config.get("backup.drill.rto_minutes")),
                                 float(app.config.get("backup.drill.rpo_hours")))
    from opskit.backup.replicate import get_site
    s = get_site(app.config, site)
    return s.url, Targets(float(s.rto_minutes or 240.0), float(s.rpo_hours or 26.0))


@group.command("drill")
@click.option("--site", default="local", show_default=True,
              help="Where to restore from: 'local' or a site name from the config.")
@click.option("--snapshot", "snapshot_ref", default="latest", show_default=True,
              help="'latest', 'random' or a snapshot id prefix.")
@click.option("--sample", "sample_pct", type=click.FloatRange(0, 100, min_open=True),
              metavar="PCT", help="Restore and verify a random PCT percent of the files "
                                  "(default backup.drill.sample_pct).")
@click.option("--all", "all_files", is_flag=True, help="Restore and verify every file.")
@click.option("--compare-source", is_flag=True,
              help="Also compare the verified files with the live source (changes since the "
                   "snapshot are noted, not failed).")
@click.option("--target", type=click.Path(file_okay=False),
              help="Restore here instead of a fresh scratch directory (must be empty, never "
                   "the live source).")
@click.option("--target-host", metavar="HOST",
              help="Also copy the verified files onto HOST (from the inventory) over SSH and "
                   "check them there with sha256sum; the copy is removed afterwards.")
@click.option("--keep", is_flag=True, help="Leave the restored files in place for inspection.")
@click.option("--seed", type=int, help="Seed for the random sample (repeatable drills).")
@click.option("--history", "show_history", is_flag=True, help="List past drills and exit.")
@click.option("--repo", "repo", metavar="PATH", help="Local repository (with --site local).")
@click.option("--passphrase-file", metavar="FILE", help="Passphrase file (mode 0600).")
@output_options()
@pass_app
def drill_cmd(app: App, site, snapshot_ref, sample_pct, all_files, compare_source, target,
              target_host, keep, seed, show_history, repo, passphrase_file) -> None:
    """Prove a snapshot restores: restore, verify every file, measure RTO/RPO.

    \b
    Restores into a scratch directory (then removes it), re-reads each restored
    file and checks it against the snapshot's chunk hashes, and compares the
    restore time and the snapshot's age with the site's RTO/RPO targets.
    Writes a Markdown and a JSON report to <state dir>/drills/ and an audit
    entry. Exit 0 only when everything verified and both targets hold; 1
    otherwise. The newest passing drill per site is kept by retention.

    \b
        opskit backup drill                       # 10% sample of latest, local repository
        opskit backup drill --site dr --all       # disaster-recovery drill from off-site
        opskit backup drill --history
    """
    if show_history:
        from opskit.backup.drill import history
        from opskit.backup.report import drill_history_result
        app.emit(drill_history_result(history(app.state_dir)))
        return
    if sample_pct and all_files:
        raise UsageError("give --sample or --all, not both")
    location, targets = _site_location(app, site, repo)
    if not open_repo.repository_exists(location, app.config):
        raise RepositoryError(f"site {site}: no repository at {location}")
    passphrase = open_repo.get_passphrase(app.config, passphrase_file, _prompt)
    r = open_repo.open_repository(location, passphrase, app.config)
    if r.keys.write_only:
        raise RepositoryError("a drill restores data: it needs a full key, not a write-only one")
    pct = None if all_files else (sample_pct or float(app.config.get("backup.drill.sample_pct")))
    from opskit.backup.drill import run_drill
    from opskit.backup.report import drill_result, write_drill_report
    host = None
    if target_host:
        from opskit.hosts.inventory import SSHSettings, load_inventory
        host = load_inventory(app.config).host(target_host).connect(
            SSHSettings.from_config(app.config))
    try:
        report = run_drill(r, site=site, snapshot_ref=snapshot_ref, sample_pct=pct,
                           compare_source=compare_source, target=target, targets=targets,
                           operator=app.operator, seed=seed, keep=keep,
                           workers=app.config.get("backup.workers"), host=host)
    finally:
        if host is not None:
            host.close()
    json_path, md_path = write_drill_report(app.state_dir, report)
    app.audit_details = {"drill": {k: v for k, v in report.to_json().items()
                                   if k not in ("changed_since_snapshot",)},
                         "report": json_path}
    app.audit_details["drill"]["failures"] = report.failures[:20]
    result = drill_result(report, targets, json_path, md_path)
    archive_drill(app, r, report, result)
    if not report.passed:
        from .incident import automatic_incident
        automatic_incident(app, result, "drill-failed",
                           f"restore drill of site {site} failed: {report.verdict}", json_path)
    app.emit(result)


def archive_drill(app: App, r, report, result) -> None:
    """A drill of an archive is exempt from approval but registered (R-AUD-6)."""
    from .archivegate import drill
    note = drill(app, r, report.snapshot, report.verdict)
    if note:
        result.messages.append(note)
