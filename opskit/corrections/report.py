"""What people and auditors read about corrections: the Result of every
``opskit correct`` step, the request list and history, and the ledger export
(JSON, CSV, or an HTML page from corrections/templates/export.html), all
rendered by opskit.core.output (R-DAT-1, R-AUD-1)."""
from __future__ import annotations

import base64
import json
from typing import Any

from opskit.core.errors import EXIT_FINDINGS
from opskit.core.output import Result, Table, terminal_safe
from opskit.core.signing import fingerprint

from . import workflow as wf
from .ledger import EXPORT_MARK, VERSION, Ledger, decode
from .rulesfile import Requirement, redact_url
from .sqlcheck import with_values

LOG_COLUMNS = ["id", "state", "target", "table", "operation", "rows", "requester", "approvers",
               "executor", "waiting_for", "ticket", "failure"]
EXPORT_COLUMNS = ["seq", "time", "request", "kind", "actor", "key", "detail", "body", "prev",
                  "hash", "sig", "entry"]
SHOW_FIELDS = ("id", "state", "target", "table", "operation", "rows", "requester", "requested",
               "reason", "ticket", "requirement", "approvers", "executor", "waiting_for", "failure")


# --- rows -------------------------------------------------------------------------------

def summary_row(st: wf.RequestState) -> dict:
    """One request as a row of ``correct log``."""
    signers = st.approvals + ([st.auditor] if st.auditor else [])
    return {"id": st.id, "state": st.state, "target": st.target, "table": st.table,
            "operation": st.operation, "rows": st.row_count, "requester": st.requester,
            "requested": st.requested_at,
            # a list, as 'access show' gives it; levels in 'approvals' (#22 item 9)
            "approvers": [a["actor"] for a in signers],
            "approvals": [{"actor": a["actor"], "level": a["level"]} for a in signers],
            "executor": st.executor or "", "waiting_for": st.waiting_for(),
            "ticket": st.ticket, "reason": st.reason, "failure": failure_of(st)}


def failure_of(st: wf.RequestState) -> str:
    """Why the request failed, or why its last apply attempt was rolled back, with the
    database's SQLSTATE when it gave one; else ''."""
    if st.state == wf.FAILED and st.outcome:
        return _why(st.outcome)
    if st.aborted:
        return "last attempt rolled back (" + _why(st.aborted[-1]).replace(": ", "): ", 1)
    return ""


def _why(body: dict) -> str:
    """``stage: reason [SQLSTATE x]`` of an apply-failed or apply-aborted entry."""
    state = body.get("sqlstate")
    return f"{body.get('stage')}: {body.get('reason')}" + (f" [SQLSTATE {state}]" if state else "")


def signatures(st: wf.RequestState) -> str:
    """Who has signed the request so far, in order, with role and ledger seq."""
    signers = sorted(st.approvals + ([st.auditor] if st.auditor else []), key=lambda a: a["seq"])
    return "; ".join([f"{st.requester} (requester, seq {st.seq})"] +
                     [f"{a['actor']} ({a['level']}, seq {a['seq']})" for a in signers])


def review_lines(st: wf.RequestState, preview: dict | None = None) -> list[str]:
    """What an approver must see: the statement with its values (for reading only:
    values are always bound), where the row diff's new values come from, the
    cascades, the tables whose triggers act only at apply, the requirement and the
    signatures so far; control characters escaped, since all of it was typed by
    someone else (#17)."""
    cascades = ", ".join(f"{len(e['rows'])} row(s) of {e['table']} ({e['via']})" for e in st.effects)
    return terminal_safe([f"statement: {with_values(st.sql, st.params)}",
                          *_preview_lines(st, preview),
                          *([f"cascades: {cascades}"] if cascades else []),
                          *_trigger_lines(st),
                          f"requirement: {st.requirement.describe()}",
                          f"signed by: {signatures(st)}",
                          f"still needed: {st.waiting_for()}"])


def _preview_lines(st: wf.RequestState, preview: dict | None) -> list[str]:
    """Where the new values in the row diff come from (before apply)."""
    preview = preview if preview is not None else st.preview
    if st.state in (wf.APPLIED, wf.FAILED) or not preview:
        return []
    if preview.get("error"):
        return [f"new values: not computed ({preview['error']})"]
    if preview.get("computed") == "show":
        return ["new values: computed now, read-only (the request was recorded without a preview, "
                "so they are not what the requester signed; the rows may differ at apply)"]
    return ["new values: computed read-only when the request was made, signed by the requester"]


def _trigger_lines(st: wf.RequestState) -> list[str]:
    """Before apply: the tables whose triggers act only when the statement runs."""
    if st.state == wf.APPLIED or not st.triggers_on:
        return []
    named = "; ".join(f"{t['table']} ({', '.join(t['triggers'])})" for t in st.triggers_on)
    return [f"triggers: {named}: what they change is known and recorded only at apply"]


def _detail(kind: str | None, body: dict) -> str:
    if kind == "request":
        return (f"{body.get('operation')} {body.get('target')}.{body.get('table')} "
                f"({body.get('row_count')} rows)")
    if kind == "approve":
        return f"level {body.get('level')}: {body.get('comment', '')}"
    if kind in ("reject", "withdraw"):
        return body.get("comment", "")
    if kind == "applied":
        return f"{body.get('row_count')} rows"
    if kind in ("apply-failed", "apply-aborted"):
        return _why(body)
    return ""


def entry_row(entry: dict, text: str | None = None) -> dict:
    """One ledger entry as a row (``show`` history, exports)."""
    body = entry.get("body") or {}
    detail = _detail(entry.get("kind"), body)
    if body.get("recovered") is True:
        detail += (f" (recovered: {body.get('recovery')}; interrupted apply by "
                   f"{body.get('interrupted_executor')}, claim seq {body.get('claim_seq')})")
    row = {"seq": entry.get("seq"), "time": entry.get("time"), "request": entry.get("request"),
           "kind": entry.get("kind"), "actor": entry.get("actor"), "detail": detail,
           "key": _fp(entry.get("key")), "hash": entry.get("hash"), "prev": entry.get("prev"),
           "sig": entry.get("sig"), "body": json.dumps(body, ensure_ascii=False, sort_keys=True)}
    if text is not None:
        row["entry"] = text
    return row


def _fp(b64: Any) -> str:
    try:
        return fingerprint(base64.b64decode(b64, validate=True))
    except Exception:
        return str(b64)


def _image_table(title: str, rows: list[dict], columns: list[str] | None = None) -> Table:
    """Rows of a before/after image; column names kept as the database spells them."""
    cols = columns or sorted({k for r in rows for k in r})
    return Table(cols, rows, title=title, headers={c: c for c in cols})


def _image(title: str, rows: list[dict], columns: list[str] | None = None) -> list[Table]:
    return [_image_table(title, rows, columns)] if rows else []


# --- the row diff -----------------------------------------------------------------------

DIFF_COLUMNS = ["request", "state", "table", "row", "column", "old", "new"]


def _cell(value: Any) -> str:
    return "NULL" if value is None else (value if isinstance(value, str)
                                         else json.dumps(value, ensure_ascii=False, sort_keys=True))


def _key_column(before: list[dict], after: list[dict], prefer: list[str] = ()) -> str | None:
    """A column that names each row on both sides: unique in each and the same values
    (the primary key, normally: ``prefer`` and ``id`` are tried first); None if none."""
    for col in [*prefer, "id", *(before[0] if before else {})]:
        old = [_cell(r.get(col)) for r in before]
        new = [_cell(r.get(col)) for r in after]
        if len(set(old)) == len(old) and sorted(old) == sorted(new):
            return col
    return None


def _row_name(row: dict, index: int) -> str:
    return str(row.get("id", index))


def _whole_rows(base: dict, rows: list[dict], what: str, old: bool) -> list[dict]:
    out = []
    for i, row in enumerate(rows, 1):
        text = ", ".join(f"{c}={_cell(v)}" for c, v in row.items())
        out.append(dict(base, row=_row_name(row, i), column=what,
                        old=text if old else "", new="" if old else text))
    return out


def _previewed(base: dict, st: wf.RequestState, preview: dict) -> list[dict]:
    """Before apply, from the preview: per row the columns that change, old -> new
    (an INSERT: the rows to insert); then the columns only the apply can tell."""
    out: list[dict] = []
    for i, row in enumerate(preview.get("rows") or [], 1):
        if st.operation == "INSERT":
            text = ", ".join(f"{c}={_cell(v)}" for c, v in row["new"].items())
            out.append(dict(base, row=str(i), column="(row to insert)", old="", new=text))
            continue
        name = ", ".join(f"{c}={_cell(v)}" for c, v in row["key"].items()) or str(i)
        if not row["new"]:
            out.append(dict(base, row=name, column="(no column changes)", old="", new=""))
        out += [dict(base, row=name, column=c, old=_cell(row["old"].get(c)), new=_cell(v))
                for c, v in sorted(row["new"].items())]
    out += [dict(base, row="(each row)", column=p, old="", new="(known at apply)")
            for p in preview.get("pending") or []]
    return out


def _applied(base: dict, before: list[dict], after: list[dict], prefer: list[str]) -> list[dict]:
    """An applied UPDATE: the columns that changed, rows paired by a key column."""
    out: list[dict] = []
    key = _key_column(before, after, prefer)
    pairs = ({_cell(r.get(key)): r for r in after} if key else {})
    for i, old in enumerate(before):
        new = pairs.get(_cell(old.get(key))) if key else (after[i] if i < len(after) else {})
        for col in sorted(set(old) | set(new or {})):
            if new is not None and old.get(col) != new.get(col):
                out.append(dict(base, row=f"{key}={_cell(old.get(key))}" if key else str(i + 1),
                                column=col, old=_cell(old.get(col)), new=_cell(new.get(col))))
    return out


def _cascaded(base: dict, eff: dict) -> list[dict]:
    """The rows a foreign-key action changes: deleted whole, or (SET NULL, SET DEFAULT,
    ON UPDATE CASCADE) the key columns old -> new."""
    where = dict(base, table=eff["table"])
    if eff["operation"] == "DELETE" or not eff.get("columns"):
        what = "(row deleted by " if eff["operation"] == "DELETE" else "(row updated by "
        return _whole_rows(where, eff["rows"], what + eff["via"] + ")", old=True)
    new = ("NULL" if eff["via"].endswith("SET NULL") else
           "DEFAULT" if eff["via"].endswith("SET DEFAULT") else "(the new key)")
    return [dict(where, row=_row_name(row, i), column=f"{c} (by {eff['via']})",
                 old=_cell(row.get(c)), new=new)
            for i, row in enumerate(eff["rows"], 1) for c in eff["columns"]]


def _key_names(preview: dict | None) -> list[str]:
    """The primary key the preview found (one column), to pair rows after apply."""
    rows = (preview or {}).get("rows") or []
    return list(rows[0]["key"]) if rows and len(rows[0].get("key") or {}) == 1 else []


def row_diff(st: wf.RequestState, preview: dict | None = None) -> list[dict]:
    """Every row the request changes (or changed), old -> new, cascades included: for an
    UPDATE the changed columns only (before apply from the signed preview, or
    ``preview`` computed now; after apply from the after-image), for a DELETE the rows
    removed, for an INSERT the rows added; the tables whose triggers act at apply, and
    once applied what they wrote (R-DAT-1)."""
    base = {"request": st.id, "state": st.state, "table": st.table}
    applied = st.state == wf.APPLIED
    after = list((st.outcome or {}).get("after") or []) if applied else []
    preview = (preview if preview is not None else st.preview) if not applied else None
    out: list[dict] = []
    if preview and preview.get("error"):
        out.append(dict(base, row="", column="(new values not computed)", old="",
                        new=preview["error"]))
    if st.operation == "DELETE":
        out += _whole_rows(base, st.before, "(row deleted)", old=True)
    elif st.operation == "INSERT" and after:
        out += _whole_rows(base, after, "(row inserted)", old=False)
    elif st.operation == "UPDATE" and after:
        out += _applied(base, st.before, after, _key_names(st.preview))
    elif preview and not preview.get("error"):
        out += _previewed(base, st, preview)
    elif st.operation == "INSERT":
        out.append(dict(base, row="", column="(rows to insert)", old="",
                        new=with_values(st.sql, st.params)))
    else:
        out += _whole_rows(base, st.before, "(row to update: " + with_values(st.sql, st.params) + ")",
                           old=True)
    for eff in st.effects:
        out += _cascaded(base, eff)
    if applied:
        for eff in (st.outcome or {}).get("trigger_effects") or []:
            out += _whole_rows(dict(base, table=eff["table"]), eff["rows"], "(row written by a trigger)",
                               old=False)
    else:
        out += [dict(base, table=t["table"], row="", column=f"(triggers: {', '.join(t['triggers'])})",
                     old="", new="what they change is recorded at apply") for t in st.triggers_on]
    return out


def _diffs(texts: list[str]) -> list[dict]:
    """The row diff of every request in the ledger (requests that do not fold are skipped:
    ``verify`` names them)."""
    groups: dict[str, list[dict]] = {}
    for text in texts:
        try:
            entry = decode(text)
        except ValueError:
            continue
        groups.setdefault(str(entry.get("request")), []).append(entry)
    out: list[dict] = []
    for entries in groups.values():
        try:
            out += row_diff(wf.fold(entries))
        except Exception:  # noqa: BLE001 - a broken request is verify's to report
            continue
    return out


# --- the export -------------------------------------------------------------------------

def export_result(ledger: Ledger, exported: str) -> Result:
    """The whole ledger for auditors: JSON keeps the exact stored entry texts
    (``prev`` is a hash of those bytes), CSV has them in the 'entry' column and
    the HTML page embeds them, so every format verifies offline."""
    texts = [s.text for s in ledger.texts()]
    meta = {"exported": exported, "ledger": redact_url(ledger.url), "count": len(texts),
            "head": _head(texts)}
    rows = []
    for text in texts:
        try:
            rows.append(entry_row(decode(text), text))
        except ValueError:
            rows.append({"seq": "?", "detail": "unparseable entry", "entry": text})
    return Result(data={"format": EXPORT_MARK, "version": VERSION, **meta, "entries": texts},
                  tables=[Table(EXPORT_COLUMNS, rows)], title="opskit correction ledger",
                  summary=f"exported {len(texts)} entries", template="corrections/export.html",
                  context={"head": json.dumps(meta["head"], ensure_ascii=False),
                           "diff": _diffs(texts), "diff_columns": DIFF_COLUMNS})


def _head(texts: list[str]) -> dict | None:
    if not texts:
        return None
    try:
        last = decode(texts[-1])
    except ValueError:
        return None
    return {"seq": last.get("seq"), "hash": last.get("hash")}


def exported_result(count: int, fmt: str, out: str) -> Result:
    """``correct export --out FILE``: what was written where."""
    return Result(messages=[f"exported {count} entries to {out} ({fmt})"],
                  summary=f"exported {count} entries ({fmt})")


# --- one Result per step ----------------------------------------------------------------

def keygen_result(signer, line: str, name: str) -> Result:
    """The new key and the snippet to declare it in the rules file."""
    snippet = (f"operators:\n  {name or 'YOUR_NAME'}:\n    public_key: {line}\n"
               "    roles: [clerk]            # clerk, section_head, leader, auditor, maintainer")
    return Result(
        data={"private_key": signer.path, "public_key": line, "fingerprint": signer.fingerprint},
        messages=[f"private key written to {signer.path} (mode 0600; keep it yours alone)",
                  f"fingerprint {signer.fingerprint}", "", "public key (give this to whoever "
                  "keeps the corrections rules file):", line, "", snippet],
        summary=f"signing key {signer.fingerprint} created")


def dry_run_result(body: dict) -> Result:
    """``request --dry-run``: the vetted statement, the row diff the approvers will see
    and the before-image."""
    need = Requirement.from_dict(body["requirement"]).describe()
    diff = _unrecorded_diff(body)
    return Result(data=dict(body, diff=diff),
                  tables=[diff_table(diff),
                          _image_table("before-image", body["before"], body["columns"])],
                  messages=[f"dry run: {body['operation']} {body['target']}.{body['table']} "
                            f"touches {body['row_count']} row(s); needs {need}; nothing stored"],
                  summary=f"dry run: {body['row_count']} row(s)")


def _unrecorded_diff(body: dict) -> list[dict]:
    """The row diff of a request body not (yet) in the ledger, as ``show`` will give it."""
    st = wf.step(None, {"kind": "request", "actor": "(dry run)", "request": "CR-0", "seq": 0,
                        "body": body})
    return [dict(row, request="(dry run)") for row in row_diff(st)]


def request_result(entry: dict, st: wf.RequestState) -> Result:
    """A recorded request: its id, what it needs, the row diff the approvers will see,
    the before-image."""
    diff = row_diff(st)
    return Result(
        data={"request": st.id, "state": st.state, "ledger_seq": entry["seq"],
              "hash": entry["hash"], "row_count": st.row_count,
              "requirement": st.requirement.to_dict(), "sql": st.sql, "diff": diff},
        tables=[diff_table(diff), *_image("before-image", st.before, entry["body"]["columns"])],
        messages=[f"{st.id} requested by {st.requester}: {st.operation} {st.target}.{st.table}, "
                  f"{st.row_count} row(s); needs {st.requirement.describe()}"],
        summary=f"{st.id} requested: {st.operation} {st.target}.{st.table}, "
                f"{st.row_count} row(s)")


SHOWN_DIFF = ["table", "row", "column", "old", "new"]


def diff_table(diff: list[dict]) -> Table:
    """The row diff for people (cells escaped by the renderer)."""
    return Table(SHOWN_DIFF, diff, title="row diff (old -> new)")


def approve_result(entry: dict, st: wf.RequestState, preview: dict | None = None) -> Result:
    """A sign-off, what the request will change (row diff) and what it still needs."""
    level = entry["body"]["level"]
    more = ("fully approved: ready to apply" if st.state == "approved" else
            f"still needs {st.waiting_for()}")
    diff = row_diff(st, preview)
    return Result(data={"request": st.id, "state": st.state, "level": level,
                        "ledger_seq": entry["seq"], "waiting_for": st.waiting_for(),
                        "signed_by": signatures(st), "diff": diff,
                        "preview": preview if preview is not None else st.preview},
                  tables=[diff_table(diff)],
                  messages=review_lines(st, preview) + terminal_safe(
                      [f"{st.id} approved by {entry['actor']} ({level}); {more}"]),
                  summary=f"{st.id} approved by {entry['actor']} ({level}); state {st.state}")


def comment_step_result(entry: dict, st: wf.RequestState, past: str) -> Result:
    """A reject or withdraw ('rejected', 'withdrawn')."""
    return Result(data={"request": st.id, "state": st.state, "ledger_seq": entry["seq"]},
                  messages=[f"{st.id} {past} by {entry['actor']}"],
                  summary=f"{st.id} {past} by {entry['actor']}")


def plan_result(plan: dict, request_id: str) -> Result:
    """``apply --dry-run``: would apply proceed (exit 0) or refuse (exit 1)."""
    verdict = ("rows unchanged since the request: apply would proceed"
               if plan["before_unchanged"] else
               "rows CHANGED since the request: apply would refuse")
    return Result(data=plan, messages=[f"dry run: {plan['sql']}", f"params: {plan['params']}",
                                       f"{plan['row_count']} row(s); {verdict}"],
                  summary=f"dry run {request_id}: {verdict}",
                  exit_code=0 if plan["before_unchanged"] else EXIT_FINDINGS)


def recovery_note(outcome: dict) -> str:
    """How an interrupted apply was settled ('' when it was not)."""
    recovery = outcome.get("recovery") if outcome.get("recovered") is True else None
    if not recovery:
        return ""
    how = ("its change had been committed" if recovery == "committed-before-crash" else
           "its change had not been committed, applied now")
    return (f" (recovered the apply by {outcome.get('interrupted_executor')} interrupted after "
            f"claim seq {outcome.get('claim_seq')}: {how})")


def apply_result(entry: dict, st: wf.RequestState) -> Result:
    """An applied request: rows changed and the after-image."""
    after = st.outcome.get("after") or []
    recovery = st.outcome.get("recovery") if st.outcome.get("recovered") is True else None
    count = st.outcome["row_count"]
    return Result(data={"request": st.id, "state": st.state, "row_count": count,
                        "after": after, "ledger_seq": entry["seq"], "hash": entry["hash"],
                        "recovery": recovery},
                  tables=_image("after-image", after),
                  messages=[f"{st.id} applied by {entry['actor']}: {count} row(s) changed in "
                            f"{st.target}.{st.table}{recovery_note(st.outcome)}"],
                  summary=f"{st.id} applied: {count} row(s)" + (" (recovered)" if recovery
                                                                 else ""))


def log_result(states: list[wf.RequestState], state_filter: str | None) -> Result:
    """``correct log``: one row per request (only ``state_filter`` when given)."""
    rows = [summary_row(s) for s in states if not state_filter or s.state == state_filter]
    return Result(data=rows, tables=[Table(LOG_COLUMNS, [_with_levels(r) for r in rows],
                                           headers={"waiting_for": "WAITING FOR"})],
                  summary=f"{len(rows)} correction request(s)")


def _with_levels(row: dict) -> dict:
    """``row`` for people: each approver with the level they signed at."""
    return dict(row, approvers=[f"{a['actor']} ({a['level']})" for a in row["approvals"]])


def param_lines(params: dict) -> list[str]:
    """Bound parameters as people read them: ``id = 42``, one per parameter."""
    return [f"{name} = {value}" for name, value in (params or {}).items()]


def state_view(st: wf.RequestState) -> dict:
    """A request's row with its requirement in words."""
    row = summary_row(st)
    row["requirement"] = st.requirement.describe()
    return row


def show_result(st: wf.RequestState, preview: dict | None = None) -> Result:
    """``correct show``: statement, row diff (old -> new), images and every signed entry;
    ``preview``: new values computed now for a request recorded without them."""
    view = state_view(st)
    shown = _with_levels(view)
    info = Table(["field", "value"], [{"field": k, "value": shown[k]} for k in SHOW_FIELDS]
                 + [{"field": "signed by", "value": signatures(st)},
                    {"field": "statement", "value": with_values(st.sql, st.params)},
                    {"field": "sql", "value": st.sql}]
                 + [{"field": "param", "value": line} for line in param_lines(st.params)])
    history = [entry_row(e) for e in st.history]
    cascaded = [t for e in st.effects
                for t in _image(f"cascade: {e['operation']} {e['table']} ({e['via']})", e["rows"])]
    diff = row_diff(st, preview)
    tables = [info, diff_table(diff), *_image("before-image", st.before), *cascaded,
              *_image("after-image", (st.outcome or {}).get("after") or []),
              Table(["seq", "time", "kind", "actor", "detail", "key"], history,
                    title="ledger entries")]
    data = dict(view, sql=st.sql, params=st.params, before=st.before, outcome=st.outcome,
                requirement=st.requirement.to_dict(), entries=st.history, diff=diff,
                preview=preview if preview is not None else st.preview)
    return Result(data=data, tables=tables, messages=_show_notes(st, preview),
                  summary=f"{st.id}: {st.state}")


def _show_notes(st: wf.RequestState, preview: dict | None) -> list[str]:
    """Under ``show``'s tables: where the new values come from, the triggers line."""
    return terminal_safe(_preview_lines(st, preview) + _trigger_lines(st))


def verify_result(report, audit_mark: dict | None, warning: str | None,
                  checkpoints: list[dict] = (), strict: bool = False) -> Result:
    """``correct verify``: intact or the first bad entry (exit 1), and the anchors
    (audit log record, checkpoint files) the tail was checked against; without
    one, ``strict`` makes it exit 1 too (R-AUD-1)."""
    anchors = [f"{cp.get('source') or 'a checkpoint'}: seq {cp.get('seq')}" for cp in checkpoints]
    data = dict(report.to_dict(), anchors=anchors, audit_log_head=(
        {"seq": audit_mark["seq"], "hash": audit_mark["hash"]} if audit_mark else None))
    messages = [report.describe()]
    if warning:
        messages.append("warning: " + warning)
    elif report.ok and audit_mark is not None:
        messages.append(f"cross-checked with the audit log: it records seq {audit_mark['seq']} "
                        f"{audit_mark['hash'][:12]}, which the ledger holds")
    if not report.signers_checked:
        messages.append("warning: no operators declared in the rules file, so signatures were "
                        "checked only against the keys embedded in the entries")
    if anchors:
        messages.append("anchored by " + "; ".join(anchors))
    else:
        # "intact" without an anchor cannot rule out a cut-off tail: say so
        messages.append("warning: no anchor (no audit log record of this ledger, an export, or "
                        "--no-audit-check): entries cut off the end of the ledger cannot be "
                        "detected; give --checkpoint FILE" + (" (--strict: exit 1)" if strict else ""))
    unanchored = strict and not anchors
    return Result(data=data, messages=messages, summary=report.describe(),
                  exit_code=0 if report.ok and not unanchored else EXIT_FINDINGS)
