"""One renderer for every command's result: table for people, JSON for
scripts, CSV where the result is tabular.

Domain code returns a ``Result``; the CLI calls ``render``. The same Result
feeds the audit log (``summary``) and reports.
"""
from __future__ import annotations

import csv
import datetime as _dt
import enum
import io
import json
import os
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, TextIO

from .errors import EXIT_OK

FORMATS = ("table", "json", "csv")


@dataclass
class Table:
    """Rows of dicts; ``columns`` picks and orders keys, ``headers`` renames them."""

    columns: list[str]
    rows: list[dict]
    title: str | None = None
    headers: dict[str, str] | None = None

    def header_names(self) -> list[str]:
        names = self.headers or {}
        return [names.get(c, c.replace("_", " ").upper()) for c in self.columns]


@dataclass
class Result:
    """What a command produced.

    data      JSON-able payload printed by ``--json``
    tables    what people see (and CSV exports)
    messages  lines for people printed after the tables
    summary   one line for the audit log and for cron
    exit_code 0 success, 1 findings (see core.errors)
    """

    data: Any = None
    tables: list[Table] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    summary: str = ""
    exit_code: int = EXIT_OK


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, enums, datetimes, bytes and paths into JSON types."""
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, str) and _has_surrogates(value):
        # os.fsdecode() of a name that is not UTF-8: show its bytes as \xNN
        # escapes, so the output stays valid UTF-8 (RFC 8259) and readable
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def terminal_safe(value: Any) -> Any:
    """``value`` with control and format characters (ESC, CR, BEL, bidi overrides ...)
    in its strings written as visible ``\\x1b``/``\\u202e`` escapes, so text someone
    else typed cannot move the cursor, recolour or hide what a reviewer reads. Dicts
    and lists are walked; other values are returned as they are."""
    if isinstance(value, str):
        import unicodedata
        if value.isprintable():
            return value
        return "".join(ch if ch.isprintable() or unicodedata.category(ch) == "Zs"
                       else ch.encode("unicode_escape").decode("ascii") for ch in value)
    if isinstance(value, dict):
        return {k: terminal_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [terminal_safe(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Stable, readable JSON."""
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False, ensure_ascii=False)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(cell: Any) -> str:
    """Neutralise spreadsheet formula injection: a text cell that a spreadsheet
    would evaluate gets a leading apostrophe (OWASP CSV injection guidance).
    Numbers stay numbers; lists are joined as in tables."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "yes" if cell else "no"
    if isinstance(cell, (int, float)):
        return str(cell)
    if isinstance(cell, (list, tuple)):
        cell = ", ".join(str(_cell(v)) for v in cell)
    text = str(to_jsonable(cell))
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _cell(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_cell(v)) for v in value)
    return to_jsonable(value)


def render_table(table: Table) -> str:
    from tabulate import tabulate  # imported here: 40 ms that JSON output never needs
    rows = [[_cell(row.get(c)) for c in table.columns] for row in table.rows]
    text = tabulate(rows, headers=table.header_names(), tablefmt="simple", disable_numparse=True)
    if not table.rows:
        text = "(none)"
    return f"{table.title}\n{text}" if table.title else text


def render_csv(tables: list[Table]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180: a bare CR in a cell gets quoted
    for i, table in enumerate(tables):
        if i:
            buf.write("\n")
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow([csv_safe(row.get(c)) for c in table.columns])
    return buf.getvalue()


def render(result: Result, fmt: str, stream: TextIO) -> None:
    """Write ``result`` to ``stream`` in ``fmt`` (table, json or csv)."""
    if fmt == "json":
        payload = result.data
        if payload is None:
            payload = {t.title or f"table{i}": t.rows for i, t in enumerate(result.tables)}
        stream.write(dumps(payload) + "\n")
        return
    if fmt == "csv":
        stream.write(render_csv(result.tables))
        return
    parts = [render_table(t) for t in result.tables]
    parts.extend(result.messages)
    if not parts and result.summary:
        parts.append(result.summary)
    if parts:
        stream.write("\n\n".join(p for p in parts[: len(result.tables)]) if result.tables else "")
        rest = parts[len(result.tables):]
        if result.tables and rest:
            stream.write("\n\n")
        if rest:
            stream.write("\n".join(rest))
        stream.write("\n")
