"""The 'table' format: aligned tables for people, then the messages."""
from __future__ import annotations

from opskit.core.output import Result, Table, cell_text, terminal_safe


def table_text(table: Table) -> str:
    """One table: its title, a header row and aligned rows; '(none)' when empty.
    Cells, headers and title go through terminal_safe: they hold names, reasons
    and values other people typed (a row's ESC or newline must not redraw the
    screen or fake a row in front of a reviewer)."""
    from tabulate import tabulate  # imported here: 40 ms that JSON output never needs
    rows = [[terminal_safe(cell_text(table.shown(row, c))) for c in table.columns] for row in table.rows]
    text = tabulate(rows, headers=terminal_safe(table.header_names()), tablefmt="simple",
                    disable_numparse=True)
    if not table.rows:
        text = "(none)"
    return f"{terminal_safe(table.title)}\n{text}" if table.title else text


def render(result: Result) -> str:
    """Tables separated by blank lines, then the messages; the summary alone
    when there is nothing else."""
    parts = ["\n\n".join(table_text(t) for t in result.tables)] if result.tables else []
    lines = list(result.messages) or ([result.summary] if not parts and result.summary else [])
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n" if parts else ""
