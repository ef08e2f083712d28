"""`opskit access`: Access requests: raised by a section head, approved by a manager, applied by the designated admin."""
from __future__ import annotations

import contextlib
import os

import click

from opskit.core.errors import OpskitError
from opskit.core.output import Result, Table

from .app import App, OpskitGroup, output_options, pass_app

LIST_COLUMNS = ["id", "state", "person", "kind", "role", "post", "tier", "requester", "approvers",
                "applier", "waiting_for", "ticket"]
RULES = ["R-ACC-1", "R-ACC-2", "R-ACC-3", "R-ACC-5", "R-AUD-3"]


@click.group("access", cls=OpskitGroup)
def group() -> None:
    """Access requests: raised by a section head, approved by a manager, applied by the designated admin (R-ACC-3).

    \b
    A role beyond a person's post is never granted by editing the roster by
    hand: a requester (accounts.requesters) raises the request, approvers
    (accounts.approvers) other than the requester approve it -- two distinct
    ones for a special-tier role (R-ACC-5) -- and a designated admin who is
    neither (accounts.access_admins, R-ACC-1) applies it. A request that would
    break a separation-of-duties rule is refused, naming the rule (R-ACC-2).
    Every step is signed with your own Ed25519 key (--key FILE or
    $OPSKIT_SIGNING_KEY), whose public half is your 'signing_key' in the
    roster: you are the person whose key signs, never just a typed name.
    Every read verifies the signatures; an edited request file is refused.
    See docs/access.md.

    \b
      opskit access request --key ~/.ssh/id_ed25519 --person wang.fang \\
          --role claims-viewer --reason "monthly settlement reports" --ticket T-12
      opskit access approve AR-0001 --key ~/.ssh/id_ed25519 --comment "ok"
      opskit access apply AR-0001 --key ~/.ssh/id_ed25519
      opskit access list --state approved
      opskit access request --key K --person li.na --unfreeze --reason "back from leave"
      opskit users unfreeze li.na --request AR-0002 --key K   # applies an unfreeze
      opskit access request --key K --person li.na --transfer-to claims-desk --reason ...
      opskit users transfer li.na --to-post claims-desk --request AR-0003 --key K
    """


# --- shared plumbing ------------------------------------------------------------------------

def declared_operator(app: App) -> str | None:
    """The operator name given by --operator, $OPSKIT_OPERATOR or the config's ``operator``."""
    return (app.operator_override or os.environ.get("OPSKIT_OPERATOR")
            or app.config.get("operator") or None)


def _store(app: App):
    from opskit.accounts.requests import open_store
    store = open_store(app.config)
    app.audit_details["store"] = store.dir
    app.audit_details["rule_ids"] = RULES
    return store


def signing_key_option(func):
    """``--key FILE``: the Ed25519 private key the caller signs access steps with."""
    return click.option("--key", "key_file", metavar="FILE", envvar="OPSKIT_SIGNING_KEY",
                        help="Your Ed25519 private key (an ed25519 SSH key works; default "
                             "$OPSKIT_SIGNING_KEY); its public key is your 'signing_key' in "
                             "the roster.")(func)


def load_access_signer(app: App, key_file: str | None):
    """The caller's signer from --key / $OPSKIT_SIGNING_KEY; UsageError (exit 2) without one."""
    from opskit.core.errors import UsageError
    from opskit.core.signing import load_signer
    if not key_file:
        raise UsageError("access decisions are signed: give --key FILE (your Ed25519 key, "
                         "registered as signing_key in the roster) or set $OPSKIT_SIGNING_KEY",
                         hint="a name given with --operator is never enough (R-ACC-3)")
    signer = load_signer(key_file)
    app.audit_details["key"] = signer.fingerprint
    return signer


def signed_actor(app: App, roster, key_file: str | None):
    """(signer, roster person id) of the caller: the person whose signing_key the key is
    (docs/access.md, 'Who you are'); a declared operator must name the same person."""
    from opskit.accounts.requests import actor_of, os_login
    app.audit_details["os_login"] = os_login()
    signer = load_access_signer(app, key_file)
    actor = actor_of(roster, signer, declared_operator(app))
    app.audit_details["actor"] = actor
    return signer, actor


def _actor(app: App, store, key_file: str | None):
    return signed_actor(app, store.roster(), key_file)


@contextlib.contextmanager
def _audited(app: App, request_id: str | None = None):
    """Put the refusal (message and rule id) into this invocation's audit entry; main()
    writes the entry with the error and exit code (R-AUD-3)."""
    if request_id:
        app.audit_details["request"] = request_id.strip().upper()
    try:
        yield
    except OpskitError as exc:
        app.audit_details["refused"] = exc.message
        rule = getattr(exc, "rule", None)
        if rule:
            app.audit_details["rule"] = rule
        raise


def _evidence(app: App, req) -> None:
    app.audit_details.update({"request": req.id, "kind": req.kind, "person": req.person,
                              "role": req.role, "post": req.post, "tier": req.tier,
                              "state": req.state,
                              "requester": req.requester, "approvers": req.approvers,
                              "event": req.events[-1]["event"]})


def _outcome(app: App, req, headline: str, extra: list[str] | None = None) -> None:
    _evidence(app, req)
    messages = [headline, f"state: {req.state}; next: {req.waiting_for()}", *(extra or [])]
    app.emit(Result(data=req.to_dict(), messages=messages, summary=headline))


# --- request ----------------------------------------------------------------------------------

@group.command("request")
@click.option("--person", required=True, metavar="ID", help="Roster person id the access is for.")
@click.option("--role", metavar="ROLE", help="Role to grant (declared in roles.yaml).")
@click.option("--unfreeze", is_flag=True, help="Ask to unfreeze the person's accounts instead "
                                                "(applied by 'opskit users unfreeze').")
@click.option("--transfer-to", "transfer_to", metavar="POST",
              help="Ask to move the person to another post instead (applied by 'opskit users "
                   "transfer').")
@click.option("--reason", required=True, metavar="TEXT", help="Why the access is needed (recorded).")
@click.option("--ticket", default="", metavar="T", help="Request form or ticket number.")
@signing_key_option
@output_options(tabular=False)
@pass_app
def request_cmd(app: App, person: str, role: str | None, unfreeze: bool, transfer_to: str | None,
            reason: str,
            ticket: str, key_file: str | None) -> None:
    """Raise an access request (the section head, R-ACC-3)."""
    with _audited(app):
        from opskit.core.errors import UsageError
        if [bool(role), unfreeze, bool(transfer_to)].count(True) != 1:
            raise UsageError("give exactly one of --role ROLE, --unfreeze or --transfer-to POST")
        app.audit_details.update({"person": person, "role": role,
                                  "post": transfer_to,
                                  "kind": ("unfreeze" if unfreeze else
                                           "transfer" if transfer_to else "role")})
        store = _store(app)
        signer, actor = _actor(app, store, key_file)
        req = store.create(signer, person, role=role, unfreeze=unfreeze,
                           transfer_to=transfer_to, reason=reason,
                           ticket=ticket)
    _outcome(app, req, f"{req.id}: {actor} requested {req.what} for {req.person}",
             [f"needs {req.approvals_needed} distinct approver(s)"
              + (" (special tier: mutual review, R-ACC-5)" if req.tier == "special" else "")])


# --- approve / reject / withdraw -----------------------------------------------------------

def _decide(app: App, request_id: str, verb: str, comment: str, key_file: str | None,
            summary) -> None:
    """One signed step of the workflow: ``store.<verb>(id, signer, comment)``, audited
    whether it is allowed or refused."""
    with _audited(app, request_id):
        store = _store(app)
        signer, actor = _actor(app, store, key_file)
        req = getattr(store, verb)(request_id, signer, comment)
    _outcome(app, req, summary(req, actor))


@group.command("approve")
@click.argument("request_id", metavar="ID")
@click.option("--comment", default="", metavar="TEXT", help="Your opinion, recorded with the approval.")
@signing_key_option
@output_options(tabular=False)
@pass_app
def approve_cmd(app: App, request_id: str, comment: str, key_file: str | None) -> None:
    """Approve a request (a configured approver who did not raise it, R-ACC-3)."""
    _decide(app, request_id, "approve", comment, key_file,
            lambda req, actor: f"{req.id}: approved by {actor} "
                               f"({len(req.approvers)} of {req.approvals_needed})")


@group.command("reject")
@click.argument("request_id", metavar="ID")
@click.option("--comment", required=True, metavar="TEXT", help="Why it is rejected (recorded).")
@signing_key_option
@output_options(tabular=False)
@pass_app
def reject_cmd(app: App, request_id: str, comment: str, key_file: str | None) -> None:
    """Reject a request (a configured approver who did not raise it)."""
    _decide(app, request_id, "reject", comment, key_file,
            lambda req, actor: f"{req.id}: rejected by {actor}")


@group.command("withdraw")
@click.argument("request_id", metavar="ID")
@click.option("--comment", default="", metavar="TEXT", help="Why it is withdrawn.")
@signing_key_option
@output_options(tabular=False)
@pass_app
def withdraw_cmd(app: App, request_id: str, comment: str, key_file: str | None) -> None:
    """Withdraw your own request before it is applied."""
    _decide(app, request_id, "withdraw", comment, key_file,
            lambda req, actor: f"{req.id}: withdrawn by {actor}")


# --- apply -------------------------------------------------------------------------------------

@group.command("apply")
@click.argument("request_id", metavar="ID")
@click.option("--no-provision", is_flag=True,
              help="Only record the grant; provision later with 'opskit users apply --person P'.")
@signing_key_option
@output_options()
@pass_app
def apply_cmd(app: App, request_id: str, no_provision: bool, key_file: str | None) -> None:
    """Apply an approved role grant (a designated admin, neither requester nor approver, R-ACC-1).

    The grant is recorded first, so the declared roster includes it everywhere
    (provisioning, permission diffs); then the person's accounts are provisioned
    on every inventory host where they have one, as 'opskit users apply --person P'
    does. Exit 3 when a host failed: the grant stays recorded; rerun
    'opskit users apply --person P' to finish.
    """
    with _audited(app, request_id):
        store = _store(app)
        signer, actor = _actor(app, store, key_file)
        req = store.apply_grant(request_id, signer)
    _evidence(app, req)
    headline = f"{req.id}: {actor} applied role {req.role} for {req.person}"
    result = Result(data=req.to_dict(), summary=headline,
                    messages=[headline, f"the declared roster now grants {req.role} to {req.person}"])
    result.data["provisioning"] = None
    if no_provision:
        result.messages.append(f"not provisioned (--no-provision): run 'opskit users apply "
                               f"--person {req.person}'")
        app.audit_details["provisioning"] = "skipped (--no-provision)"
    else:
        _provision(app, req, result)
    app.emit(result)


def _provision(app: App, req, result: Result) -> None:
    """Provision the person with the new grant on the inventory's hosts: the same plan and
    apply as 'opskit users apply --person P' (opskit.accounts.provision). A failure here
    leaves the grant recorded and says how to finish."""
    finish = f"the grant is recorded; run 'opskit users apply --person {req.person}' to finish"
    try:
        from opskit.accounts.provision import Settings, plan_fleet, select_people
        from opskit.accounts.report import plan_result
        from opskit.accounts.declared import load_declared
        from opskit.hosts.inventory import load_inventory

        config = app.config
        roster = load_declared(config)                     # includes the grant just applied
        specs = load_inventory(config).select(None, None)
        fleet = plan_fleet(specs, roster, select_people(roster, [req.person]),
                           Settings.from_config(config), apply=True)
        provisioned = plan_result(fleet, verb="apply")
    except OpskitError as exc:
        result.messages += [f"provisioning failed: {exc.message}", finish]
        result.exit_code = max(result.exit_code, exc.exit_code)
        result.data["provisioning"] = {"error": exc.message}
        result.data["next"] = f"opskit users apply --person {req.person}"
        app.audit_details["provisioning"] = {"error": exc.message}
        return
    result.tables = provisioned.tables
    result.data["provisioning"] = provisioned.data
    result.messages += provisioned.messages
    result.exit_code = max(result.exit_code, provisioned.exit_code)
    if provisioned.exit_code >= 3:
        result.messages.append(finish)
        result.data["next"] = f"opskit users apply --person {req.person}"
    app.audit_details["provisioning"] = {
        "summary": provisioned.summary,
        "hosts": [h.host for h in fleet.hosts],
        "failed_hosts": [h.host for h in fleet.hosts if not h.reachable],
        "changes": [f"{s.host}:{s.subject}:{s.action}:{s.detail}"
                    + ("" if s.ok is None else " -> ok" if s.ok else f" -> FAILED: {s.error}")
                    for s in fleet.steps()]}
    result.summary = f"{result.summary}; {provisioned.summary}"


# --- list / show -------------------------------------------------------------------------------

@group.command("list")
@click.option("--state", type=click.Choice(["requested", "approved", "rejected", "applied",
                                            "withdrawn"]), help="Only requests in this state.")
@click.option("--person", metavar="ID", help="Only requests for this person.")
@output_options()
@pass_app
def list_cmd(app: App, state: str | None, person: str | None) -> None:
    """List access requests."""
    with _audited(app):
        store = _store(app)
        reqs = store.list(state=state, person=person)
    rows = [r.row() for r in reqs]
    summary = f"{len(rows)} access request(s)" + (f" {state}" if state else "")
    app.emit(Result(data=rows, tables=[Table(LIST_COLUMNS, rows)], summary=summary,
                    messages=[] if rows else ["no access requests"]))


@group.command("show")
@click.argument("request_id", metavar="ID")
@output_options(tabular=False)
@pass_app
def show_cmd(app: App, request_id: str) -> None:
    """Show one request with its history (who, when, comment)."""
    with _audited(app, request_id):
        req = _store(app).get(request_id)
    data = req.to_dict()           # get() verified every signature, or refused (exit 2)
    data["verified"] = True
    fields = [{"field": k, "value": data[k]} for k in
              ("id", "state", "kind", "person", "role", "post", "tier", "reason", "ticket",
               "requester", "approvers", "needed", "applier", "waiting_for", "verified")]
    events = [{"time": e["time"], "event": e["event"], "actor": e["actor"],
               "signed_by": e["signature"]["fingerprint"], "comment": e.get("comment", "")}
              for e in req.events]
    app.emit(Result(data=data, tables=[Table(["field", "value"], fields, title=req.id),
                                       Table(["time", "event", "actor", "signed_by", "comment"],
                                             events, title="history (signatures verified)")],
                    summary=f"{req.id}: {req.state}; every signature verified"))


@group.command("verify")
@click.option("--strict", is_flag=True,
              help="Also exit 1 when the records cannot be re-checked (no roster).")
@output_options(tabular=False)
@pass_app
def verify_cmd(app: App, strict: bool) -> None:
    """Re-check every request file and every access decision in the audit log: exit 1 names a forged one.

    \b
    Each event must be signed by a key the roster registers for its person,
    over that request's content (an edited request breaks it); two approvals
    of a special-tier request by two distinct people and keys (R-ACC-5); an
    application only once approved, by someone else (R-ACC-1). Each decision
    the audit log records must be such a signed event. 'opskit audit verify'
    runs the same check after the log's own.
    """
    from opskit.accounts.approvals import check_records
    from opskit.accounts.report import access_check_result
    from opskit.core.audit import AuditLog
    check = check_records(app.config, AuditLog(app.audit_log_path()).entries())
    app.audit_details["access"] = {k: v for k, v in check.to_dict().items() if k != "store"}
    app.emit(access_check_result(check, strict))
