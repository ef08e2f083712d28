"""What a correction will write, computed read-only before anybody approves it (#17).

An approver must read old -> new for every row, not a statement with placeholders.
``compute`` runs the SELECTs that sqlcheck.new_values_sql rewrites the vetted UPDATE
or INSERT into, with the same bound parameters, inside the request's read-only
transaction, and keeps per row its key and, for each column whose value changes,
the old and the new value (cast to the column's type). The result is stored in
the signed request body (``preview``), so the approver sees what the requester
signed; a request recorded before previews existed gets one computed at show
time, read-only, and marked so (R-DAT-1, R-DAT-3).
"""
from __future__ import annotations

from .sqlcheck import NEW_PREFIX, Statement, new_values_sql

AT_REQUEST, AT_SHOW = "request", "show"


def compute(tx, stmt: Statement, params: dict, key_table: str, when: str = AT_REQUEST) -> dict | None:
    """The preview of ``stmt`` (None for a DELETE: its before-image is what goes):
    ``{"computed": when, "rows": [{"key", "old", "new"}], "pending": [...]}`` where
    ``pending`` names the columns only the apply can tell (DEFAULT, subscripts,
    generated columns)."""
    if stmt.operation not in ("UPDATE", "INSERT"):
        return None
    columns = tx.columns(stmt.table)
    base = columns if key_table == stmt.table else tx.columns(key_table)
    plan = new_values_sql(stmt, {c["name"]: c["type"] for c in columns if c["type"]})
    key = tx.primary_key(key_table) if stmt.operation == "UPDATE" else []
    rows: list[dict] = []
    for sql, cols in plan.queries:
        found = tx.q(sql, params)[1] if sql else [{}]
        for row in found:
            rows.append(_row(stmt.operation, row, cols, key))
    generated = [f"{c['name']} (generated column)" for c in base if c.get("generated")]
    return {"computed": when, "rows": rows, "pending": sorted(set(plan.pending)) + generated}


def _row(operation: str, row: dict, cols: list[str], key: list[str]) -> dict:
    """One previewed row: its key, and old/new of the columns that change."""
    new = {c: row.get(f"{NEW_PREFIX}{i}") for i, c in enumerate(cols)}
    if operation == "INSERT":
        return {"key": {}, "old": {}, "new": new}
    old = {c: v for c, v in row.items() if not c.startswith(NEW_PREFIX)}
    changed = [c for c in cols if new[c] != old.get(c)]     # unchanged columns are not listed
    return {"key": {c: old[c] for c in key if c in old} if all(c in old for c in key) else {},
            "old": {c: old.get(c) for c in changed}, "new": {c: new[c] for c in changed}}


def matches(preview: dict | None, operation: str, before: list[dict], row_count: int) -> bool:
    """Whether a signed preview is about the request's own rows: one previewed row per
    row of the before-image (an INSERT: per row inserted), each with the key and old
    values of a before-image row. (The new values are the requester's computation;
    the after-image recorded at apply is what happened.)"""
    if not preview or preview.get("error"):
        return True
    rows = preview.get("rows")
    if not isinstance(rows, list):
        return False
    if operation == "INSERT":
        return len(rows) == row_count
    try:
        return len(rows) == len(before) and all(
            any(all(b.get(c) == v for c, v in {**r["key"], **r["old"]}.items()) for b in before)
            for r in rows)
    except (KeyError, TypeError, AttributeError):
        return False
