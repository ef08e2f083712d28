"""Results (tables, JSON, summaries) of the incident, event, error and approval commands."""
from __future__ import annotations

import datetime as _dt

from opskit.core.errors import EXIT_FINDINGS, EXIT_OK
from opskit.core.output import Result, Table

from . import clocks

INCIDENT_COLUMNS = ["id", "state", "grade", "type", "place", "detected_at", "next_deadline",
                    "missed"]
DEADLINE_COLUMNS = ["deadline", "rule", "due", "done", "state"]


def incident_step_result(inc, now: _dt.datetime, headline: str) -> Result:
    """After open/update/report/close: the incident and its clocks."""
    data = inc.to_dict(now)
    return Result(data=data, messages=[headline] + _deadline_lines(data["deadlines"]),
                  summary=headline)


def _deadline_lines(rows: list[dict]) -> list[str]:
    return [f"  {r['deadline']:<16} due {r['due']}  {r['state']}"
            + (f" (done {r['done']})" if r["done"] else "") for r in rows]


def incident_list_result(incidents: list, now: _dt.datetime) -> Result:
    rows = [inc.row(now) for inc in incidents]
    n_open = sum(1 for r in rows if r["state"] == "open")
    summary = f"{len(rows)} incident(s), {n_open} open"
    return Result(data=rows, tables=[Table(INCIDENT_COLUMNS, rows, title="Incidents")],
                  messages=[summary], summary=summary)


def incident_show_result(inc, now: _dt.datetime) -> Result:
    data = inc.to_dict(now)
    facts = [{"field": k, "value": data[k]} for k in
             ("id", "state", "grade", "type", "place", "scope", "description", "detected_at",
              "opened_by", "automatic")]
    if inc.evidence:
        facts.append({"field": "evidence", "value": inc.evidence.get("copy")
                      or inc.evidence.get("source")})
    history = ([{"step": "update", **u} for u in inc.updates]
               + [{"step": f"report to {r['to']}", **r} for r in inc.reports]
               + ([{"step": "close", **inc.closure}] if inc.closure else []))
    history.sort(key=lambda h: h["at"])
    tables = [Table(["field", "value"], facts, title=inc.id),
              Table(DEADLINE_COLUMNS, data["deadlines"], title="Deadlines (R-INC-1)"),
              Table(["at", "step", "by"], history, title="History")]
    return Result(data=data, tables=tables, summary=f"{inc.id}: {inc.state}")


def overdue_result(rows: list[dict], now: _dt.datetime) -> Result:
    """Exit 1 naming each missed deadline (the hourly job's finding)."""
    lines = [f"{r['id']} ({r['grade']}, {r['type']}): {r['deadline']} was due {r['due']}"
             + (f", done {r['done']}" if r["done"] else ", not done") for r in rows]
    summary = (f"{len(rows)} missed incident deadline(s): "
               + ", ".join(f"{r['id']} {r['deadline']}" for r in rows)) if rows else \
        f"no incident deadline missed as of {clocks.iso(now)}"
    return Result(data={"as_of": clocks.iso(now), "missed": rows},
                  tables=[Table(["id", "grade", "type", "deadline", "due", "done"], rows,
                                title="Missed deadlines (R-INC-1)")] if rows else [],
                  messages=lines + [summary], summary=summary,
                  exit_code=EXIT_FINDINGS if rows else EXIT_OK)


EVENT_COLUMNS = ["id", "at", "place", "type", "scope", "measures", "responsible", "recorded",
                 "in_time"]


def event_result(row: dict) -> Result:
    headline = (f"recorded security event {row['id']} ({row['type']} at {row['place']})"
                + ("" if row["in_time"] else "; recorded LATE (R-AUD-4: within 24 h)"))
    return Result(data=row, messages=[headline], summary=headline)


def event_list_result(rows: list[dict]) -> Result:
    late = [r["id"] for r in rows if not r["in_time"]]
    summary = f"{len(rows)} security event(s)" + (f", {len(late)} recorded late" if late else "")
    return Result(data=rows, tables=[Table(EVENT_COLUMNS, rows, title="Security events "
                                           "(R-AUD-4)")], messages=[summary], summary=summary)


def prune_result(dropped: int, before: str) -> Result:
    text = f"pruned {dropped} security event(s) recorded before {before}"
    return Result(data={"pruned": dropped, "before": before}, messages=[text], summary=text)


def verify_result(problems: dict[str, str | None]) -> Result:
    rows = [{"register": k, "ok": v is None, "problem": v} for k, v in problems.items()]
    bad = [r["register"] for r in rows if not r["ok"]]
    summary = ("registers intact: " + ", ".join(problems)) if not bad else \
        "register verification FAILED: " + "; ".join(problems[b] for b in bad)
    return Result(data=rows, tables=[Table(["register", "ok", "problem"], rows)],
                  messages=[summary], summary=summary,
                  exit_code=EXIT_FINDINGS if bad else EXIT_OK)
