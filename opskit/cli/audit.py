"""`opskit audit`: show, verify and checkpoint the tamper-evident log of every opskit command.

The log itself lives in ``opskit.core.audit``; see docs/audit-log.md.
"""
from __future__ import annotations

import json
import os

import click

from opskit.core.anchors import anchor_name, collect, sign_checkpoint, verify_with_anchors, \
    write_anchor
from opskit.core.atomicfile import write_atomic
from opskit.core.audit import AuditLog, load_checkpoints, parse_since
from opskit.core.errors import EXIT_FINDINGS, OperationalError, UsageError
from opskit.core.signing import load_signer, parse_public_key, signing_key_path
from opskit.core.output import Result, Table

from .app import App, OpskitGroup, output_options, pass_app

SHOW_COLUMNS = ["seq", "time", "operator", "host", "command", "result", "exit_code", "summary"]
CSV_COLUMNS = ["seq", "time", "operator", "host", "command", "arguments", "result", "exit_code",
               "summary", "hash"]
HEADERS = {"exit_code": "EXIT"}
SUMMARY_WIDTH = 60


@click.group("audit", cls=OpskitGroup)
def group() -> None:
    """Audit trail: show, verify and checkpoint the tamper-evident log of every opskit command (R-DAT-1, R-AUD-1, R-AUD-3).

    \b
    Every opskit command appends one entry (who, when, where, what, result)
    to a hash-chained log. 'verify' proves the chain unbroken; 'checkpoint'
    records the head so that cutting off the end of the log is caught too --
    sign them (--sign) and export them off this machine, then 'verify
    --anchors DIR'. See docs/audit-log.md.
    """


def _short_time(value: str) -> str:
    # 2026-11-01T08:00:00.123Z -> 2026-11-01T08:00:00Z
    if isinstance(value, str) and len(value) > 20 and value.endswith("Z") and "." in value:
        return value.split(".", 1)[0] + "Z"
    return value


def _short(text: str, width: int = SUMMARY_WIDTH) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 3] + "..."


@group.command("show")
@click.option("--since", metavar="DATE|DURATION",
              help="Only entries at or after this time: a date/time (2026-11-01, "
                   "2026-11-01T08:00; local time unless a zone is given) or a duration back "
                   "from now (90m, 24h, 7d, 2w).")
@click.option("--command", "command_prefix", metavar="PREFIX",
              help="Only commands starting with PREFIX, e.g. 'backup' or 'users freeze'.")
@click.option("--operator", "operator_name", metavar="NAME",
              help="Only entries by NAME (OS user, sudo user or --operator name).")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Only the newest N matching entries.")
@output_options()
@pass_app
def show_cmd(app: App, since: str | None, command_prefix: str | None, operator_name: str | None,
         limit: int | None) -> None:
    """Show audit entries, oldest first (full entries with --json)."""
    since_at = parse_since(since) if since else None
    log = AuditLog(app.audit_log_path())
    entries, skipped = log.select(since=since_at, command=command_prefix,
                                  operator=operator_name, limit=limit)
    if app.output_format == "csv":
        rows = [dict(e, arguments=json.dumps(e.get("arguments"), ensure_ascii=False,
                                             sort_keys=True)) for e in entries]
        table = Table(CSV_COLUMNS, rows, headers=HEADERS)
    else:
        rows = [dict(e, time=_short_time(e.get("time")), summary=_short(e.get("summary")))
                for e in entries]
        table = Table(SHOW_COLUMNS, rows, headers=HEADERS)
    messages = []
    if skipped:
        messages.append(f"note: {skipped} malformed line(s) skipped; run 'opskit audit verify'")
    noun = "entry" if len(entries) == 1 else "entries"
    app.emit(Result(data=entries, tables=[table], messages=messages,
                    summary=f"showed {len(entries)} audit {noun}"))


@group.command("verify")
@click.option("--checkpoint", "checkpoint_file", metavar="FILE",
              type=click.Path(dir_okay=False),
              help="Also check against checkpoint(s) exported earlier with "
                   "'opskit audit checkpoint --export'.")
@click.option("--anchors", "anchor_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Also check against every signed checkpoint in DIR ('audit checkpoint "
                   "--sign --export DIR'); a bad signature or an unknown key is a finding.")
@click.option("--trust-key", "trust_keys", multiple=True, metavar="KEY",
              help="With --anchors: also trust this signer, an 'ssh-ed25519 AAAA...' line or "
                   "a .pub file (repeat). The operator key and audit.anchor_keys are trusted.")
@click.option("--strict", is_flag=True,
              help="Also exit 1 when access decisions cannot be re-checked (no roster).")
@output_options(tabular=False)
@pass_app
def verify_cmd(app: App, checkpoint_file: str | None, anchor_dir: str | None,
               trust_keys: tuple[str, ...], strict: bool) -> None:
    """Prove the audit log unbroken: exit 0 when intact, 1 naming the first bad entry.

    \b
    Checks every entry's hash, the seq numbering and the chain of 'prev'
    hashes, then the checkpoints recorded beside the log and, with
    --checkpoint, an exported one, and with --anchors every signed one kept
    off the machine (which also catch a cut-off tail or a rewritten history);
    with audit.anchor_dir set, those in it always (missing or empty: exit 1).
    Then every access decision (request, approval, rejection, application,
    transfer and unfreeze) the log records and every request file: signed by
    a key the roster registers for that person, over that request's content,
    two distinct keys for a special-tier request (R-ACC-3, R-ACC-5); a forged
    or unmatched one exits 1 naming the request and the entry.
    """
    given = load_checkpoints(checkpoint_file) if checkpoint_file else []
    log = AuditLog(app.audit_log_path())
    if anchor_dir:
        anchors = _anchors(app, log, [anchor_dir], trust_keys)
        if not anchors.checkpoints and not anchors.problems:
            raise UsageError(f"no signed checkpoint of {log.path} on {app.hostname} in "
                             f"{anchor_dir}", hint="make one with 'opskit audit checkpoint "
                                                   f"--sign --export {anchor_dir}'")
        report = verify_with_anchors(log, anchors, given)
    elif app.config.get("audit.anchor_dir"):
        # the daily audit-verify job: the off-site anchors catch a cut tail or a rewritten
        # history that wiping checkpoints.jsonl hides; hiding them is a finding (R-AUD-3)
        offsite = app.config.relative_path(app.config.get("audit.anchor_dir"))
        anchors = collect(anchor_dirs(app, log), log.path, app.hostname,
                          trusted_anchor_keys(app, trust_keys), required=[offsite])
        report = verify_with_anchors(log, anchors, given)
    else:
        report = log.verify(given or None)
    line = report.describe()
    messages = [line]
    if report.ok and report.checkpoints_checked:
        messages.append(f"checked against {report.checkpoints_checked} checkpoint(s)")
    if not report.ok:
        messages.append(f"log: {log.path}")
        messages.append("see docs/audit-log.md ('When verify fails')")
    access = _access_check(app, log)
    messages += access.lines()
    app.audit_details = {"verify": {k: v for k, v in report.to_dict().items() if k != "log"}}
    app.audit_details["access"] = {k: v for k, v in access.to_dict().items() if k != "store"}
    app.audit_damage_is_finding = not report.ok
    code = EXIT_FINDINGS if not report.ok else access.exit_code(strict)
    summary = line if report.ok and access.ok else "; ".join(
        [line] + ([access.describe()] if not access.ok else []))
    result = Result(data={**report.to_dict(), "access": access.to_dict()}, messages=messages,
                    summary=summary, exit_code=code)
    if not report.ok:       # a tampered audit log is an incident (#25 item 1, R-INC-1)
        from .incident import automatic_incident
        automatic_incident(app, result, "audit-log-tampered", f"audit log {log.path}: {line}",
                           log.path)
    if access.findings:     # a forged approval is one too (#20, R-ACC-3, R-INC-1)
        from .incident import automatic_incident
        first = access.findings[0]
        automatic_incident(app, result, "access-decision-forged",
                           f"access request {first.request}: {access.describe()}",
                           os.path.join(access.store, f"{first.request}.json"))
    app.emit(result)


def _access_check(app: App, log: AuditLog):
    """Access decisions in ``log`` and the request store re-checked against the roster."""
    from opskit.accounts.approvals import check_records
    return check_records(app.config, log.entries())


def trusted_anchor_keys(app: App, extra: tuple[str, ...] = ()) -> dict[bytes, str]:
    """Keys trusted to sign audit checkpoints: audit.anchor_keys, ``extra`` (lines or
    .pub files) and the operator's own signing key when it can be read."""
    trusted: dict[bytes, str] = {}
    for text in (*app.config.get("audit.anchor_keys", []), *extra):
        if os.path.isfile(text):
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        try:
            trusted[parse_public_key(text)] = text.split()[-1]
        except ValueError as exc:
            raise UsageError(f"audit.anchor_keys / --trust-key: {exc}") from None
    try:
        own = load_signer(signing_key_path(app.config, app.state_dir))
        trusted.setdefault(own.public_raw, "operator key")
    except OperationalError:
        pass                # no key here: only the declared ones are trusted
    return trusted


def anchor_dirs(app: App, log: AuditLog) -> list[str]:
    """Where signed checkpoints of ``log`` are kept: audit.anchor_dir, then the local copy."""
    configured = app.config.get("audit.anchor_dir")
    return ([app.config.relative_path(configured)] if configured else []) + [log.anchors_dir]


def _anchors(app: App, log: AuditLog, dirs: list[str], extra: tuple[str, ...] = ()):
    return collect(dirs, log.path, app.hostname, trusted_anchor_keys(app, extra))


@group.command("checkpoint")
@click.option("--sign", is_flag=True,
              help="Also sign the checkpoint with your Ed25519 key and keep it in <log "
                   "dir>/anchors and, with --export DIR or audit.anchor_dir, off the machine.")
@click.option("--key", "key", metavar="FILE",
              help="With --sign: the Ed25519 private key (default: as 'opskit correct').")
@click.option("--export", "export_to", metavar="FILE|DIR", type=click.Path(),
              help="Also write the checkpoint (signed with --sign) as JSON (mode 0600) to FILE, "
                   "or into DIR (an existing directory, always with --sign), e.g. removable "
                   "or off-site storage.")
@output_options(tabular=False)
@pass_app
def checkpoint_cmd(app: App, sign: bool, key: str | None, export_to: str | None) -> None:
    """Verify the log, then record its head (seq + hash) as a checkpoint.

    \b
    The checkpoint is kept in checkpoints.jsonl beside the log and printed.
    Keep a copy somewhere an attacker on this machine cannot rewrite
    (--sign --export DIR to other storage, a ticket, e-mail, paper): 'verify
    --anchors DIR' (or --checkpoint FILE) then proves no entry up to it was
    changed or removed.
    """
    if key and not sign:
        raise UsageError("--key goes with --sign")
    signer = load_signer(signing_key_path(app.config, app.state_dir, key)) if sign else None
    log = AuditLog(app.audit_log_path())
    cp = log.checkpoint()
    messages = [f"checkpoint: seq {cp['seq']}, head {cp['hash']}",
                f"recorded in {log.checkpoints_path}"]
    data = cp
    if signer is not None:
        data = sign_checkpoint(cp, signer)
        messages.append(f"signed by {signer.fingerprint}: {write_anchor(log.anchors_dir, data)}")
        configured = app.config.get("audit.anchor_dir")
        export_to = export_to or (app.config.relative_path(configured) if configured else None)
    if export_to:
        messages.append(f"exported to {_export(export_to, data, signer is not None)}")
    messages.append("keep a copy off this machine; check later with 'opskit audit verify "
                    + ("--anchors DIR'" if signer else "--checkpoint FILE'"))
    app.audit_details = {"checkpoint": {"seq": cp["seq"], "hash": cp["hash"]}}
    if signer is not None:
        app.audit_details["checkpoint"]["signed_by"] = signer.fingerprint
    app.emit(Result(data=data, messages=messages,
                    summary=f"checkpoint seq {cp['seq']} head {cp['hash'][:12]}"
                            + (" (signed)" if signer else "")))


def _export(path: str, data: dict, signed: bool) -> str:
    """Write the checkpoint to FILE, or into DIR when ``path`` is a directory (always for
    a signed one), named by host and seq; the path written."""
    if signed:
        return write_anchor(path, data)
    if os.path.isdir(path):
        path = os.path.join(path, anchor_name({"checkpoint": data}))
    return _write_file(path, data)


def _write_file(path: str, data: dict) -> str:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        return write_atomic(path, text, 0o600)
    except OSError as exc:
        raise OperationalError(f"cannot write checkpoint file {path}: {exc.strerror}",
                               hint="the checkpoint is recorded beside the log all the same") \
            from None
