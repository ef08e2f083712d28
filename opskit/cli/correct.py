"""`opskit correct`: Data corrections: request, approval by someone else, controlled execution and a verifiable ledger."""
from __future__ import annotations

import os

import click

from opskit.core.errors import EXIT_FINDINGS, UsageError
from opskit.core.output import Result, Table, terminal_safe

from .app import App, OpskitGroup, output_options, pass_app

LOG_COLUMNS = ["id", "state", "target", "table", "operation", "rows", "requester", "approvers",
               "executor", "waiting_for", "ticket", "failure"]


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
    timeout = float(app.config.get("corrections.lock_timeout", 10.0))
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
    if key:
        return key
    env = os.environ.get("OPSKIT_CORRECTIONS_KEY")
    if env:
        return env
    configured = app.config.get("corrections.key_file")
    if configured:
        return app.config.relative_path(configured)
    return os.path.join(app.state_dir, "corrections", "id_ed25519")


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


def _state_view(st) -> dict:
    from opskit.corrections.actions import summary_row
    row = summary_row(st)
    row["requirement"] = st.requirement.describe()
    return row


# --- keygen ---------------------------------------------------------------------------

@group.command("keygen")
@click.option("--out", metavar="FILE", help="Where to write the private key (mode 0600). Default: "
                                            "corrections.key_file or <state_dir>/corrections/id_ed25519.")
@click.option("--name", metavar="NAME", default="", help="Comment on the public key line (your name).")
@output_options(tabular=False)
@pass_app
def keygen(app: App, out: str | None, name: str) -> None:
    """Create your Ed25519 signing key and print the public key to declare in the rules file."""
    from opskit.core.signing import generate
    path = _key_path(app, out)
    signer, line = generate(path, comment=name or "opskit-correct")
    app.audit_details.update({"fingerprint": signer.fingerprint, "key_file": signer.path})
    snippet = (f"operators:\n  {name or 'YOUR_NAME'}:\n    public_key: {line}\n"
               "    roles: [clerk]            # clerk, section_head, leader, auditor, maintainer")
    app.emit(Result(
        data={"private_key": signer.path, "public_key": line, "fingerprint": signer.fingerprint},
        messages=[f"private key written to {signer.path} (mode 0600; keep it yours alone)",
                  f"fingerprint {signer.fingerprint}", "", "public key (give this to whoever keeps "
                  "the corrections rules file):", line, "", snippet],
        summary=f"signing key {signer.fingerprint} created"))


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
@click.option("--dry-run", is_flag=True, help="Vet the statement and show the before-image; store nothing.")
@key_option
@output_options(tabular=False)
@pass_app
def request(app: App, target: str, table: str | None, where: str | None, params: tuple, sets: tuple,
            operation: str | None, sql_file: str | None, reason: str, ticket: str, dry_run: bool,
            key: str | None) -> None:
    """Request a correction: vet ONE statement and record the rows it touches (before-image)."""
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
            rows = body["before"]
            cols = body["columns"] or sorted({k for r in rows for k in r})
            app.emit(Result(data=body, tables=[Table(cols, rows, title="before-image", headers={c: c for c in cols})],
                            messages=[f"dry run: {body['operation']} {body['target']}.{body['table']} "
                                      f"touches {body['row_count']} row(s); needs "
                                      f"{_req_text(body['requirement'])}; nothing stored"],
                            summary=f"dry run: {body['row_count']} row(s)"))
            return
        entry, st = svc.request(target, sql, values, reason, ticket, signer)
    finally:
        svc.ledger.close()
    _evidence(app, entry, st)
    rows = st.before
    cols = entry["body"]["columns"] or sorted({k for r in rows for k in r})
    app.emit(Result(
        data={"request": st.id, "state": st.state, "ledger_seq": entry["seq"], "hash": entry["hash"],
              "row_count": st.row_count, "requirement": st.requirement.to_dict(), "sql": st.sql},
        tables=[Table(cols, rows, title="before-image", headers={c: c for c in cols})] if rows else [],
        messages=[f"{st.id} requested by {st.requester}: {st.operation} {st.target}.{st.table}, "
                  f"{st.row_count} row(s); needs {st.requirement.describe()}"],
        summary=f"{st.id} requested: {st.operation} {st.target}.{st.table}, {st.row_count} row(s)"))


def _req_text(req: dict) -> str:
    from opskit.corrections.rulesfile import Requirement
    return Requirement.from_dict(req).describe()


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
def approve(app: App, request_id: str, comment: str, role: str | None, key: str | None) -> None:
    """Approve a pending request (never your own; levels and numbers from the rules)."""
    svc = _service(app)
    try:
        entry, st = svc.approve(request_id, comment, _signer(app, key), role)
    finally:
        svc.ledger.close()
    _evidence(app, entry, st)
    from opskit.corrections.actions import review_lines, signatures
    level = entry["body"]["level"]
    more = "fully approved: ready to apply" if st.state == "approved" else f"still needs {st.waiting_for()}"
    app.emit(Result(data={"request": st.id, "state": st.state, "level": level, "ledger_seq": entry["seq"],
                          "waiting_for": st.waiting_for(), "signed_by": signatures(st)},
                    messages=terminal_safe(review_lines(st) +
                                           [f"{st.id} approved by {entry['actor']} ({level}); {more}"]),
                    summary=f"{st.id} approved by {entry['actor']} ({level}); state {st.state}"))


@group.command("reject")
@click.argument("request_id", metavar="ID")
@click.option("--comment", required=True, metavar="TEXT", help="Why (recorded, R-DAT-3).")
@key_option
@output_options(tabular=False)
@pass_app
def reject(app: App, request_id: str, comment: str, key: str | None) -> None:
    """Reject a pending request (never your own); it can then never be applied."""
    _comment_step(app, "reject", "rejected", request_id, comment, key)


@group.command("withdraw")
@click.argument("request_id", metavar="ID")
@click.option("--comment", required=True, metavar="TEXT", help="Why (recorded, R-DAT-1).")
@key_option
@output_options(tabular=False)
@pass_app
def withdraw(app: App, request_id: str, comment: str, key: str | None) -> None:
    """Withdraw your own request before it is applied; it can then never be applied."""
    _comment_step(app, "withdraw", "withdrawn", request_id, comment, key)


def _comment_step(app: App, method: str, past: str, request_id: str, comment: str,
                  key: str | None) -> None:
    """reject/withdraw: one signed ledger entry carrying a comment."""
    svc = _service(app)
    try:
        entry, st = getattr(svc, method)(request_id, comment, _signer(app, key))
    finally:
        svc.ledger.close()
    _evidence(app, entry, st)
    app.emit(Result(data={"request": st.id, "state": st.state, "ledger_seq": entry["seq"]},
                    messages=[f"{st.id} {past} by {entry['actor']}"],
                    summary=f"{st.id} {past} by {entry['actor']}"))


# --- apply ----------------------------------------------------------------------------

@group.command("apply")
@click.argument("request_id", metavar="ID")
@click.option("--dry-run", is_flag=True, help="Check you may apply and the rows are unchanged; change nothing.")
@key_option
@output_options(tabular=False)
@pass_app
def apply(app: App, request_id: str, dry_run: bool, key: str | None) -> None:
    """Apply an approved request in one transaction (designated maintainer, not the requester).

    A request left executing by a crash (killed between claim and outcome) is
    settled: the live rows show whether the change was committed (recorded
    as applied, recovered) or not (applied now); rows matching neither are
    refused and recorded (exit 1)."""
    from opskit.corrections.actions import ApplyFailed, ApplyRetry
    svc = _service(app)
    try:
        signer = _signer(app, key)
        if dry_run:
            plan = svc.plan(request_id, signer)
            app.audit_details.update({"request": request_id, "dry_run": True,
                                      "before_unchanged": plan["before_unchanged"]})
            verdict = ("rows unchanged since the request: apply would proceed"
                       if plan["before_unchanged"] else
                       "rows CHANGED since the request: apply would refuse")
            app.emit(Result(data=plan, messages=[f"dry run: {plan['sql']}", f"params: {plan['params']}",
                                                 f"{plan['row_count']} row(s); {verdict}"],
                            summary=f"dry run {request_id}: {verdict}",
                            exit_code=0 if plan["before_unchanged"] else EXIT_FINDINGS))
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
    after = st.outcome.get("after") or []
    cols = sorted({k for r in after for k in r})
    recovery = st.outcome.get("recovery") if st.outcome.get("recovered") is True else None
    note = ""
    if recovery:
        app.audit_details["recovery"] = recovery
        note = (f" (recovered the apply by {st.outcome.get('interrupted_executor')} interrupted after "
                f"claim seq {st.outcome.get('claim_seq')}: "
                + ("its change had been committed" if recovery == "committed-before-crash" else
                   "its change had not been committed, applied now") + ")")
    app.emit(Result(data={"request": st.id, "state": st.state, "row_count": st.outcome["row_count"],
                          "after": after, "ledger_seq": entry["seq"], "hash": entry["hash"],
                          "recovery": recovery},
                    tables=[Table(cols, after, title="after-image", headers={c: c for c in cols})] if after else [],
                    messages=[f"{st.id} applied by {entry['actor']}: {st.outcome['row_count']} row(s) "
                              f"changed in {st.target}.{st.table}{note}"],
                    summary=f"{st.id} applied: {st.outcome['row_count']} row(s)" + (" (recovered)" if recovery else "")))


# --- auditors -------------------------------------------------------------------------

@group.command("log")
@click.option("--state", "state_filter", metavar="STATE",
              type=click.Choice(["pending", "approved", "rejected", "withdrawn", "executing", "applied", "failed"]),
              help="Only requests in this state.")
@output_options()
@pass_app
def log(app: App, state_filter: str | None) -> None:
    """List correction requests with their state, approvers and executor."""
    from opskit.corrections.actions import summary_row
    svc = _service(app)
    try:
        states = svc.all_states()
    finally:
        svc.ledger.close()
    rows = [summary_row(s) for s in states if not state_filter or s.state == state_filter]
    app.emit(Result(data=rows, tables=[Table(LOG_COLUMNS, terminal_safe(rows),
                                             headers={"waiting_for": "WAITING FOR"})],
                    summary=f"{len(rows)} correction request(s)"))


@group.command("show")
@click.argument("request_id", metavar="ID")
@output_options(tabular=False)
@pass_app
def show(app: App, request_id: str) -> None:
    """Everything recorded about one request: statement, before/after images, every signature."""
    from opskit.corrections.actions import entry_row, signatures
    from opskit.corrections.sqlcheck import with_values
    svc = _service(app)
    try:
        st = svc.state(request_id)
    finally:
        svc.ledger.close()
    view = _state_view(st)
    history = [entry_row(e) for e in st.history]
    data = dict(view, sql=st.sql, params=st.params, before=st.before, outcome=st.outcome,
                requirement=st.requirement.to_dict(), entries=st.history)
    info = Table(["field", "value"], [{"field": k, "value": view[k]} for k in
                                     ("id", "state", "target", "table", "operation", "rows", "requester",
                                      "requested", "reason", "ticket", "requirement", "approvers",
                                      "executor", "waiting_for", "failure")] +
                 [{"field": "signed by", "value": signatures(st)},
                  {"field": "statement", "value": with_values(st.sql, st.params)},
                  {"field": "sql", "value": st.sql}, {"field": "params", "value": str(st.params)}])
    tables = [info]
    if st.before:
        cols = sorted({k for r in st.before for k in r})
        tables.append(Table(cols, st.before, title="before-image", headers={c: c for c in cols}))
    after = (st.outcome or {}).get("after") or []
    if after:
        cols = sorted({k for r in after for k in r})
        tables.append(Table(cols, after, title="after-image", headers={c: c for c in cols}))
    tables.append(Table(["seq", "time", "kind", "actor", "detail", "key"], history, title="ledger entries"))
    # everything shown came from someone's typing or the database: no terminal escapes
    tables = [Table(t.columns, terminal_safe(t.rows), t.title, t.headers) for t in tables]
    app.emit(Result(data=data, tables=tables, summary=f"{st.id}: {st.state}"))


@group.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "html"]), default="json",
              show_default=True, help="Export format; every format can be verified offline.")
@click.option("--out", metavar="FILE", help="Write to FILE (mode 0600) instead of stdout.")
@pass_app
def export(app: App, fmt: str, out: str | None) -> None:
    """Export the whole ledger for auditors (verifiable offline with 'verify --ledger FILE')."""
    from opskit.core.audit import utc_now
    from opskit.corrections.actions import export as do_export
    svc = _service(app)
    try:
        text, count = do_export(svc.ledger, fmt, utc_now())
    finally:
        svc.ledger.close()
    app.audit_details.update({"format": fmt, "entries": count, "out": out})
    if out:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        app.emit(Result(messages=[f"exported {count} entries to {out} ({fmt})"],
                        summary=f"exported {count} entries ({fmt})"))
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
def verify(app: App, ledger_file: str | None, checkpoint_files: tuple, no_audit_check: bool,
           strict: bool) -> None:
    """Check the chain, every signature and every workflow step; exit 1 names the first bad entry."""
    from opskit.core.audit import load_checkpoints
    from opskit.corrections.ledger import ExportLedger, SqliteLedger
    from opskit.corrections.rulesfile import find_rules_file, load_registry
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
    anchors = [f"{cp.get('source') or 'a checkpoint'}: seq {cp.get('seq')}" for cp in checkpoints]
    data = dict(report.to_dict(), anchors=anchors, audit_log_head=(
        {"seq": audit_mark["seq"], "hash": audit_mark["hash"]} if audit_mark else None))
    app.audit_details.update({"verify": data, "rule_ids": ["R-AUD-1", "R-DAT-1"]})
    messages = [report.describe()]
    if warning:
        messages.append("warning: " + warning)
    elif report.ok and audit_mark is not None:
        messages.append(f"cross-checked with the audit log: it records seq {audit_mark['seq']} "
                        f"{audit_mark['hash'][:12]}, which the ledger holds")
    if not report.signers_checked:
        messages.append("warning: no operators declared in the rules file, so signatures were "
                        "checked only against the keys embedded in the entries")
    exit_code = 0 if report.ok else EXIT_FINDINGS
    if anchors:
        messages.append("anchored by " + "; ".join(anchors))
    else:
        # R-AUD-1: "intact" without an anchor cannot rule out a cut-off tail; say so
        messages.append("warning: no anchor (no audit log record of this ledger, an export, or "
                        "--no-audit-check): entries cut off the end of the ledger cannot be "
                        "detected; give --checkpoint FILE" + (" (--strict: exit 1)" if strict else ""))
        if strict:
            exit_code = EXIT_FINDINGS
    app.emit(Result(data=data, messages=messages, summary=report.describe(),
                    exit_code=exit_code))
