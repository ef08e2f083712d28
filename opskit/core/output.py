"""What every command produces (``Result``) and the one registry of output
formats that turns it into text: table for people, JSON for scripts, CSV
where the result is tabular, Markdown and HTML documents, JUnit XML for CI.

Domain code returns a ``Result``; the CLI calls ``render``. The same Result
feeds the audit log (``summary``) and reports. Adding a format is one
renderer function (``opskit/core/render/<format>.py``) and one
``register_format`` line at the end of this module; commands declare the
subset they offer (``opskit.cli.app.output_options``).
"""
from __future__ import annotations

import datetime as _dt
import enum
import importlib
import json
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import Any, Callable, Iterable, TextIO

from .errors import EXIT_OK, UsageError

# what a command offers unless it declares other formats (docs/cli.md)
FORMATS = ("table", "json", "csv")


@dataclass
class Table:
    """Rows of dicts; ``columns`` picks and orders keys, ``headers`` renames them."""

    columns: list[str]
    rows: list[dict]
    title: str | None = None
    headers: dict[str, str] | None = None
    # documents (md, html): one section per value of this column, headed by the
    # value and its entry in group_titles; table, CSV and JSON stay flat
    group_by: str | None = None
    group_titles: dict[str, str] | None = None
    # column -> "bytes", "seconds", "time" or "minute": rows hold raw values (ints,
    # floats, datetimes or ISO strings); people see them humanised, CSV and
    # JSON keep them raw (issue #22 item 6)
    kinds: dict[str, str] | None = None
    # what ``--table NAME`` calls it; default: the title in lower case, dashed
    name: str | None = None

    def header_names(self) -> list[str]:
        names = self.headers or {}
        return [names.get(c, c.replace("_", " ").upper()) for c in self.columns]

    def csv_headers(self) -> list[str]:
        """Column names for scripts: spaces as underscores, the unit named
        (``size_bytes``, ``duration_s``)."""
        heads = []
        for c in self.columns:
            head = c.replace(" ", "_")
            unit = _UNITS.get((self.kinds or {}).get(c, ""), "")
            heads.append(head if not unit or head.endswith(unit) else head + unit)
        return heads

    def shown(self, row: dict, column: str) -> Any:
        """The value of ``column`` in ``row`` as people read it (by its kind)."""
        return humanised(row.get(column), (self.kinds or {}).get(column))

    def key(self, index: int = 0) -> str:
        """The name ``--table`` selects this table by."""
        if self.name:
            return self.name
        if self.title:
            return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")
        return f"table{index}"

    def groups(self) -> list[tuple[str, list[dict]]]:
        """Rows split by ``group_by``, sorted by its value."""
        found: dict[str, list[dict]] = {}
        for row in self.rows:
            found.setdefault(str(row.get(self.group_by)), []).append(row)
        return sorted(found.items())


@dataclass
class Case:
    """One check in a JUnit suite: status pass, fail, skip or error; ``kind`` is
    the failure/error type (a rule id), ``detail`` the failure text or, for a
    pass, its evidence."""

    name: str
    status: str
    message: str = ""
    detail: str = ""
    kind: str = ""
    seconds: float | None = None


@dataclass
class Suite:
    """The cases of one host (or target)."""

    name: str
    cases: list[Case] = field(default_factory=list)
    seconds: float | None = None


@dataclass
class Result:
    """What a command produced.

    data      JSON-able payload printed by ``--json``
    tables    what people see (and CSV exports)
    messages  lines for people printed after the tables
    summary   one line for the audit log and for cron
    exit_code 0 success, 1 findings (see core.errors)
    title     heading of Markdown and HTML documents
    suites    per-check cases for JUnit XML
    template  HTML page extending base.html ("perms/report.html" is
              opskit/perms/templates/report.html); default: the generic one
    context   extra values for that template
    main      the key of the table CSV holds without ``--table`` (default: the first)
    """

    data: Any = None
    tables: list[Table] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    summary: str = ""
    exit_code: int = EXIT_OK
    title: str | None = None
    suites: list[Suite] = field(default_factory=list)
    template: str | None = None
    context: dict = field(default_factory=dict)
    main: str | None = None


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


def dumps(value: Any) -> str:
    """Stable, readable JSON."""
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False, ensure_ascii=False)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# what a person's table shows for "nothing"; in CSV it is an empty cell
_PLACEHOLDERS = ("-", "--")


def csv_safe(cell: Any) -> str:
    """Neutralise spreadsheet formula injection: a text cell that a spreadsheet
    would evaluate gets a leading apostrophe (OWASP CSV injection guidance).
    Numbers stay numbers; lists are joined as in tables; nothing (None or a
    lone '-' placeholder) is an empty cell, not ``'-``."""
    if cell is None or (isinstance(cell, str) and cell in _PLACEHOLDERS):
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


def cell_text(value: Any) -> str:
    """A value as people read it in a table cell: None '-', booleans yes/no,
    lists joined, everything JSON-able as text."""
    return str(_cell(value))


def human_bytes(n: float) -> str:
    """A size for people: '512 B', '1.5 MiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def human_seconds(seconds: float) -> str:
    """A duration for people: '0.4s', '59.0s', '1:05', '2:01:05'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def human_time(value: Any) -> str:
    """A time for people: local-looking 'YYYY-MM-DD HH:MM:SS' from a datetime
    or an ISO 8601 string (the zone is dropped, not converted)."""
    text = value.isoformat() if isinstance(value, _dt.datetime) else str(value)
    return text[:19].replace("T", " ")


_UNITS = {"bytes": "_bytes", "seconds": "_s"}
# "minute": a time shown to the minute, as ``ls -l`` does
_HUMANISERS: dict[str, Callable[[Any], str]] = {"bytes": human_bytes, "seconds": human_seconds,
                                               "time": human_time,
                                               "minute": lambda v: human_time(v)[:16]}


def humanised(value: Any, kind: str | None) -> Any:
    """``value`` as people read a column of ``kind``; None and text stay as they are."""
    if value is None or kind is None or isinstance(value, bool):
        return value
    if kind not in ("time", "minute") and not isinstance(value, (int, float)):
        return value
    return _HUMANISERS[kind](value)


def select_table(result: Result, name: str | None) -> Result:
    """``result`` with only the table called ``name`` (``--table``); an unknown
    name is a usage error listing the names."""
    if name is None:
        return result
    keys = [t.key(i) for i, t in enumerate(result.tables)]
    if name not in keys:
        raise UsageError(f"no table {name!r} in this output (tables: "
                         f"{', '.join(keys) or 'none'})")
    return replace(result, tables=[result.tables[keys.index(name)]])


# C0/C1 controls (but tab, newline and carriage return) and bidirectional
# overrides ("Trojan Source"): shown as escapes so a hostile name can neither
# rewrite a terminal line nor reorder what an auditor reads
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escaped(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


def visible(text: str) -> str:
    """``text`` with control and bidi-override characters as ``\\xNN``/``\\uNNNN``."""
    return _INVISIBLE.sub(lambda m: _escaped(m.group()), text)


def terminal_safe(value: Any) -> Any:
    """``value`` for a terminal: every character that is not printable (ESC, CR,
    newline, BEL, bidi overrides, zero-width and other format characters; spaces
    stay) written as a visible ``\\x1b``/``\\u202e`` escape, so text someone else
    typed can neither move the cursor, recolour, start a fake table row nor hide
    what a reviewer reads. Dicts and lists are walked; other values are returned
    as they are."""
    if isinstance(value, str):
        if value.isprintable():
            return value
        return "".join(ch if ch.isprintable() or unicodedata.category(ch) == "Zs" else _escaped(ch)
                       for ch in value)
    if isinstance(value, dict):
        return {k: terminal_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [terminal_safe(v) for v in value]
    return value


# --- the format registry ------------------------------------------------------------

Renderer = Callable[[Result], str]
_RENDERERS: dict[str, Renderer | str] = {}


def register_format(name: str, renderer: Renderer | str) -> None:
    """Make ``name`` a format: ``renderer(result) -> str``, or ``"module:function"``
    imported on first use (so Jinja2 and tabulate stay off the startup path)."""
    _RENDERERS[name] = renderer


def formats() -> tuple[str, ...]:
    """Every registered format, in registration order."""
    return tuple(_RENDERERS)


def offered(names: Iterable[str]) -> tuple[str, ...]:
    """The formats a command declares, checked against the registry (a typo in a
    command is a bug: ValueError at import, not a surprise for the user)."""
    names = tuple(names)
    unknown = [n for n in names if n not in _RENDERERS]
    if unknown:
        raise ValueError(f"format(s) not registered: {', '.join(unknown)}")
    return names


def renderer(fmt: str) -> Renderer:
    """The renderer of ``fmt``; an unknown format is a usage error (exit 2)."""
    spec = _RENDERERS.get(fmt)
    if spec is None:
        raise UsageError(f"unknown output format {fmt!r} (known: {', '.join(_RENDERERS)})")
    if isinstance(spec, str):
        module, _, attr = spec.partition(":")
        spec = _RENDERERS[fmt] = getattr(importlib.import_module(module), attr)
    return spec


def render_string(result: Result, fmt: str) -> str:
    """``result`` as ``fmt`` text (for files: reports, exports, evidence pages)."""
    return renderer(fmt)(result)


def render(result: Result, fmt: str, stream: TextIO) -> None:
    """Write ``result`` to ``stream`` in ``fmt``."""
    stream.write(render_string(result, fmt))


def render_table(table: Table) -> str:
    """One table as aligned text (what the 'table' format prints for each)."""
    from .render.text import table_text   # lazily: it needs tabulate
    return table_text(table)


def render_csv(tables: list[Table]) -> str:
    """The first of ``tables`` as CSV (the 'csv' format: one table per output)."""
    return render_string(Result(tables=tables), "csv")


register_format("table", "opskit.core.render.text:render")
register_format("json", "opskit.core.render.jsonfmt:render")
register_format("csv", "opskit.core.render.csvfmt:render")
register_format("md", "opskit.core.render.markdown:render")
register_format("html", "opskit.core.render.html:render")
register_format("junit", "opskit.core.render.junit:render")


