"""`opskit evidence`: the auditor evidence pack (R-AUD-2, R-AUD-4)."""
from __future__ import annotations

import os

import click

from .app import App, OpskitCommand, output_options, pass_app


@click.command("evidence", cls=OpskitCommand)
@click.option("--since", metavar="DATE|DURATION", default="92d", show_default=True,
              help="Only evidence at or after this time: a date (2026-10-01) or a duration "
                   "back from now (92d).")
@click.option("--out", "out_dir", metavar="DIR", required=True,
              type=click.Path(file_okay=False),
              help="New (or empty) directory for the pack.")
@output_options()
@pass_app
def group(app: App, since: str, out_dir: str) -> None:
    """Collect the newest evidence for every covered rule into one folder (R-AUD-2).

    \b
    Backup snapshots (R-BAK-4), off-site replication (R-BAK-3), restore drills
    (R-BAK-5), policy check runs (R-MED-*, R-NET-*), the permission report
    (R-ACC-2/4/5), correction-ledger and audit-log verification (R-DAT-1,
    R-AUD-3): copied with SHA-256 hashes into DIR, with index.html (summary,
    then rule -> evidence -> verdict), manifest.json and SHA256SUMS.
    Exit 1 names every rule whose newest evidence is missing, older than its
    interval, or shows findings. See docs/evidence.md.
    """
    from opskit import __version__
    from opskit.core.audit import parse_since
    from opskit.evidence.pack import build_pack, subprocess_runner

    since_at = parse_since(since)
    args = []
    if app.config.source:
        args += ["--config", os.path.abspath(app.config.source)]
    if app.operator_override:
        args += ["--operator", app.operator_override]
    result = build_pack(out_dir, state_dir=app.state_dir, audit_log=app.audit_log_path(),
                        since=since_at, run=subprocess_runner(args),
                        meta={"opskit": __version__, "host": app.hostname,
                              "operator": app.operator})
    app.audit_details.update(out=result.data["out"], counts=result.data["counts"],
                             manifest_sha256=result.data["manifest_sha256"],
                             not_ok={c["check"]: c["reason"] for c in result.data["checks"]
                                     if c["verdict"] != "ok"})
    app.emit(result)
