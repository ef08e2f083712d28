"""Per-rule evidence of this package for the evidence pack (#25 item 6).

``evidence_items(state_dir, since, now)`` returns one entry per rule::

    {"rule": "R-INC-1", "title": ..., "register": path, "register_intact": bool,
     "problem": None | text, "items": [{"id", "date", "deadlines": [...]}, ...],
     "kept": n, "missed": n, "open": n, "verdict": "met" | "not met" | "no items"}

An item belongs to the period when it started (detected, happened, approved)
at or after ``since``. The verdict is ``met`` only when every deadline of
every item in the period was kept or is still running, and the register's
hash chain is intact; ``no items`` when nothing happened (the pack decides
how to show that). The evidence engineer registers this function.
"""
from __future__ import annotations

import datetime as _dt

from . import business, clocks, events, incidents, twoperson


def _entry(rule: str, title: str, reg, items: list[dict], now: _dt.datetime) -> dict:
    problem = reg.verify()
    states = [d["state"] for item in items for d in item["deadlines"]]
    counts = {s: states.count(s) for s in (clocks.KEPT, clocks.MISSED, clocks.OPEN)}
    if problem or counts[clocks.MISSED]:
        verdict = "not met"
    else:
        verdict = "met" if items else "no items"
    return {"rule": rule, "title": title, "register": reg.path,
            "register_intact": problem is None, "problem": problem, "items": items,
            **counts, "verdict": verdict, "as_of": clocks.iso(now)}


def _incident_items(state_dir: str, since: _dt.datetime, now: _dt.datetime) -> list[dict]:
    return [{"id": i.id, "date": clocks.iso(i.detected_at), "grade": i.grade, "type": i.type,
             "state": i.state, "automatic": i.automatic,
             "deadlines": [d.row(now) for d in i.deadlines()]}
            for i in incidents.load(state_dir).values() if i.detected_at >= since]


def _event_items(state_dir: str, since: _dt.datetime, now: _dt.datetime) -> list[dict]:
    out = []
    for e in events.load(state_dir):
        if clocks.parse_when(e["at"]) < since:
            continue
        out.append({"id": e["event"], "date": e["at"],
                    **{f: e[f] for f in events.FIELDS},
                    "deadlines": [events.deadline(e).row(now)]})
    return out


def _error_items(state_dir: str, since: _dt.datetime, now: _dt.datetime) -> list[dict]:
    return [{"id": e.id, "date": clocks.iso(e.occurred), "grade": e.grade, "state": e.state,
             "reviewed_by": [r["by"] for r in e.reviews],
             "corrections": (e.rectification or {}).get("corrections", []),
             "deadlines": [d.row(now) for d in e.deadlines()]}
            for e in business.load(state_dir).values() if e.occurred >= since]


def _approval_items(state_dir: str, since: _dt.datetime) -> list[dict]:
    """Each high-risk run (a ``use`` record) with the approvals it used; no clocks."""
    return [{"id": f"use-{r['seq']}", "date": r["time"], "operation": r["operation"],
             "subject": r["subject"], "run_by": r["actor"], "approved_by": r["reviewers"],
             "deadlines": []}
            for r in twoperson.register(state_dir).records()
            if r.get("step") == "use" and clocks.parse_when(r["time"]) >= since]


def evidence_items(state_dir: str, since: _dt.datetime, now: _dt.datetime) -> list[dict]:
    """Evidence for R-INC-1, R-AUD-4, R-AUD-5 and R-SEC-2 over [since, now]."""
    return [
        _entry("R-INC-1", "Incidents graded, reported and rectified in time",
               incidents.register(state_dir), _incident_items(state_dir, since, now), now),
        _entry("R-AUD-4", "Security events recorded within 24 h with the six fields",
               events.register(state_dir), _event_items(state_dir, since, now), now),
        _entry("R-AUD-5", "Business errors reported, reviewed and rectified in time",
               business.register(state_dir), _error_items(state_dir, since, now), now),
        _entry("R-SEC-2", "High-risk operations run only with a second person's approval",
               twoperson.register(state_dir), _approval_items(state_dir, since), now),
    ]
