"""Evidence from the incident, security-event, business-error and two-person
registers (issue #25): opskit.incidents.evidence_items, one entry per rule,
registered here as one more source. ``no items`` (nothing recorded in the
period, register intact) is *silent*: not applicable when no other source speaks
to the rule, never met."""
from __future__ import annotations

import json

from .model import MET, NO_EVIDENCE, NOT_MET, Judgement, judge, source
from .packfiles import Context, iso
from .text import T

VERDICTS = {"met": MET, "not met": NOT_MET}


@source("registers", "R-INC-1", "R-AUD-4", "R-AUD-5", "R-SEC-2",
        title="Incident, security-event, business-error and approval registers")
def registers(ctx: Context):
    from opskit.incidents import evidence_items
    out = []
    for entry in evidence_items(ctx.state_dir, ctx.since, ctx.now):
        rule = entry["rule"]
        written = ctx.pack.write(f"registers/{rule}.json",
                                 json.dumps(entry, indent=1, ensure_ascii=False, default=str)
                                 + "\n", entry.get("register"))
        item = ctx.pack.item(written, T("{title}: {count} item(s) in the period",
                                        title=_title(entry),
                                        count=len(entry.get("items") or [])))
        if entry.get("problem"):
            reason = T("register {register}: {problem}", register=entry.get("register"),
                       problem=entry["problem"])
        elif entry.get("verdict") == "no items":
            reason = T("not applicable: nothing recorded in {register} since {since} (register "
                       "intact; confirm nothing went unrecorded)",
                       register=entry.get("register"), since=iso(ctx.since)[:10])
            out.append(Judgement(rule, NO_EVIDENCE, reason, items=[item], silent=True))
            continue
        else:
            reason = T("{title}: {kept} deadline(s) kept, {missed} missed, {open} running",
                       title=_title(entry), kept=entry.get("kept", 0),
                       missed=entry.get("missed", 0), open=entry.get("open", 0))
        out.append(judge(rule, VERDICTS.get(entry.get("verdict"), NO_EVIDENCE), reason, [item]))
    return out


def _title(entry: dict) -> T | str:
    """The register's title, translated (opskit.incidents.evidence names four)."""
    return T(entry["title"]) if entry.get("title") else ""
