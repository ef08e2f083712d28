"""What the evidence pack shows: the verdict table for the terminal and the
pack's index.html (summary first, then rule -> evidence -> verdict), both as
Results rendered by opskit.core.output (R-AUD-2)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from opskit.core.output import Result, Table, render_string

if TYPE_CHECKING:
    from .pack import Outcome

HOUR = 3600.0
DAY = 86400.0
COLUMNS = ["check", "rules", "newest", "age", "max_age", "verdict", "reason"]


def human_age(seconds: float | None) -> str:
    """'40 d', '26 h', '12 min'; None is a check verified when the pack is made."""
    if seconds is None:
        return "at pack time"
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.1f} d".replace(".0 d", " d")
    if seconds >= HOUR:
        return f"{seconds / HOUR:.1f} h".replace(".0 h", " h")
    return f"{seconds / 60:.0f} min"


def index_result(manifest: dict) -> Result:
    """The pack's index page (evidence/templates/index.html) over ``manifest``."""
    ok = manifest["summary"]["ok"]
    overall = ("ALL COVERED RULES HAVE FRESH, CLEAN EVIDENCE" if ok else
               "ATTENTION: SOME RULES LACK FRESH OR CLEAN EVIDENCE")
    return Result(data=manifest, title="opskit evidence pack",
                  summary=manifest["summary"].get("text", overall),
                  template="evidence/index.html",
                  context={"overall": overall, "human_age": human_age})


def render_html(manifest: dict) -> str:
    """Self-contained index.html: summary first, then rule -> evidence -> verdict."""
    return render_string(index_result(manifest), "html")


def _row(o: Outcome) -> dict:
    return {"check": o.check.key, "rules": ", ".join(o.check.rules), "newest": o.newest or "-",
            "age": human_age(o.age_s) if o.age_s is not None else "-",
            "max_age": human_age(o.check.interval),
            "verdict": o.verdict.upper() if o.verdict != "ok" else "ok", "reason": o.reason}


def pack_result(pack_dir: str, outcomes: list[Outcome], manifest: dict,
                manifest_sha256: str) -> Result:
    """The Result of ``opskit evidence``: one row per check, exit 1 unless all ok."""
    summary = manifest["summary"]
    data = {"out": pack_dir, "manifest": os.path.join(pack_dir, "manifest.json"),
            "manifest_sha256": manifest_sha256, "index": os.path.join(pack_dir, "index.html"),
            "ok": summary["ok"], "counts": summary["counts"], "checks": manifest["checks"]}
    messages = [summary["text"], f"open {os.path.join(pack_dir, 'index.html')}; "
                                 f"verify with: cd {pack_dir} && sha256sum -c SHA256SUMS"]
    return Result(data=data, tables=[Table(COLUMNS, [_row(o) for o in outcomes],
                                           headers={"max_age": "MAX AGE"})],
                  messages=messages, summary=summary["text"], exit_code=0 if summary["ok"] else 1)
