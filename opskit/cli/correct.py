"""`opskit correct`: Data corrections: request, approval by someone else, controlled execution and a verifiable ledger."""
from __future__ import annotations

import os

import click

from opskit.core.errors import UsageError
from opskit.core.output import render_string

from . import highrisk
from .app import App, OpskitGroup, output_options, pass_app


@click.group("correct", cls=OpskitGroup)
def group() -> None:
    """Data corrections: request, approval by someone else, controlled execution and a verifiable ledger (R-DAT-1..3).

    \b
    A change to business data is never a quiet UPDATE: it is requested with
    the affected rows' before-image, approved by other people (levels and
    numbers from the rules file), applied in one transaction by a designated
    maintainer, and every step is a signed, hash-chained ledger entry that an
    auditor verifies offline. See docs/corrections.md.

    \b
      opskit correct keygen                     # once per person; declare the printed key
      opskit correct request --target his --table claims --where "id = :id" \\
          --param id=42 --set amount=120.50 --reason "typo in amount" --ticket INC-7
      opskit correct approve CR-1 --comment "checked against the invoice"
      opskit correct apply CR-1                 # also settles an apply interrupted by a crash
      opskit correct withdraw CR-1 --comment "raised in error"   # requester, before apply
      opskit correct verify                     # exit 1 names the first tampered entry
    """


# --- shared plumbing ------------------------------------------------------------------

def _ledger_location(app: App) -> str:
    configured = app.config.get("corrections.ledger")
    if configured:
        if configured.startswith(("postgresql://", "postgres://")):
            return configured
        return app.config.relative_path(configured)
    return os.path.join(app.state_dir, "corrections.sqlite")


def _service(app: App, *, create: bool = True):
    from opskit.corrections.ledger import open_ledger
    from opskit.corrections.rulesfile import find_rules_file, load_registry
    from opskit.corrections.actions import Context, Corrections
    timeout = float(app.config.get("corrections.lock_timeout"))
    registry = load_registry(find_rules_file(app.config))
    ledger = open_ledger(_ledger_location(app), timeout, create=create)
    app.audit_details["ledger"] = _ledger_id(ledger)
    return Corrections(ledger, registry, timeout, Context(app.os_user, app.hostname))


def _ledger_id(ledger) -> str:
    from opskit.corrections.rulesfile import redact_url
    return redact_url(ledger.url)


def _audit_mark(app: App, ledger_id: str) -> tuple[dict | None, str | None]:
    """The newest ledger seq and hash that a correct command recorded in opskit's audit
    log for this ledger, as a checkpoint (catches a cut-off tail without one kept by hand);
    (None, warning) when the audit log cannot be read."""
    from opskit.core.audit import AuditLog
    path = app.audit_log_path()
    if not os.path.exists(path):
        return None, None
    best: dict | None = None
    try:
        for entry in AuditLog(path).entries():
            if not str(entry.get("command", "")).startswith("correct "):
                continue
            details = entry.get("details")
            if not isinstance(details, dict) or details.get("ledger") != ledger_id:
                continue
            seq, h = details.get("ledger_seq"), details.get("ledger_hash")
            if isinstance(seq, int) and not isinstance(seq, bool) and isinstance(h, str) and seq > 0:
                if best is None or seq > best["seq"]:
                    best = {"seq": seq, "hash": h,
                            "source": f"the audit log ({entry.get('command')} at {entry.get('time')})"}
    except (OSError, ValueError) as exc:
        return None, f"audit log {path} not read for the cross-check: {exc}"
    return best, None


def _key_path(app: App, key: str | None) -> str:
    from opskit.core.signing import signing_key_path
    return signing_key_path(app.config, app.state_dir, key)


def _signer(app: App, key: str | None):
    from opskit.core.signing import load_signer
    return load_signer(_key_path(app, key))


def key_option(func):
    return click.option("--key", "key", metavar="FILE",
                        help="Your Ed25519 private key (default: $OPSKIT_CORRECTIONS_KEY, "
                             "corrections.key_file, <state_dir>/corrections/id_ed25519). "
                             "An ed25519 SSH key works.")(func)


def _evidence(app: App, entry: dict, state=None) -> None:
    app.audit_details.update({"request": entry["request"], "ledger_seq": entry["seq"],
                              "ledger_hash": entry["hash"], "ledger_kind": entry["kind"],
                              "actor": entry["actor"], "rule_ids": ["R-DAT-1", "R-DAT-2", "R-AUD-3"]})
    if state is not None:
        app.audit_details["state"] = state.state


# --- keygen ---------------------------------------------------------------------------

@group.command("keygen")
@click.option("--key", "--out", "out", metavar="FILE",
              help="Where to write the private key (mode 0600; the public key goes to FILE.pub). "
                   "Default: corrections.key_file or <state_dir>/corrections/id_ed25519. "
                   "(--out is the old spelling.)")
@click.option("--name", metavar="NAME", default="", help="Comment on the public key line (your name).")
@output_options(tabular=False)
@pass_app
def keygen_cmd(app: App, out: str | None, name: str) -> None:
    """Create your Ed25519 signing key (FILE and FILE.pub, as ssh-keygen does) and print
    the public key to declare in the rules file and the roster."""
    from opskit.core.signing import generate
    from opskit.corrections.report import keygen_result
    path = _key_path(app, out)
    signer, line = generate(path, comment=name or "opskit-correct")
    app.audit_details.update({"fingerprint": signer.fingerprint, "key_file": signer.path})
    app.emit(keygen_result(signer, line, name))


# --- request --------------------------------------------------------------------------

@group.command("request")
@click.option("--target", required=True, metavar="NAME", help="Target database (declared in the rules file).")
@click.option("--table", metavar="TABLE", help="Table to correct (builder form).")
@click.option("--where", metavar="COND", help="WHERE clause with :named parameters, e.g. \"id = :id\".")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Value of a :parameter (repeat). 42 is a number, 120.50 an exact decimal, "
                   "'42' a string, null NULL.")
@click.option("--set", "sets", multiple=True, metavar="COL=VALUE",
              help="Column to set (repeat); values are parameters, never pasted into SQL.")
@click.option("--delete", "operation", flag_value="DELETE", help="Builder: delete the rows matching --where.")
@click.option("--insert", "operation", flag_value="INSERT", help="Builder: insert one row from --set.")
@click.option("--sql", "sql_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="File holding ONE reviewed UPDATE/DELETE/INSERT with :named parameters.")
@click.option("--reason", required=True, metavar="TEXT", help="Why the data is wrong (recorded, R-DAT-1).")
@click.option("--ticket", default="", metavar="ID", help="Change or incident ticket.")
@click.option("--dry-run", is_flag=True, help="Vet the statement, show the row diff (old -> new) and the before-image; store nothing.")
@key_option
@output_options(tabular=False)
@pass_app
def request_cmd(app: App, target: str, table: str | None, where: str | None, params: tuple, sets: tuple,
            operation: str | None, sql_file: str | None, reason: str, ticket: str, dry_run: bool,
            key: str | None) -> None:
    """Request a correction: vet ONE statement and record the rows it touches (before-image)."""
    from opskit.corrections.report import dry_run_result, request_result
    from opskit.corrections.sqlcheck import build_statement, parse_assignments
    values = dict(parse_assignments(params, "--param"))
    if sql_file:
        if table or where or sets or operation:
            raise UsageError("--sql FILE cannot be combined with --table/--where/--set/--delete/--insert")
        try:
            with open(sql_file, encoding="utf-8") as fh:
                sql = fh.read()
        except OSError as exc:
            raise UsageError(f"cannot read --sql {sql_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--sql {sql_file} is not UTF-8 text") from None
    else:
        if not table:
            raise UsageError("give --table (with --where/--set) or --sql FILE")
        sql, extra = build_statement(operation or "UPDATE", table, where,
                                     parse_assignments(sets, "--set"))
        clash = set(extra) & set(values)
        if clash:
            raise UsageError(f"--param {', '.join(sorted(clash))} clashes with a --set parameter")
        values.update(extra)
    svc = _service(app)
    try:
        signer = _signer(app, key)
        if dry_run:
            body = svc.prepare(target, sql, values, reason, ticket, signer)
            app.audit_details.update({"dry_run": True, "row_count": body["row_count"]})
            _rule_warnings(body)
            app.emit(dry_run_result(body))
            return
        entry, st = svc.request(target, sql, values, reason, ticket, signer)
    finally:
        svc.ledger.close()
    _rule_warnings(entry["body"])
    _evidence(app, entry, st)
    app.emit(request_result(entry, st))


def _rule_warnings(body: dict) -> None:
    """A rule whose table does not resolve on the target: one warning line each (stderr)."""
    for line in body.get("rule_warnings") or []:
        click.echo(f"opskit: warning: {line}", err=True)


# --- approve / reject -----------------------------------------------------------------

@group.command("approve")
@click.argument("request_id", metavar="ID")
@click.option("--comment", default="", metavar="TEXT", help="Your opinion, recorded as given (R-DAT-3).")
@click.option("--as", "role", metavar="ROLE",
              type=click.Choice(["clerk", "section_head", "leader", "auditor"]),
              help="Sign off in this role (default: the level the request needs next).")
@key_option
@output_options(tabular=False)
@pass_app
def approve_cmd(app: App, request_id: str, comment: str, role: str | None, key: str | None) -> None:
    """Approve a pending request (never your own; levels and numbers from the rules).

    Prints what the request will change: the row diff (old -> new per changed
    column, rows deleted or inserted, cascaded rows), the tables whose triggers
    act only at apply, the requirement and who has signed."""
    from opskit.corrections.report import approve_result
    svc = _service(app)
    try:
        entry, st = svc.approve(request_id, comment, _signer(app, key), role)
        preview = svc.preview(st)
    finally:
        svc.ledger.close()
    _evidence(app, entry, st)
    app.emit(approve_result(entry, st, preview))


@group.command("reject")
@click.argument("request_id", metavar="ID")
@click.option("--comment", required=True, metavar="TEXT", help="Why (recorded, R-DAT-3).")
@key_option
@output_options(tabular=False)
@pass_app
def reject_cmd(app: App, request_id: str, comment: str, key: str | None) -> None:
    """Reject a pending request (never your own); it can then never be applied."""
    _comment_step(app, "reject", "rejected", request_id, comment, key)


@group.command("withdraw")
@click.argument("request_id", metavar="ID")
@click.option("--comment", required=True, metavar="TEXT", help="Why (recorded, R-DAT-1).")
@key_option
@output_options(tabular=False)
@pass_app
def withdraw_cmd(app: App, request_id: str, comment: str, key: str | None) -> None:
    """Withdraw your own request before it is applied; it can then never be applied."""
    _comment_step(app, "withdraw", "withdrawn", request_id, comment, key)


def _comment_step(app: App, method: str, past: str, request_id: str, comment: str,
                  key: str | None) -> None:
    """reject/withdraw: one signed ledger entry carrying a comment."""
    from opskit.corrections.report import comment_step_result
    svc = _service(app)
    try:
        entry, st = getattr(svc, method)(request_id, comment, _signer(app, key))
    finally:
        svc.ledger.close()
    _evidence(app, entry, st)
    app.emit(comment_step_result(entry, st, past))


# --- apply ----------------------------------------------------------------------------

@group.command("apply")
@click.argument("request_id", metavar="ID")
@click.option("--dry-run", is_flag=True, help="Check you may apply and the rows are unchanged; change nothing.")
@key_option
@output_options(tabular=False)
@pass_app
def apply_cmd(app: App, request_id: str, dry_run: bool, key: str | None) -> None:
    """Apply an approved request in one transaction (designated maintainer, not the requester).

    A request left executing by a crash (killed between claim and outcome) is
    settled: the live rows show whether the change was committed (recorded
    as applied, recovered) or not (applied now); rows matching neither are
    refused and recorded (exit 1)."""
    from opskit.corrections.actions import ApplyFailed, ApplyRetry
    from opskit.corrections.report import apply_result, plan_result
    svc = _service(app)
    try:
        signer = _signer(app, key)
        review = _review(app, svc.state(request_id), dry_run)
        if dry_run:
            plan = svc.plan(request_id, signer)
            app.audit_details.update({"request": request_id, "dry_run": True,
                                      "before_unchanged": plan["before_unchanged"]})
            app.emit(highrisk.annotate(plan_result(plan, request_id), review))
            return
        try:
            entry, st = svc.apply(request_id, signer)
        except (ApplyFailed, ApplyRetry) as exc:
            if exc.entry is not None:
                _evidence(app, exc.entry, exc.state)
            raise
    finally:
        svc.ledger.close()
    _evidence(app, entry, st)
    if st.outcome.get("recovered") is True and st.outcome.get("recovery"):
        app.audit_details["recovery"] = st.outcome["recovery"]
    app.emit(highrisk.annotate(apply_result(entry, st), review))


def _review(app: App, st, dry_run: bool):
    """R-SEC-2: a high-risk correction (highrisk.correction_risk) also needs a second
    person's approval of exactly this request, statement and before-image."""
    risk = highrisk.correction_risk(st)
    return highrisk.gate(app, "correct apply",
                         {"request": st.id, "target": st.target, "sql": st.sql,
                          "params": st.params, "before": st.before_digest, "risk": risk},
                         dry_run=dry_run, needed=risk is not None)


# --- auditors -------------------------------------------------------------------------

@group.command("log")
@click.option("--state", "state_filter", metavar="STATE",
              type=click.Choice(["pending", "approved", "rejected", "withdrawn", "executing", "applied", "failed"]),
              help="Only requests in this state.")
@output_options()
@pass_app
def log_cmd(app: App, state_filter: str | None) -> None:
    """List correction requests with their state, approvers and executor."""
    from opskit.corrections.report import log_result
    svc = _service(app)
    try:
        states = svc.all_states()
    finally:
        svc.ledger.close()
    app.emit(log_result(states, state_filter))


@group.command("show")
@click.argument("request_id", metavar="ID")
@output_options(tabular=False)
@pass_app
def show_cmd(app: App, request_id: str) -> None:
    """Everything recorded about one request: statement, row diff (old -> new), before/after images, every signature.

    Before apply the row diff comes from the new values the requester's request
    computed read-only and signed; for a request recorded without them they are
    computed now, read-only, and marked so."""
    from opskit.corrections.report import show_result
    svc = _service(app)
    try:
        st = svc.state(request_id)
        preview = svc.preview(st)
    finally:
        svc.ledger.close()
    app.emit(show_result(st, preview))


@group.command("export")
@output_options(formats=("json", "csv", "html"), default="json")
@click.option("--out", metavar="FILE", help="Write to FILE (mode 0600) instead of stdout.")
@pass_app
def export_cmd(app: App, out: str | None) -> None:
    """Export the whole ledger for auditors (verifiable offline with 'verify --ledger FILE').

    Every format (json, csv, html) can be verified offline."""
    from opskit.core.audit import utc_now
    from opskit.corrections.report import export_result, exported_result
    svc = _service(app)
    try:
        result = export_result(svc.ledger, utc_now())
    finally:
        svc.ledger.close()
    fmt, count = app.output_format, result.data["count"]
    text = render_string(result, fmt)
    app.audit_details.update({"format": fmt, "entries": count, "out": out})
    if out:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        app.output_format = "table"
        app.emit(exported_result(count, fmt, out))
    else:
        click.echo(text, nl=False)
        app.summary = f"exported {count} entries ({fmt}) to stdout"


@group.command("verify")
@click.option("--ledger", "ledger_file", metavar="FILE",
              help="Verify this export (json, csv, html) or SQLite ledger file instead of the configured ledger.")
@click.option("--checkpoint", "checkpoint_files", multiple=True, metavar="FILE",
              help="Checkpoint(s) {\"seq\": N, \"hash\": ...} kept elsewhere: catches a cut-off tail.")
@click.option("--no-audit-check", "no_audit_check", is_flag=True,
              help="Do not cross-check the ledger head against the newest ledger seq/hash in "
                   "opskit's audit log.")
@click.option("--strict", is_flag=True,
              help="Exit 1 when no anchor (audit log record or --checkpoint) was available: "
                   "without one, entries cut off the end of the ledger go unnoticed.")
@output_options(tabular=False)
@pass_app
def verify_cmd(app: App, ledger_file: str | None, checkpoint_files: tuple, no_audit_check: bool,
           strict: bool) -> None:
    """Check the chain, every signature and every workflow step; exit 1 names the first bad entry."""
    from opskit.core.audit import load_checkpoints
    from opskit.corrections.ledger import ExportLedger, SqliteLedger
    from opskit.corrections.rulesfile import find_rules_file, load_registry
    from opskit.corrections.report import verify_result
    from opskit.corrections.verify import verify as do_verify
    registry = load_registry(find_rules_file(app.config))
    checkpoints = []
    for path in checkpoint_files:
        checkpoints.extend(dict(cp, source=cp.get("source") or f"checkpoint file {path}")
                           for cp in load_checkpoints(path))
    if ledger_file:
        try:
            with open(ledger_file, "rb") as fh:
                magic = fh.read(16)
        except OSError as exc:
            raise UsageError(f"cannot read --ledger {ledger_file}: {exc.strerror}") from None
        ledger = (SqliteLedger(ledger_file, create=False) if magic.startswith(b"SQLite format 3")
                  else ExportLedger(ledger_file))
    else:
        ledger = _service(app).ledger
    warning = None
    audit_mark = None
    if not ledger_file and not no_audit_check:
        audit_mark, warning = _audit_mark(app, _ledger_id(ledger))
        if audit_mark is not None:
            checkpoints.append(audit_mark)
    try:
        report = do_verify(ledger, registry, checkpoints)
    finally:
        ledger.close()
    result = verify_result(report, audit_mark, warning, checkpoints, strict)
    app.audit_details.update({"verify": result.data, "rule_ids": ["R-AUD-1", "R-DAT-1"]})
    if not report.ok and not ledger_file:
        # a tampered live ledger is a security event opskit detected itself (#25 item 1)
        from .incident import automatic_incident
        automatic_incident(app, result, "ledger-tampered",
                           f"corrections ledger {_ledger_id(ledger)}: {report.describe()}", None)
    app.emit(result)
