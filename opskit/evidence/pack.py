"""The auditor evidence pack (R-AUD-2): one verdict for every rule in
REQUIREMENTS.md -- met, not met, no evidence, or not applicable -- each with the
evidence behind it, copied with SHA-256 hashes into one folder, signed and
anchored in the audit log (seal.py), with a verifier that needs no opskit.

The evidence sources are registered per rule (model.source): backups.py,
checks.py, records.py. A rule no source speaks to is ``no evidence: not
implemented by opskit``. See docs/evidence.md for each verdict's conditions.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from typing import Callable

from opskit.core.audit import AuditLog
from opskit.core.errors import UsageError
from opskit.core.output import Result
from opskit.core.signing import Signer
from opskit.core.state import opskit_command

from . import archives, backups, checks, incidents, records  # noqa: F401  (registration)
from .cadence import default_periods, periods
from .i18n import translations
from .model import SOURCES, VERDICTS, Judgement, RuleVerdict, decide
from .packfiles import Context, Pack, iso
from .report import pack_result, render_html
from .rules import load_rules
from .seal import anchor, seal, ship_verifier

OPSKIT = opskit_command()
FORMAT = "opskit-evidence/2"


def prepare_out_dir(out_dir: str) -> None:
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise UsageError(f"--out {out_dir}: exists and is not a directory")
        if os.listdir(out_dir):
            raise UsageError(f"--out {out_dir}: not an empty directory",
                             hint="give a new directory; an evidence pack is never mixed "
                                  "with other files")
    os.makedirs(out_dir, mode=0o700, exist_ok=True)


def subprocess_runner(global_args: list[str], timeout: float = 900.0):
    """Run ``opskit ARGS`` as a child (same config, same interpreter)."""
    def run(args: list[str]) -> tuple[int, str, str]:
        try:
            proc = subprocess.run([*OPSKIT, *global_args, *args], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 3, "", f"opskit: error: timed out after {timeout:g}s"
        return proc.returncode, proc.stdout, proc.stderr
    return run


def collect(ctx: Context) -> dict[str, list[Judgement]]:
    """Every registered source's judgements, by rule id."""
    by_rule: dict[str, list[Judgement]] = {}
    for src in SOURCES.values():
        for j in src.func(ctx):
            j.source = j.source or src.name
            by_rule.setdefault(j.rule, []).append(j)
    return by_rule


def verdicts(ctx: Context, not_applicable: dict[str, str] | None = None
             ) -> tuple[list[RuleVerdict], list, dict]:
    """(one verdict per rule id, the rules, where the rule list came from)."""
    rules, origin = load_rules()
    na = declarations(not_applicable, {r.id for r in rules})
    by_rule = collect(ctx)
    out = [decide(r.id, by_rule.get(r.id, []), na.get(r.id)) for r in rules]
    return out, rules, origin


def declarations(not_applicable: dict | None, known: set[str]) -> dict[str, str]:
    """The site's n/a declarations (config ``evidence.not_applicable``) without the
    '<name>' templates; an unknown rule id or a missing reason is a config error."""
    out = {}
    for rid, reason in (not_applicable or {}).items():
        if str(rid).startswith("<"):
            continue
        if rid not in known:
            raise UsageError(f"evidence.not_applicable.{rid}: no such rule in "
                             "REQUIREMENTS.md", hint="use a rule id such as R-NET-3")
        if not str(reason or "").strip():
            raise UsageError(f"evidence.not_applicable.{rid}: a reason is required",
                             hint='R-NET-3: "no wireless hardware (asset register 2026-11)"')
        out[rid] = str(reason).strip()
    return out


def declared(results: list[RuleVerdict]) -> list[dict]:
    """Every n/a declaration with whether it was accepted, for the audit entry."""
    return [{"rule": r.rule, **r.declared} for r in results if r.declared]


def counts(results: list[RuleVerdict]) -> dict[str, int]:
    return {v: sum(1 for r in results if r.verdict == v) for v in VERDICTS}


def build_pack(out_dir: str, *, state_dir: str, audit_log: str, since: dt.datetime,
               run: Callable[[list[str]], tuple[int, str, str]], signer: Signer,
               now: dt.datetime | None = None, meta: dict | None = None,
               sites: list[dict] | None = None, repo: str | None = None,
               include_data: bool = False, lang: str = "en",
               not_applicable: dict[str, str] | None = None, schedule=None,
               anchor_dirs: list[str] | None = None,
               anchor_keys: dict[bytes, str] | None = None) -> Result:
    """Judge every rule, write the evidence into ``out_dir``, seal and sign it.
    Signed audit checkpoints are read from ``anchor_dirs`` (default: the local copies
    beside the log); the pack's signer and ``anchor_keys`` are trusted to sign them."""
    prepare_out_dir(out_dir)
    meta = dict(meta or {})
    now = now or dt.datetime.now(dt.timezone.utc)
    pack = Pack(out_dir)
    ctx = Context(state_dir, audit_log, pack, since, now, run, sites or [], repo, include_data,
                  periods(schedule) if schedule is not None else default_periods())
    ctx.anchor_dirs = anchor_dirs if anchor_dirs is not None else [AuditLog(audit_log).anchors_dir]
    ctx.anchor_keys = {signer.public_raw: "pack signer", **(anchor_keys or {})}
    results, rules, origin = verdicts(ctx, not_applicable)
    bad = [r for r in results if not r.ok]
    tally = counts(results)
    summary = (f"evidence pack {pack.dir}: {tally['met']}/{len(results)} rules met, "
               f"{tally['not met']} not met, {tally['no evidence']} no evidence "
               f"({sum(1 for r in results if not r.implemented)} not implemented by opskit)"
               + (f"; NOT met or no evidence: {', '.join(r.rule for r in bad)}" if bad else ""))
    manifest = {
        "format": FORMAT, "generated": iso(now), "since": iso(since), "lang": lang,
        "include_data": include_data, **meta,
        "rules_source": {k: v for k, v in origin.items() if k != "sources"},
        "documents": origin.get("sources", {}),
        "summary": {"ok": not bad, "counts": tally, "text": summary},
        "not_applicable": declared(results),
        "rules": [dict(r.as_dict(), **_rule_text(rules, r.rule)) for r in results],
    }
    if ctx.cache.get("ledger_file"):
        manifest["ledger"] = {"file": ctx.cache["ledger_file"]}
    pack.write("rules.json", json.dumps(manifest["rules"], indent=1, ensure_ascii=False) + "\n")
    gettext = translations(lang).gettext          # the page: reasons in its language too
    page = dict(manifest, rules=[dict(r.as_dict(gettext), **_rule_text(rules, r.rule))
                                 for r in results])
    pack.write("index.html", render_html(page, lang))
    ship_verifier(pack)
    manifest["audit_anchor"] = anchor(
        pack, audit_log, operator=str(meta.get("operator", "")), host=str(meta.get("host", "")),
        details={"include_data": include_data, "signer": signer.fingerprint,
                 "not_met": [r.rule for r in bad], "not_applicable": declared(results)})
    sealed = seal(pack, manifest, signer)
    return pack_result(pack.dir, results, manifest, sealed)


def _rule_text(rules, rid: str) -> dict:
    for r in rules:
        if r.id == rid:
            return {"en": r.en, "zh": r.zh, "zh_terms": r.zh_terms, "source_ref": r.source}
    return {}
