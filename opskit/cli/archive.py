"""`opskit archive`: archive control (R-AUD-6) -- list, approve, access log, destructions."""
from __future__ import annotations

import click

from .app import App, OpskitGroup, output_options, pass_app
from .approve_op import approval_options
from .backup import _open, repo_option
from .error import signing_key


@click.group("archive", cls=OpskitGroup)
def group() -> None:
    """Archives: read only with approval, destroyed only with approval, all registered (R-AUD-6).

    \b
    A snapshot is an archive when it carries a tag of archives.tags (default
    'archive'), backs up a path under archives.paths, or lives in a repository
    of archives.repositories. Reading one ('backup restore', 'backup db
    restore') needs --purpose and a reviewer's approval of that snapshot and
    purpose for the reader; forgetting one needs an 'archive destroy'
    approval. Drills are exempt but registered. See docs/archives.md.

    \b
      opskit --operator wang backup restore 3f2a --target /tmp/r --purpose "audit A-12"
      opskit --operator li archive approve 3f2a...64hex --purpose "audit A-12" \\
          --for wang --key ~/.ssh/id_ed25519
      opskit archive access-log
    """


@group.command("list")
@repo_option
@output_options()
@pass_app
def list_cmd(app: App, repo, passphrase_file) -> None:
    """The archive snapshots of the repository and why each is one."""
    from opskit.archives.marks import Marks
    from opskit.archives.report import list_result
    r = _open(app, repo, passphrase_file)
    archived = Marks.from_config(app.config).archived(r.snapshots(), r.backend.location,
                                                      r.config.id)
    app.emit(list_result(archived, r.config.id))


@group.command("approve")
@click.argument("snapshot_id")
@click.option("--purpose", required=True, metavar="TEXT",
              help="The purpose of the read, exactly as the reader gives it.")
@approval_options
@output_options(tabular=False)
@pass_app
def approve_cmd(app: App, snapshot_id, purpose, for_person, comment, key_file) -> None:
    """Approve one read of archive SNAPSHOT_ID (full id) for PURPOSE by --for.

    \b
    Your key must be registered in incidents.reviewers; you may not approve
    your own read. The approval is used up by one read and expires after
    incidents.approval_valid_hours.
    """
    from opskit.archives import access
    from opskit.archives.report import approve_result
    from opskit.incidents import clocks
    entry = access.approve_read(app.state_dir, snapshot_id=snapshot_id.lower(), purpose=purpose,
                                for_person=for_person, signer=signing_key(app, key_file),
                                reviewers=app.config.get("incidents.reviewers"),
                                comment=comment, now=clocks.utcnow(),
                                valid_hours=app.config.get("incidents.approval_valid_hours"))
    app.audit_details.update({"snapshot": snapshot_id, "purpose": purpose, "for": for_person,
                              "reviewer": entry["actor"], "rule_ids": [access.RULE]})
    app.emit(approve_result(entry))


@group.command("access-log")
@output_options()
@pass_app
def access_log_cmd(app: App) -> None:
    """Every registered read and drill of an archive, oldest first."""
    from opskit.archives import register
    from opskit.archives.report import access_log_result
    app.emit(access_log_result(register.load(app.state_dir, (register.ACCESS,
                                                             register.DRILL))))


@group.command("destructions")
@output_options()
@pass_app
def destructions_cmd(app: App) -> None:
    """Every destruction record of archive snapshots, oldest first."""
    from opskit.archives import register
    from opskit.archives.report import destructions_result
    app.emit(destructions_result(register.load(app.state_dir, (register.DESTROY,))))


@group.command("verify")
@output_options(tabular=False)
@pass_app
def verify_cmd(app: App) -> None:
    """Check the archive register's hash chain (exit 1 naming the damaged line)."""
    from opskit.archives import register
    from opskit.archives.report import verify_result
    reg = register.register(app.state_dir)
    app.emit(verify_result(reg.verify(), reg.path))
