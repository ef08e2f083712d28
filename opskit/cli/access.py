"""`opskit access`: Access requests: raised by a section head, approved by a manager, applied by the designated admin."""
from __future__ import annotations

import contextlib
import os

import click

from opskit.core.errors import OpskitError
from opskit.core.output import Result, Table

from .app import App, OpskitGroup, output_options, pass_app

LIST_COLUMNS = ["id", "state", "person", "kind", "role", "tier", "requester", "approvers",
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
    You act as the roster person named by --operator / $OPSKIT_OPERATOR, else
    as the person whose login is your OS user. See docs/access.md.

    \b
      opskit --operator hu.head access request --person wang.fang \\
          --role claims-viewer --reason "monthly settlement reports" --ticket T-12
      opskit --operator lead.one access approve AR-0001 --comment "ok"
      opskit --operator zhang.wei access apply AR-0001
      opskit access list --state approved
      opskit access request --person li.na --unfreeze --reason "back from leave"
      opskit users unfreeze li.na --request AR-0002        # applies an unfreeze
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


def _actor(app: App, store) -> str:
    """The roster person acting (docs/access.md, 'Who you are')."""
    from opskit.accounts.requests import os_login, resolve_actor
    app.audit_details["os_login"] = os_login()
    actor = resolve_actor(store.roster(), declared_operator(app))
    app.audit_details["actor"] = actor
    return actor


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
                              "role": req.role, "tier": req.tier, "state": req.state,
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
@click.option("--reason", required=True, metavar="TEXT", help="Why the access is needed (recorded).")
@click.option("--ticket", default="", metavar="T", help="Request form or ticket number.")
@output_options(tabular=False)
@pass_app
def request(app: App, person: str, role: str | None, unfreeze: bool, reason: str,
            ticket: str) -> None:
    """Raise an access request (the section head, R-ACC-3)."""
    with _audited(app):
        from opskit.core.errors import UsageError
        if bool(role) == bool(unfreeze):
            raise UsageError("give exactly one of --role ROLE or --unfreeze")
        app.audit_details.update({"person": person, "role": role,
                                  "kind": "unfreeze" if unfreeze else "role"})
        store = _store(app)
        actor = _actor(app, store)
        req = store.create(actor, person, role=role, unfreeze=unfreeze, reason=reason,
                           ticket=ticket)
    _outcome(app, req, f"{req.id}: {actor} requested {req.what} for {req.person}",
             [f"needs {req.needed} distinct approver(s)"
              + (" (special tier: mutual review, R-ACC-5)" if req.tier == "special" else "")])


# --- approve / reject / withdraw -----------------------------------------------------------

def _decide(app: App, request_id: str, verb: str, comment: str, summary) -> None:
    """One step of the workflow by the operator: ``store.<verb>(id, actor, comment)``,
    audited whether it is allowed or refused."""
    with _audited(app, request_id):
        store = _store(app)
        actor = _actor(app, store)
        req = getattr(store, verb)(request_id, actor, comment)
    _outcome(app, req, summary(req, actor))


@group.command("approve")
@click.argument("request_id", metavar="ID")
@click.option("--comment", default="", metavar="TEXT", help="Your opinion, recorded with the approval.")
@output_options(tabular=False)
@pass_app
def approve(app: App, request_id: str, comment: str) -> None:
    """Approve a request (a configured approver who did not raise it, R-ACC-3)."""
    _decide(app, request_id, "approve", comment,
            lambda req, actor: f"{req.id}: approved by {actor} "
                               f"({len(req.approvers)} of {req.needed})")


@group.command("reject")
@click.argument("request_id", metavar="ID")
@click.option("--comment", required=True, metavar="TEXT", help="Why it is rejected (recorded).")
@output_options(tabular=False)
@pass_app
def reject(app: App, request_id: str, comment: str) -> None:
    """Reject a request (a configured approver who did not raise it)."""
    _decide(app, request_id, "reject", comment,
            lambda req, actor: f"{req.id}: rejected by {actor}")


@group.command("withdraw")
@click.argument("request_id", metavar="ID")
@click.option("--comment", default="", metavar="TEXT", help="Why it is withdrawn.")
@output_options(tabular=False)
@pass_app
def withdraw(app: App, request_id: str, comment: str) -> None:
    """Withdraw your own request before it is applied."""
    _decide(app, request_id, "withdraw", comment,
            lambda req, actor: f"{req.id}: withdrawn by {actor}")


# --- apply -------------------------------------------------------------------------------------

@group.command("apply")
@click.argument("request_id", metavar="ID")
@click.option("--no-provision", is_flag=True,
              help="Only record the grant; provision later with 'opskit users apply --person P'.")
@output_options()
@pass_app
def apply(app: App, request_id: str, no_provision: bool) -> None:
    """Apply an approved role grant (a designated admin, neither requester nor approver, R-ACC-1).

    The grant is recorded first, so the declared roster includes it everywhere
    (provisioning, permission diffs); then the person's accounts are provisioned
    on every inventory host where they have one, as 'opskit users apply --person P'
    does. Exit 3 when a host failed: the grant stays recorded; rerun
    'opskit users apply --person P' to finish.
    """
    with _audited(app, request_id):
        store = _store(app)
        actor = _actor(app, store)
        req = store.apply_grant(request_id, actor)
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
def list_(app: App, state: str | None, person: str | None) -> None:
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
def show(app: App, request_id: str) -> None:
    """Show one request with its history (who, when, comment)."""
    with _audited(app, request_id):
        req = _store(app).get(request_id)
    data = req.to_dict()
    fields = [{"field": k, "value": data[k]} for k in
              ("id", "state", "kind", "person", "role", "tier", "reason", "ticket", "requester",
               "approvers", "needed", "applier", "waiting_for")]
    events = [{"time": e["time"], "event": e["event"], "actor": e["actor"],
               "comment": e.get("comment", "")} for e in req.events]
    app.emit(Result(data=data, tables=[Table(["field", "value"], fields, title=req.id),
                                       Table(["time", "event", "actor", "comment"], events,
                                             title="history")],
                    summary=f"{req.id}: {req.state}"))
