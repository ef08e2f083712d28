"""The 'md' format: a Markdown document for tickets and wikis -- the title,
the summary first, then every table (split into sections by ``group_by``).
Cell text is escaped: HTML, table pipes, emphasis and link syntax, control
characters (opskit.core.output.visible)."""
from __future__ import annotations

import html

from opskit.core.output import Result, Table, cell_text, visible

_SYNTAX = ("\\", "`", "*", "_", "[", "]")


def md_text(value) -> str:
    """One value as inert Markdown inline text."""
    text = html.escape(visible(cell_text(value)), quote=False)
    for ch in _SYNTAX:
        text = text.replace(ch, "\\" + ch)
    return text.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _grid(table: Table, columns: list[str], rows: list[dict]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    names = dict(zip(table.columns, table.header_names()))
    lines = ["| " + " | ".join(md_text(names[c]) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(md_text(table.shown(row, c)) for c in columns) + " |" for row in rows]
    return lines + [""]


def _section(table: Table) -> list[str]:
    lines = [f"## {md_text(table.title)}", ""] if table.title else []
    if not table.group_by:
        return lines + _grid(table, table.columns, table.rows)
    columns = [c for c in table.columns if c != table.group_by]
    titles = table.group_titles or {}
    for value, rows in table.groups():
        heading = " ".join(p for p in (value, titles.get(value, "")) if p)
        lines += [f"### {md_text(heading)} ({len(rows)})", ""]
        lines += _grid(table, columns, rows)
    return lines if table.rows else lines + ["(none)", ""]


def render(result: Result) -> str:
    """``result`` as one Markdown document."""
    lines = [f"# {md_text(result.title)}", ""] if result.title else []
    if result.summary:
        lines += [md_text(result.summary), ""]
    lines += [f"- {md_text(m)}" for m in result.messages if m]
    if result.messages:
        lines.append("")
    for table in result.tables:
        lines += _section(table)
    return "\n".join(lines).rstrip("\n") + "\n"
