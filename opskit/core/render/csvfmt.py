"""The 'csv' format: every table with a header row, separated by a blank line;
cells a spreadsheet would evaluate are neutralised (opskit.core.output.csv_safe)."""
from __future__ import annotations

import csv
import io

from opskit.core.output import Result, csv_safe


def render(result: Result) -> str:
    """The tables of ``result`` as RFC 4180 CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180: a bare CR in a cell gets quoted
    for i, table in enumerate(result.tables):
        if i:
            buf.write("\n")
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow([csv_safe(row.get(c)) for c in table.columns])
    return buf.getvalue()
