"""`opskit perms`: Permission diffs: declared roles vs actual grants on hosts and PostgreSQL, with auditor reports."""
from __future__ import annotations

import os

import click

from opskit.core.atomicfile import write_atomic
from opskit.perms.report import FORMATS as REPORT_FORMATS

from .app import App, OpskitGroup, output_options, pass_app


@click.group("perms", cls=OpskitGroup)
def group() -> None:
    """Permission diffs: declared roles vs actual grants on hosts and PostgreSQL, with auditor reports (R-ACC-4, R-AUD-2).

    \b
    Declared: the roster and roles (accounts.roster, accounts.roles).
    Actual: a stored snapshot of the hosts (accounts, groups, sudoers,
    authorized_keys, last logins, crontabs) and of the databases under
    perms.databases (roles, memberships, privileges). See docs/perms.md.
    Exit codes: 0 ok | 1 findings or differences | 2 usage/config | 3 not collected.
    """


def _split(values) -> list[str] | None:
    names = [n.strip() for v in values or () for n in v.split(",") if n.strip()]
    return names or None


def _snapshots(app: App):
    from opskit.perms.snapshot import SnapshotStore
    return SnapshotStore(app.state_dir, keep=int(app.config.get("perms.keep_snapshots")),
                         keep_days=float(app.config.get("perms.keep_days")))


def _options(app: App):
    from opskit.perms.analysis import Options
    return Options.from_config(app.config)


@group.command("snapshot")
@click.option("--hosts", "host_names", metavar="A,B", multiple=True,
              help="Only these hosts (comma-separated; repeatable). Default: every host.")
@click.option("--group", "group_name", metavar="GROUP", help="Only the members of GROUP.")
@click.option("--db", "db_names", metavar="NAME", multiple=True,
              help="Only this database of perms.databases (repeatable). Default: every one.")
@output_options(tabular=False)
@pass_app
def snapshot_cmd(app: App, host_names, group_name, db_names) -> None:
    """Collect actual access now and store it as a hashed snapshot; print its id.

    Every selected host and database gets a row; one that cannot be read is
    recorded as such (exit 3) and the snapshot is still stored.
    """
    from opskit.hosts.inventory import SSHSettings, load_inventory
    from opskit.perms.postgres import database_specs
    from opskit.perms.report import snapshot_result
    from opskit.perms.snapshot import take_snapshot

    config = app.config
    specs = load_inventory(config).select(_split(host_names), group_name)
    dbs = database_specs(config, _split(db_names))
    settings = SSHSettings.from_config(config)
    snap = take_snapshot(specs, dbs, concurrency=settings.concurrency,
                         timeout_per_host=float(config.get("perms.host_timeout")),
                         ssh_settings=settings, min_uid=int(config.get("perms.min_uid")))
    path = _snapshots(app).save(snap)
    app.audit_details.update(snapshot=snap.id, sha256=snap.sha256, stored=path,
                             hosts=[h["name"] for h in snap.hosts],
                             databases=[d["name"] for d in snap.databases],
                             not_collected=snap.failed())
    result = snapshot_result(snap, path)
    if app.output_format != "json":
        # the id first, alone on its line: playbooks capture it
        click.echo(snap.id)
    app.emit(result)


@group.command("snapshots")
@output_options()
@pass_app
def snapshots_cmd(app: App) -> None:
    """List stored snapshots, oldest first."""
    from opskit.perms.report import snapshots_result
    app.audited = False
    app.emit(snapshots_result(_snapshots(app).metas()))


@group.command("diff")
@click.option("--person", metavar="ID", help="Only this person (roster id).")
@click.option("--snapshot", "snapshot_ref", metavar="SNAP",
              help="Compare the roster with this snapshot (id or unique prefix). Default: the "
                   "newest.")
@click.option("--from", "from_ref", metavar="SNAP",
              help="Compare two snapshots: the older one ...")
@click.option("--to", "to_ref", metavar="SNAP", help="... and the newer one (default: newest).")
@output_options()
@pass_app
def diff_cmd(app: App, person, snapshot_ref, from_ref, to_ref) -> None:
    """Declared (roster + roles) vs actual; or, with --from/--to, who gained or
    lost what between two snapshots, per person, host and database.

    Exit 1 when there is any difference (or change), 0 when there is none.
    """
    from opskit.core.errors import UsageError
    from opskit.perms.report import changes_result, diff_result

    store = _snapshots(app)
    if from_ref or to_ref:
        if snapshot_ref:
            raise UsageError("--snapshot cannot be combined with --from/--to")
        if not from_ref:
            raise UsageError("--to needs --from (the older snapshot)")
        from opskit.perms.changes import changes
        old, new = store.load(from_ref), store.load(to_ref)
        by_login, login = {}, None
        roster = _roster_or_none(app, required=person is not None)
        if roster is not None:
            by_login = {p.login: p for p in roster.people.values()}
            if person:
                login = roster.person(person).login
        rows, notes = changes(old, new, by_login=by_login, person_login=login,
                              min_uid=int(app.config.get("perms.min_uid")))
        app.audit_details.update(snapshot_from=old.id, snapshot_to=new.id, changes=len(rows))
        app.emit(changes_result(old, new, rows, notes, person))
        return
    from opskit.accounts.declared import load_declared
    from opskit.perms.analysis import analyse
    roster = load_declared(app.config)
    snap = store.load(snapshot_ref)
    analysis = analyse(snap, roster, _options(app), person=person)
    app.audit_details.update(snapshot=snap.id, differences=len(analysis.diff))
    app.emit(diff_result(analysis, snap, person))


def _roster_or_none(app: App, required: bool):
    from opskit.accounts.declared import load_declared
    from opskit.core.errors import ConfigError
    try:
        return load_declared(app.config)
    except ConfigError:
        if required:
            raise
        return None


@group.command("report")
@output_options(formats=REPORT_FORMATS)
@click.option("--snapshot", "snapshot_ref", metavar="SNAP",
              help="Snapshot to report on (id or unique prefix). Default: the newest.")
@click.option("--out", "out_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the report to FILE instead of standard output.")
@pass_app
def report_cmd(app: App, snapshot_ref, out_path) -> None:
    """Findings with severity, rule id and evidence, for auditors (R-AUD-2).

    The report carries the snapshot id and the SHA-256 of its content; a copy
    (and a JSON record) is kept in <state_dir>/perms/reports. Exit 1 when
    there are findings.
    """
    from opskit.accounts.declared import load_declared
    from opskit.core.errors import OperationalError
    from opskit.perms.analysis import analyse
    from opskit.perms.report import ReportStore, build_report

    fmt = app.output_format
    roster = load_declared(app.config)
    snap = _snapshots(app).load(snapshot_ref)
    analysis = analyse(snap, roster, _options(app))
    content, rendered = build_report(analysis, snap, fmt)
    stored = ReportStore(app.state_dir).save(content, fmt, rendered)
    s = content["summary"]
    app.summary = (f"perms report ({fmt}) on snapshot {snap.id}: {s['findings']} finding(s); "
                   f"sha256 {content['sha256']}")
    app.audit_details.update(snapshot=snap.id, sha256=content["sha256"], format=fmt,
                             stored=stored, findings=s["findings"], by_rule=s["by_rule"])
    _departed_not_frozen(app, analysis, stored)
    if out_path:
        try:
            # account names, sudo rights and keys: readable by its owner only, like
            # everything else opskit writes (R-ACC-4 evidence is not for every local user)
            write_atomic(out_path, rendered, mode=0o600)
        except OSError as exc:
            raise OperationalError(f"cannot write {out_path}: {exc.strerror}") from None
        click.echo(f"{app.summary}\nwritten to {os.path.abspath(out_path)}; stored as {stored}")
    else:
        click.echo(rendered, nl=False)
    app.exit_code = max(app.exit_code, 1 if s["findings"] else 0)


def _departed_not_frozen(app: App, analysis, stored: str) -> None:
    """A departed or transferred person whose account is not frozen (R-ACC-6) is a
    security event opskit found itself: it opens an incident with the report attached
    (#25 item 1); the notice goes to stderr, the report stays on stdout."""
    people = sorted({f.person or f.account or "?" for f in analysis.findings
                     if f.check == "not-frozen"})
    if not people:
        return
    from opskit.core.output import Result
    from .incident import automatic_incident
    note = Result()
    automatic_incident(app, note, "departed-not-frozen", "not frozen (R-ACC-6): "
                       + ", ".join(people), stored)
    for line in note.messages:
        click.echo(line, err=True)
