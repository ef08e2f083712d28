"""The 'csv' format, for scripts: one table per output (the first, or the one
``--table NAME`` chose), a header row naming units (``size_bytes``,
``duration_s``), raw values (bytes, seconds, ISO 8601 times), empty cells for
nothing; cells a spreadsheet would evaluate are neutralised
(opskit.core.output.csv_safe)."""
from __future__ import annotations

import csv
import io

from opskit.core.output import Result, csv_safe


def render(result: Result) -> str:
    """The first table of ``result`` as RFC 4180 CSV."""
    if not result.tables:
        return ""
    keys = [t.key(i) for i, t in enumerate(result.tables)]
    table = result.tables[keys.index(result.main) if result.main in keys else 0]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180: a bare CR in a cell gets quoted
    writer.writerow(table.csv_headers())
    for row in table.rows:
        writer.writerow([csv_safe(row.get(c)) for c in table.columns])
    return buf.getvalue()
