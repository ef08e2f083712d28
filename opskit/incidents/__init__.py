"""Incidents, security events, business errors and two-person review: the duties
with deadlines (R-INC-1, R-AUD-4, R-AUD-5, R-SEC-2; docs/incidents.md).

CONTRACT (what other packages call):
  open_automatic(state_dir, kind, detail, evidence_path)  an incident opskit detected itself
  evidence_items(state_dir, since, now)                   per-rule evidence for the pack
  twoperson.required(...) / twoperson.check(...)          the R-SEC-2 gate of a high-risk command
"""
from __future__ import annotations


def open_automatic(state_dir: str, kind: str, detail: str, evidence_path: str | None = None,
                   **kwargs):
    """See ``opskit.incidents.incidents.open_automatic``."""
    from .incidents import open_automatic as _open
    return _open(state_dir, kind, detail, evidence_path, **kwargs)


def evidence_items(state_dir: str, since, now):
    """See ``opskit.incidents.evidence.evidence_items``."""
    from .evidence import evidence_items as _items
    return _items(state_dir, since, now)
