"""What the evidence pack shows: one row per rule for the terminal, and the
pack's index.html (summary first, then every rule with its Chinese and English
text, source, verdict, evidence and periods), both as Results rendered by
opskit.core.output (R-AUD-2). Text is translated through gettext (i18n.py)."""
from __future__ import annotations

import os

from opskit.core.output import Result, Table, render_string

from .i18n import translations

COLUMNS = ["rule", "verdict", "reason"]


def index_result(manifest: dict, lang: str = "en") -> Result:
    """The pack's index page (evidence/templates/index.html) over ``manifest``."""
    _ = translations(lang).gettext
    ok = manifest["summary"]["ok"]
    overall = (_("Every rule opskit implements is met or declared not applicable.") if ok else
               _("ATTENTION: some rules are not met or have no evidence."))
    return Result(data=manifest, title=_("opskit evidence pack"),
                  summary=manifest["summary"].get("text", overall),
                  template="evidence/index.html",
                  context={"overall": overall, "_": _, "lang": lang,
                           "verdict_label": lambda v: _(v)})


def render_html(manifest: dict, lang: str = "en") -> str:
    """Self-contained index.html."""
    return render_string(index_result(manifest, lang), "html")


def pack_result(pack_dir: str, results, manifest: dict, sealed: dict) -> Result:
    """The Result of ``opskit evidence``: one row per rule; exit 1 when a rule
    opskit implements is not met or has no evidence."""
    summary = manifest["summary"]
    data = {"out": pack_dir, "manifest": os.path.join(pack_dir, "manifest.json"),
            "index": os.path.join(pack_dir, "index.html"), **sealed,
            "audit_anchor": manifest["audit_anchor"], "ok": summary["ok"],
            "counts": summary["counts"], "rules": manifest["rules"],
            "not_applicable": manifest.get("not_applicable", [])}
    rows = [{"rule": r.rule, "verdict": r.verdict.upper() if not r.ok else r.verdict,
             "reason": str(r.reason)[:300]} for r in results]
    messages = [summary["text"], f"open {data['index']}; verify with: "
                                 f"python3 {os.path.join(pack_dir, 'verify.py')} "
                                 f"(or opskit evidence verify {pack_dir})"]
    return Result(data=data, tables=[Table(COLUMNS, rows)], messages=messages,
                  summary=summary["text"], exit_code=0 if summary["ok"] else 1)


def verify_result(pack_dir: str, problems: list[str], signer: str | None) -> Result:
    """``opskit evidence verify DIR``: exit 1 naming each file that fails."""
    summary = (f"evidence pack {pack_dir} verified: hashes, signature ({signer}), audit and "
               "ledger chains" if not problems else
               f"evidence pack {pack_dir} FAILED verification: {len(problems)} problem(s)")
    return Result(data={"pack": pack_dir, "ok": not problems, "signer": signer,
                        "problems": problems},
                  tables=[Table(["problem"], [{"problem": p} for p in problems])]
                  if problems else [], messages=[summary], summary=summary,
                  exit_code=1 if problems else 0)
