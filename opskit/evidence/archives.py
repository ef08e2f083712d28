"""Evidence for archive control (R-AUD-6): the archive register of opskit.archives.

Every read of an archive snapshot needs an approval and is registered; every
destruction needs an approval and leaves a record; drills are exempt but
registered. The rule is met when the register's chain is intact and every read
and destruction of the period carries its approvers; a period with nothing read
or destroyed is *silent* (not applicable unless another source speaks)."""
from __future__ import annotations

import os

from .model import MET, NO_EVIDENCE, NOT_MET, Judgement, judge, source
from .packfiles import Context, iso, parse_when
from .text import T

RULE = "R-AUD-6"


@source("archives", RULE, title="Archive register (reads, drills, destructions)")
def archives(ctx: Context):
    from opskit.archives import register as archive_register
    reg = archive_register.register(ctx.state_dir)
    if not os.path.exists(reg.path):
        return [_silent(ctx, [])]
    entry = ctx.pack.copy(reg.path, "registers/archives.jsonl")
    items = [ctx.pack.item(entry, T("the archive register (reads, drills, destructions)"))]
    problem = reg.verify()
    if problem:
        return [judge(RULE, NOT_MET, T("register {register}: {problem}", register=reg.path,
                                       problem=problem), items)]
    period = [r for r in reg.records()
              if (when := parse_when(r.get("time"))) and ctx.since <= when <= ctx.now]
    if not [r for r in period if r.get("step") in ("access", "destroy")]:
        return [_silent(ctx, items, drills=len(period))]
    unapproved = [f"{r.get('step')} {r.get('time')}" for r in period
                  if r.get("step") in ("access", "destroy") and not r.get("approved_by")]
    if unapproved:
        return [judge(RULE, NOT_MET, T("without an approval: {list}",
                                       list=", ".join(unapproved[:5])), items)]
    count = {step: sum(1 for r in period if r.get("step") == step)
             for step in ("access", "drill", "destroy")}
    return [judge(RULE, MET, T("{reads} archive read(s) and {destroyed} destruction(s) in the "
                               "period, each approved and registered; {drills} drill(s) "
                               "registered", reads=count["access"],
                               destroyed=count["destroy"], drills=count["drill"]), items)]


def _silent(ctx: Context, items, drills: int = 0) -> Judgement:
    reason = T("not applicable: nothing recorded as read or destroyed in the archive register "
               "since {since} ({drills} drill(s) registered; register intact)",
               since=iso(ctx.since)[:10], drills=drills)
    return Judgement(RULE, NO_EVIDENCE, reason, items=items, silent=True)
