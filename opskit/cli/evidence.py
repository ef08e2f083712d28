"""`opskit evidence`: the auditor evidence pack (R-AUD-2), and `opskit evidence
verify DIR` to check one."""
from __future__ import annotations

import os

import click

from opskit.core.errors import UsageError

from .app import App, OpskitGroup, output_options, pass_app
from .audit import anchor_dirs, trusted_anchor_keys
from .correct import _key_path


def _sites(app: App) -> list[dict]:
    from opskit.backup.replicate import configured_sites
    return [{"name": s.name, "url": s.url, "endpoint_url": s.settings.get("endpoint_url")}
            for s in configured_sites(app.config).values()]


@click.group("evidence", cls=OpskitGroup, invoke_without_command=True)
@click.option("--since", metavar="DATE|DURATION", default="92d", show_default=True,
              help="Start of the audit period: a date (2026-10-01) or a duration back from "
                   "now (92d).")
@click.option("--out", "out_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="New (or empty) directory for the pack (required to build one).")
@click.option("--key", "key", metavar="FILE",
              help="Ed25519 key that signs the pack (default: the operator key of "
                   "'opskit correct': $OPSKIT_CORRECTIONS_KEY, corrections.key_file, "
                   "<state_dir>/corrections/id_ed25519).")
@click.option("--lang", type=click.Choice(["en", "zh-CN"]), default="en", show_default=True,
              help="Language of the pack's pages.")
@click.option("--include-data", is_flag=True,
              help="Copy before/after images of corrected rows (personal data) into the pack; "
                   "by default only their hashes and row keys (recorded in the audit log).")
@output_options()
@pass_app
@click.pass_context
def group(ctx: click.Context, app: App, since: str, out_dir: str | None, key: str | None,
          lang: str, include_data: bool) -> None:
    """One verdict for every rule in REQUIREMENTS.md, with its evidence (R-AUD-2).

    \b
    Each rule is met, not met, no evidence, or not applicable: backups and
    their regularity (R-BAK-4), off-site copies on another host (R-BAK-3),
    disaster-recovery drills from a site (R-BAK-5), daily policy checks
    (R-MED-*, R-NET-*), weekly permission reviews (R-ACC-*), the corrections
    ledger (R-DAT-*) and the audit log (R-AUD-*). The pack in DIR is signed
    (manifest.sig), anchored in the audit log and holds verify.py, which
    checks it without opskit. Exit 1 names every rule opskit implements that
    is not met or has no evidence. See docs/evidence.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    app.record("evidence", ctx.params)
    if not out_dir:
        raise UsageError("--out DIR is required to build a pack",
                         hint="opskit evidence --out DIR, or opskit evidence verify DIR")
    from opskit import __version__
    from opskit.backup.open_repo import repo_location
    from opskit.core.audit import AuditLog, parse_since
    from opskit.core.signing import load_signer
    from opskit.evidence.pack import build_pack, subprocess_runner
    from opskit.schedule.jobs import load_schedule

    since_at = parse_since(since)
    signer = load_signer(_key_path(app, key))
    result = build_pack(out_dir, state_dir=app.state_dir, audit_log=app.audit_log_path(),
                        since=since_at, run=subprocess_runner(app.child_options()),
                        signer=signer, sites=_sites(app),
                        repo=repo_location(app.config, app.state_dir, None)[0],
                        include_data=include_data, lang=lang,
                        not_applicable=app.config.get("evidence.not_applicable"),
                        schedule=load_schedule(app.config),
                        anchor_dirs=anchor_dirs(app, AuditLog(app.audit_log_path())),
                        anchor_keys=trusted_anchor_keys(app),
                        meta={"opskit": __version__, "host": app.hostname,
                              "operator": app.operator})
    app.audit_details.update(out=result.data["out"], counts=result.data["counts"],
                             manifest_sha256=result.data["manifest_sha256"],
                             include_data=include_data, signer=result.data["signer"],
                             not_applicable=result.data["not_applicable"],
                             not_ok=[r["rule"] for r in result.data["rules"]
                                     if r["implemented"] and r["verdict"] not in
                                     ("met", "not applicable")])
    app.emit(result)


@group.command("verify")
@click.argument("pack_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--pubkey", metavar="KEY",
              help="Require this signer: an 'ssh-ed25519 AAAA...' line, its base64, or a file.")
@output_options()
@pass_app
def verify_cmd(app: App, pack_dir: str, pubkey: str | None) -> None:
    """Check a pack as its verify.py does: every file's SHA-256, the signature,
    the audit chain up to the pack's own entry and the ledger chain. Exit 1
    names each file that fails."""
    from opskit.evidence.report import verify_result
    from opskit.evidence.verify_pack import verify
    if not os.path.isdir(pack_dir):
        raise UsageError(f"{pack_dir}: not a directory")
    problems, signer = verify(pack_dir, pubkey)
    app.audit_details.update(pack=os.path.abspath(pack_dir), ok=not problems, signer=signer)
    app.emit(verify_result(os.path.abspath(pack_dir), problems, signer))
