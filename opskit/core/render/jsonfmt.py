"""The 'json' format: the Result's data, else its tables by title."""
from __future__ import annotations

from opskit.core.output import Result, dumps


def render(result: Result) -> str:
    """Stable, readable JSON of ``result.data`` (tables keyed by title when None)."""
    payload = result.data
    if payload is None:
        payload = {t.title or f"table{i}": t.rows for i, t in enumerate(result.tables)}
    return dumps(payload) + "\n"
