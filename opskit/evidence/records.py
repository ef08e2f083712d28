"""Evidence from opskit's own records: the audit log (R-DAT-1, R-AUD-1, R-AUD-3) with
the access decisions it records re-checked against the roster's keys (R-ACC-3,
R-ACC-5), and the corrections ledger (R-DAT-1/2/3/5, R-SEC-2, R-AUD-1). An empty log or
ledger, or one that does not reach back to the start of the period, is never
evidence that a rule is met."""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile

from opskit.core.anchors import AnchorSet, collect, verify_with_anchors
from opskit.core.audit import AuditLog
from opskit.core.errors import OperationalError

from .model import MET, NO_EVIDENCE, NOT_MET, Item, Judgement, judge, source
from .packfiles import Context, first_error, iso, parse_when
from .privacy import redact_entry
from .text import T

AUDIT_FILE = "audit/audit.log"            # copied when the pack is sealed (seal.py)
NEWEST_ANCHORS = 7                        # a week of daily signed checkpoints


@source("audit-log", "R-DAT-1", "R-AUD-1", "R-AUD-3", "R-ACC-3", "R-ACC-5", title="Audit log")
def audit_log(ctx: Context):
    return [*_log_integrity(ctx), *_access_decisions(ctx)]


def _log_integrity(ctx: Context):
    """The log's own chain and anchors, and whether it covers the period."""
    rules = ("R-DAT-1", "R-AUD-1", "R-AUD-3")
    log = AuditLog(ctx.audit_log)
    if not os.path.exists(log.path):
        return [judge(r, NO_EVIDENCE, T("no audit log at {path}", path=log.path)) for r in rules]
    anchors = _anchors(ctx, log)
    report = verify_with_anchors(log, anchors)
    entry = ctx.pack.write("audit/verify.json", json.dumps(report.to_dict(), indent=2) + "\n",
                           "opskit audit verify")
    items = [ctx.pack.item(entry, T("audit log verification at pack time")),
             Item(T("the audit log up to the pack's own entry"), AUDIT_FILE),
             *_carry_anchors(ctx, anchors)]
    if not report.ok:
        why = T("R-AUD-3: {problem}", problem=report.describe())
        return [judge(r, NOT_MET, why, items) for r in rules]
    first = next(iter(log.entries()), None)
    start = parse_when(first.get("time")) if first else None
    if start is None:
        return [judge(r, NO_EVIDENCE, T("the audit log is empty"), items) for r in rules]
    if start > ctx.since:
        days = (ctx.now - start).total_seconds() / 86400
        why = T("the audit log starts {start} ({days} days ago): the period from {since} is "
                "not covered", start=iso(start), days=f"{days:.0f}", since=iso(ctx.since)[:10])
        return [judge(r, NOT_MET, why, items) for r in rules]
    why = T("{verification}; kept since {start}; {anchors}", verification=_describe(report),
            start=iso(start)[:10], anchors=_anchor_note(anchors))
    return [judge(r, MET, why, items) for r in rules]


def _access_decisions(ctx: Context):
    """'opskit access verify': every request file and every access decision the log
    records, signed by a key the roster registers for that person, two distinct keys for
    a special-tier request. Nothing to check is silent; no roster is no evidence."""
    rules = ("R-ACC-3", "R-ACC-5")
    code, stdout, err = ctx.run(["access", "verify", "--json"])
    try:
        data = json.loads(stdout) if code in (0, 1) else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        why = T("cannot re-check the access decisions: {error}", error=first_error(err, stdout))
        return [judge(r, NO_EVIDENCE, why) for r in rules]
    if not data.get("requests") and not data.get("decisions"):
        return [Judgement(r, NO_EVIDENCE, T("no access requests or decisions to re-check"),
                          silent=True) for r in rules]
    entry = ctx.pack.write("audit/access-verify.json", json.dumps(data, indent=2) + "\n",
                           "opskit access verify")
    items = [ctx.pack.item(entry, T("access decisions re-checked against the roster's "
                                    "signing keys"))]
    if data.get("warning"):
        why = T("access decisions not re-checked: {warning}", warning=data["warning"])
        return [judge(r, NO_EVIDENCE, why, items) for r in rules]
    out = []
    for rule in rules:
        bad = [f for f in data.get("findings") or [] if rule == "R-ACC-3" or f["rule"] == rule]
        if bad:
            why = T("{count} forged or unmatched access decision(s): {list}", count=len(bad),
                    list="; ".join(f"{f['request']} {f['entry']}: {f['problem']}" for f in bad))
            out.append(judge(rule, NOT_MET, why, items))
        else:
            out.append(judge(rule, MET, T(
                "{requests} access request(s) and {decisions} decision(s) in the audit log "
                "each signed by a key the roster registers for its person; special-tier "
                "requests by two distinct keys", requests=data.get("requests", 0),
                decisions=data.get("decisions", 0)), items))
    return out


def _describe(report) -> T:
    """``audit verify``'s one line for an intact log, translatable."""
    return T("audit log intact: {count} entries, head {head}", count=report.entries_checked,
             head=report.head[1][:12] if report.head else "-")


def _anchors(ctx: Context, log: AuditLog) -> AnchorSet:
    """Signed checkpoints of this log (a directory that cannot be read is a finding; so is
    an off-site one, audit.anchor_dir, that is missing or holds nothing of this log)."""
    local = os.path.abspath(log.anchors_dir)
    offsite = [d for d in ctx.anchor_dirs if os.path.abspath(d) != local]
    try:
        return collect(ctx.anchor_dirs, log.path, socket.gethostname(), ctx.anchor_keys,
                       required=offsite)
    except OperationalError as exc:
        return AnchorSet(problems=[str(exc)])


def _carry_anchors(ctx: Context, anchors: AnchorSet) -> list[Item]:
    """The newest signed checkpoints go into the pack: a copy that leaves the machine."""
    out = []
    for cp in anchors.newest(NEWEST_ANCHORS):
        entry = ctx.pack.copy(cp["_file"], f"audit/anchors/{os.path.basename(cp['_file'])}")
        out.append(ctx.pack.item(entry, T("signed audit checkpoint, seq {seq}", seq=cp["seq"]),
                                 parse_when(cp.get("time"))))
    return out


def _anchor_note(anchors: AnchorSet) -> T:
    if not anchors.checkpoints:
        return T("no signed checkpoint: entries cut from the end would not show "
                 "(schedule 'opskit audit checkpoint --sign', docs/audit-log.md)")
    newest = anchors.newest(1)[0]
    return T("checked against {count} signed checkpoint(s), newest seq {seq} of {date}",
             count=len(anchors.checkpoints), seq=newest["seq"],
             date=str(newest.get("time", "?"))[:10])


def _export(ctx: Context) -> tuple[list[str] | None, str | None]:
    """The ledger's stored entry texts via 'correct export' (outside the pack)."""
    tmp = tempfile.mkdtemp(prefix="opskit-evidence-")
    try:
        out = os.path.join(tmp, "ledger.json")
        code, stdout, err = ctx.run(["correct", "export", "--format", "json", "--out", out])
        if code != 0 or not os.path.exists(out):
            return None, T("cannot export the correction ledger: {error}",
                           error=first_error(err, stdout))
        with open(out, encoding="utf-8") as fh:
            entries = json.load(fh).get("entries")
        return (entries if isinstance(entries, list) else []), None
    except (OSError, ValueError, AttributeError) as exc:
        return None, T("cannot read the ledger export: {error}", error=exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_ledger(ctx: Context, texts: list[str]) -> Item:
    """The ledger in the pack: whole with --include-data, else redacted (privacy.py)."""
    if ctx.include_data:
        payload, rel = {"format": "opskit-corrections-ledger-export", "entries": texts}, \
            "corrections/ledger.json"
    else:
        payload, rel = {"format": "opskit-evidence-ledger-redacted/1",
                        "entries": [redact_entry(t) for t in texts]}, \
            "corrections/ledger-redacted.json"
    entry = ctx.pack.write(rel, json.dumps(payload, indent=1, ensure_ascii=False) + "\n",
                           "opskit correct export --format json")
    ctx.cache["ledger_file"] = rel
    return ctx.pack.item(entry, T("correction ledger, {count} entries", count=len(texts))
                         if ctx.include_data else
                         T("correction ledger, {count} entries (personal data as hashes and "
                           "row keys)", count=len(texts)))


def _requests(ctx: Context, texts: list[str]) -> dict[str, dict]:
    """Requests made in the period: {id: {request, approvers, applied, ticket, ...}}."""
    reqs: dict[str, dict] = {}
    for text in texts:
        e = json.loads(text)["signed"]
        rid, kind = e.get("request"), e.get("kind")
        if kind == "request":
            when = parse_when(e.get("time"))
            if when is not None and when >= ctx.since:
                reqs[rid] = {"requester": e.get("actor"), "approvers": set(), "applied": False,
                             "ticket": (e.get("body") or {}).get("ticket")}
        elif rid in reqs and kind == "approve":
            reqs[rid]["approvers"].add(e.get("actor"))
        elif rid in reqs and kind == "applied":
            reqs[rid]["applied"] = True
    return reqs


@source("ledger", "R-DAT-1", "R-DAT-2", "R-DAT-3", "R-DAT-5", "R-SEC-2", "R-AUD-1",
        title="Corrections ledger")
def ledger(ctx: Context):
    rules = ("R-DAT-1", "R-DAT-2", "R-DAT-3", "R-DAT-5", "R-SEC-2", "R-AUD-1")
    code, stdout, err = ctx.run(["correct", "verify", "--json"])
    if code not in (0, 1):
        why = T("cannot verify the correction ledger: {error}", error=first_error(err, stdout))
        return [judge(r, NO_EVIDENCE, why) for r in rules]
    entry = ctx.pack.write("corrections/verify.json", stdout, "opskit correct verify --json")
    items = [ctx.pack.item(entry, T("correction ledger verification at pack time"))]
    try:
        report = json.loads(stdout)
    except ValueError:
        report = {"ok": False, "problem": "unreadable verify output"}
    if not report.get("ok"):
        why = T("correction ledger verification FAILED: {problem}", problem=report.get("problem"))
        return [judge(r, NOT_MET, why, items) for r in rules]
    texts, error = _export(ctx)
    if error:
        return [judge(r, NO_EVIDENCE, error, items) for r in rules]
    items.append(_write_ledger(ctx, texts))
    reqs = _requests(ctx, texts)
    if not reqs:
        why = T("the ledger holds no correction request since {since} ({count} entries in "
                "all): nothing shows the rule followed", since=iso(ctx.since)[:10],
                count=len(texts))
        return [judge(r, NO_EVIDENCE, why, items) for r in rules]
    applied = {k: v for k, v in reqs.items() if v["applied"]}
    unreviewed = sorted(k for k, v in applied.items() if not v["approvers"] - {v["requester"]})
    no_ticket = sorted(k for k, v in reqs.items() if not v["ticket"])
    base = T("ledger intact: {count} request(s) in the period, {applied} applied",
             count=len(reqs), applied=len(applied))
    none_applied = T("{base}: no applied correction", base=base)
    review = (NOT_MET, T("applied without approval by a second person: {ids}",
                         ids=", ".join(unreviewed))) \
        if unreviewed else (MET if applied else NO_EVIDENCE,
                            T("{base}; each applied one approved by someone other than its "
                              "requester", base=base) if applied else none_applied)
    return [judge("R-DAT-1", MET, T("{base}; each with operator, time and content", base=base),
                  items),
            judge("R-AUD-1", MET if applied else NO_EVIDENCE,
                  T("{base}; outcomes (after-image digests) recorded", base=base) if applied
                  else none_applied, items),
            *[judge(r, *review, items) for r in ("R-DAT-2", "R-DAT-3", "R-SEC-2")],
            judge("R-DAT-5", NOT_MET if no_ticket else MET,
                  T("requests without a voucher or ticket: {ids}", ids=", ".join(no_ticket))
                  if no_ticket else
                  T("{base}; every request names its voucher or ticket", base=base), items)]
