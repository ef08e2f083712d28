"""`opskit users`: Accounts: provisioning from the roster, departure and transfer freezes."""
from __future__ import annotations

import os

import click

from . import highrisk
from .access import signed_actor, signing_key_option
from .app import App, OpskitGroup, output_options, pass_app


@click.group("users", cls=OpskitGroup)
def group() -> None:
    """Accounts: provisioning from the roster, departure and transfer freezes (R-ACC-1, R-ACC-6).

    \b
    plan       per host, what 'apply' would change
    apply      create and update accounts from the roster (idempotent)
    freeze     lock every access path of a person, verify, certify (R-ACC-6)
    transfer   move a person to another post: old rights out, new rights in
    unfreeze   lift a freeze, with an approved access request (R-ACC-3)

    \b
    See docs/accounts.md. Exit codes: 0 ok | 1 needs attention | 2 usage | 3 failed host.
    """


def _split(values) -> list[str] | None:
    names = [n.strip() for v in values or () for n in v.split(",") if n.strip()]
    return names or None


def host_options(func):
    func = click.option("--group", "group_name", metavar="GROUP",
                        help="Only the members of inventory group GROUP.")(func)
    func = click.option("--hosts", "host_names", metavar="H1,H2", multiple=True,
                        help="Only these hosts (comma-separated; repeatable).")(func)
    return func


def _setup(app: App, host_names, group_name):
    from opskit.accounts.provision import Settings
    from opskit.accounts.declared import load_declared
    from opskit.hosts.inventory import load_inventory

    config = app.config
    roster = load_declared(config)                   # bad roster: exit 2 before any host
    specs = load_inventory(config).select(_split(host_names), group_name)
    return roster, specs, Settings.from_config(config)


def _audit_plan(app: App, fleet) -> None:
    app.audit_details.update(
        hosts=[h.host for h in fleet.hosts],
        failed_hosts=[h.host for h in fleet.hosts if not h.reachable],
        changes=[f"{s.host}:{s.subject}:{s.action}:{s.detail}"
                 + ("" if s.ok is None else " -> ok" if s.ok else f" -> FAILED: {s.error}")
                 for s in fleet.steps()],
        notes=[f"{n.host}:{n.person}: {n.note}" for n in fleet.notes()])


@group.command("plan")
@click.option("--person", "persons", metavar="ID", multiple=True,
              help="Only this person (repeatable). Default: everyone in the roster.")
@host_options
@click.option("--keep-unmanaged", is_flag=True,
              help="List key files, keys and sudoers rights opskit did not grant as kept "
                   "instead of removing them.")
@output_options()
@pass_app
def plan_cmd(app: App, persons, host_names, group_name, keep_unmanaged) -> None:
    """Show, per host, what 'opskit users apply' would change (R-ACC-1, R-ACC-4).

    Accounts to create (useradd, password change forced at first login),
    group memberships, authorized_keys and sudoers drop-ins, and as drift to
    remove access opskit did not grant: other key files of the account, keys
    not in the roster, sudoers rights beyond the roles (unless --keep-unmanaged).
    Changes nothing.
    Exit 1 when an account needs attention (e.g. someone no longer entitled
    still has an unfrozen account), 3 when a host could not be read.
    """
    from opskit.accounts.provision import plan_fleet, select_people
    from opskit.accounts.report import plan_result

    roster, specs, settings = _setup(app, host_names, group_name)
    settings.keep_unmanaged = keep_unmanaged
    fleet = plan_fleet(specs, roster, select_people(roster, list(persons)), settings)
    _audit_plan(app, fleet)
    app.emit(plan_result(fleet, verb="plan"))


@group.command("apply")
@click.option("--person", "persons", metavar="ID", multiple=True,
              help="Only this person (repeatable). Default: everyone in the roster.")
@host_options
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
@click.option("--keep-unmanaged", is_flag=True,
              help="List key files, keys and sudoers rights opskit did not grant as kept "
                   "instead of removing them.")
@output_options()
@pass_app
def apply_cmd(app: App, persons, host_names, group_name, dry_run, keep_unmanaged) -> None:
    """Create and update accounts from the roster, idempotently, on every host in parallel.

    Runs what 'plan' shows (re-read at apply time). Sudoers drop-ins are
    validated with 'visudo -cf' before they are installed. Frozen accounts
    stay frozen. Access opskit did not grant is removed (moved to the root-only
    /var/lib/opskit/frozen/LOGIN/) unless --keep-unmanaged. Exit 3 when a host
    or a change failed: rerun to finish.
    """
    from opskit.accounts.provision import plan_fleet, select_people
    from opskit.accounts.report import plan_result

    roster, specs, settings = _setup(app, host_names, group_name)
    settings.keep_unmanaged = keep_unmanaged
    app.audit_details["keep_unmanaged"] = keep_unmanaged
    people = select_people(roster, list(persons))
    review = _admin_review(app, specs, roster, people, settings, dry_run)
    fleet = plan_fleet(specs, roster, people, settings, apply=not dry_run)
    fleet.dry_run = dry_run
    app.audit_details["dry_run"] = dry_run
    _audit_plan(app, fleet)
    result = plan_result(fleet, verb="apply")
    _hand_over(app, result, fleet.steps(), fleet.passwords)
    app.emit(highrisk.annotate(result, review))


def _admin_review(app: App, specs, roster, people, settings, dry_run: bool):
    """R-SEC-2: a plan granting admin-tier rights needs a second person's approval of
    exactly those grants (planned first, before anything changes)."""
    from opskit.accounts.admin_grants import admin_grants
    from opskit.accounts.provision import plan_fleet
    if not highrisk.applies(app, "users apply"):
        return None
    grants = admin_grants(plan_fleet(specs, roster, people, settings, apply=False), roster)
    return highrisk.gate(app, "users apply", {"admin_grants": grants}, dry_run=dry_run,
                         needed=bool(grants))


def _hand_over(app: App, result, steps, passwords, actions=("create",)) -> None:
    """Initial passwords of new (or unfrozen) accounts go to 0600 files, never to output or
    the audit log."""
    from opskit.accounts.provision import save_initial_passwords
    paths = save_initial_passwords(app.state_dir, steps, passwords, actions)
    if paths:
        where = os.path.dirname(paths[0])
        app.audit_details["initial_password_files"] = paths
        result.messages.append(f"initial password(s) of {len(paths)} account(s): {where}/ "
                               "(0600; hand each over in person, then delete it)")
        if isinstance(result.data, dict):
            result.data["initial_password_files"] = paths


def _epoch(value: str | None) -> int | None:
    """--since as epoch seconds (a date is midnight UTC); bad values exit 2."""
    import datetime as dt
    from opskit.core.errors import UsageError
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        day = dt.datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise UsageError(f"--since {value!r}: expected YYYY-MM-DD or epoch seconds") from None
    return int(day.timestamp())


def _operator(app: App) -> str:
    return app.operator


@group.command("freeze")
@click.argument("person_id", metavar="PERSON")
@click.option("--reason", required=True, type=click.Choice(("departure", "transfer")),
              help="Why the accounts are frozen (R-ACC-6).")
@click.option("--ticket", default="", metavar="T", help="Change or HR ticket, recorded.")
@host_options
@click.option("--since", metavar="DATE", default=None,
              help="Start of the person's tenure (YYYY-MM-DD or epoch seconds) for the tenure "
                   "report. Default: per host, from their home directory.")
@click.option("--reviewed", "reviewed", metavar="PATH", multiple=True,
              help="A tenure-report path a human has reviewed (repeatable; recorded).")
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@output_options()
@pass_app
def freeze_cmd(app: App, person_id, reason, ticket, host_names, group_name, since, reviewed,
               dry_run) -> None:
    """Freeze every account of PERSON before they leave or change post (R-ACC-6).

    On every host where PERSON has an account: lock the password, expire the
    account (1970-01-02), nologin shell, move authorized_keys aside (kept as
    evidence), remove group memberships and sudoers entries, move crontab and
    at jobs aside, end live sessions and processes; then re-read each host to
    verify no access path remains, and record a freeze certificate in the
    audit log and in <state_dir>/accounts/freezes/. The freeze also hunts:
    their keys in any account (root included), sudo rights by uid, group and
    alias, system cron, systemd timers and linger, setuid files, processes by
    any uid, PostgreSQL login roles (perms.databases), a tenure report.
    Exit 1 when something is still open (listed; the certificate says
    'incomplete'), 3 when a host or database failed. Rerun to finish.
    """
    from opskit.accounts.freeze import freeze_fleet, save_certificate
    from opskit.accounts.freeze_report import freeze_result
    from opskit.perms.postgres import database_specs

    roster, specs, settings = _setup(app, host_names, group_name)
    person = roster.person(person_id)                  # unknown: exit 2
    run = freeze_fleet(specs, person, settings, reason=reason, ticket=ticket,
                       operator=_operator(app), dry_run=dry_run, since=_epoch(since),
                       reviewed=reviewed, databases=database_specs(app.config),
                       tenure_paths=app.config.get("accounts.tenure_paths") or ())
    path = None if dry_run else save_certificate(app.state_dir, run)
    app.audit_details.update(rule="R-ACC-6", certificate_file=path,
                             certificate=run.certificate())
    app.emit(freeze_result(run))


@group.command("transfer")
@click.argument("person_id", metavar="PERSON")
@click.option("--to-post", "to_post", required=True, metavar="P",
              help="The new post (declared under posts: in roles.yaml).")
@click.option("--ticket", default="", metavar="T", help="Change or HR ticket, recorded.")
@click.option("--request", "request_id", metavar="ID",
              help="The approved transfer request (opskit access request --transfer-to P); "
                   "required unless --dry-run.")
@signing_key_option
@click.option("--dry-run", is_flag=True, help="Show the plan and the roster edit; change nothing.")
@output_options()
@pass_app
def transfer_cmd(app: App, person_id, to_post, ticket, request_id, key_file, dry_run) -> None:
    """Move PERSON to post P under an approved request: old rights out, new in (R-ACC-6, R-ACC-3).

    Only with an approved transfer request (--request) for PERSON and P, run
    by a designated admin who neither raised nor approved it, signing with
    --key (R-ACC-1). One plan over every inventory host: where the new post
    gives an account, it is created or brought to the new roles (old groups
    and sudo rules removed, processes still holding a removed group ended);
    where only the old post did, the account is frozen. Once every host
    succeeded, the person's 'post:' line in roster.yaml is edited (only that
    line; validated before it is written) and the request is marked applied.
    A failed host exits 3 and leaves the roster as it was: rerun to finish.
    """
    from opskit.accounts.requests import open_store
    from opskit.accounts.transfer import transfer
    from opskit.accounts.transfer_report import transfer_result
    from opskit.core.errors import UsageError

    roster, specs, settings = _setup(app, (), None)
    person = roster.person(person_id)                    # unknown: exit 2
    app.audit_details.update(rule="R-ACC-3", request=request_id)
    store = signer = None
    if request_id or not dry_run:
        if not request_id:
            raise UsageError(f"a transfer needs an approved access request (R-ACC-3): opskit "
                             f"access request --person {person_id} --transfer-to {to_post} "
                             "--reason ..., then --request ID here", hint="--dry-run shows "
                             "the plan without one")
        store = open_store(app.config)
        signer, actor = signed_actor(app, roster, key_file)
        store.claim_transfer(request_id, person.id, to_post, signer)  # refused: nothing touched
    run = transfer(specs, roster, person, to_post, settings, dry_run=dry_run)
    if store is not None and not dry_run and not run.failed_hosts:
        store.mark_applied(request_id, signer, {"hosts": [h.host for h in run.hosts if h.steps],
                                                "roster_edit": run.edit.describe()
                                                if run.edit else None})
    app.audit_details.update(rule="R-ACC-6", ticket=ticket, dry_run=dry_run,
                             old_post=run.old_post, new_post=run.new_post,
                             roles_before=run.roles_before, roles_after=run.roles_after,
                             roster_edit=run.edit.describe() if run.edit else None,
                             roster_written=run.roster_written, failed_hosts=run.failed_hosts,
                             changes=[f"{h.host}:{h.kind}:{s.action}:{s.detail}"
                                      + ("" if s.ok is None else " -> ok" if s.ok else
                                         f" -> FAILED: {s.error}")
                                      for h in run.hosts for s in h.steps])
    result = transfer_result(run)
    _hand_over(app, result, [s for h in run.hosts if h.kind == "grant" for s in h.steps],
               run.passwords)
    app.emit(result)


@group.command("unfreeze")
@click.argument("person_id", metavar="PERSON")
@click.option("--request", "request_id", required=True, metavar="ID",
              help="The approved unfreeze request (opskit access request --unfreeze).")
@signing_key_option
@output_options()
@pass_app
def unfreeze_cmd(app: App, person_id, request_id, key_file) -> None:
    """Lift PERSON's freeze, with an approved access request (R-ACC-3, R-ACC-1).

    The request must be an approved unfreeze for PERSON, and you must be a
    designated admin who neither raised nor approved it. On every host where
    PERSON is entitled and frozen: clear the expiry, set a fresh random
    initial password (never the old hash; written once to a 0600 file under
    <state_dir>/accounts/initial-passwords/ for out-of-band delivery),
    restore the shell, force a password change, then provision as 'users
    apply' does.
    """
    from opskit.accounts.requests import open_store
    from opskit.accounts.provision import initial_passwords
    from opskit.accounts.unfreeze import exit_code, unfreeze_fleet
    from opskit.core.output import Result, Table

    roster, specs, settings = _setup(app, (), None)
    person = roster.person(person_id)                    # unknown: exit 2
    store = open_store(app.config)
    signer, actor = signed_actor(app, roster, key_file)
    app.audit_details.update(rule="R-ACC-3", request=request_id, actor=actor)
    store.claim_unfreeze(request_id, person.id, signer)  # refusals: exit 2, nothing touched
    password = initial_passwords([person])[person.id]
    hosts = unfreeze_fleet(specs, roster, person, settings, password)
    code = exit_code(hosts)
    details = {"hosts": [h.host for h in hosts if h.steps],
               "steps": [f"{s.host}:{s.action}:{s.detail}" + (" -> ok" if s.ok else
                                                              f" -> FAILED: {s.error}")
                         for h in hosts for s in h.steps],
               "failed_hosts": [h.host for h in hosts if not h.ok]}
    app.audit_details.update(details)
    if code == 0:
        store.mark_applied(request_id, signer, details)
    rows = [{"host": h.host, "status": h.status if h.status == "ok" else h.status.upper(),
             "changes": len(h.steps), "failed": sum(1 for s in h.steps if s.ok is False),
             "note": h.note, "error": h.error} for h in hosts]
    steps = [s.as_dict() for h in hosts for s in h.steps]
    text = (f"users unfreeze {person.id} under {request_id}: "
            + (f"{len(steps)} change(s) on {len(details['hosts'])} host(s); request marked applied"
               if code == 0 else f"INCOMPLETE; failed hosts: {', '.join(details['failed_hosts'])}"
               "; rerun to finish (the request stays approved)"))
    result = Result(data={"person": person.id, "request": request_id, "actor": actor,
                          "exit_code": code, "hosts": [h.as_dict() for h in hosts]},
                    tables=[Table(["host", "status", "changes", "failed", "note", "error"], rows,
                                  title=f"Unfreeze of {person.id} (R-ACC-3)"),
                            Table(["host", "action", "detail", "result", "error"], steps,
                                  title="Steps")],
                    messages=[text], summary=text, exit_code=code)
    _hand_over(app, result, [s for h in hosts for s in h.lifted], {person.id: password},
               actions=("unfreeze",))
    app.emit(result)
