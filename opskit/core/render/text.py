"""The 'table' format: aligned tables for people, then the messages."""
from __future__ import annotations

from opskit.core.output import Result, Table, cell_text


def table_text(table: Table) -> str:
    """One table: its title, a header row and aligned rows; '(none)' when empty."""
    from tabulate import tabulate  # imported here: 40 ms that JSON output never needs
    rows = [[cell_text(row.get(c)) for c in table.columns] for row in table.rows]
    text = tabulate(rows, headers=table.header_names(), tablefmt="simple", disable_numparse=True)
    if not table.rows:
        text = "(none)"
    return f"{table.title}\n{text}" if table.title else text


def render(result: Result) -> str:
    """Tables separated by blank lines, then the messages; the summary alone
    when there is nothing else."""
    parts = ["\n\n".join(table_text(t) for t in result.tables)] if result.tables else []
    lines = list(result.messages) or ([result.summary] if not parts and result.summary else [])
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n" if parts else ""
