"""Evidence from the periodic checks: stored ``policy check`` runs (R-MED-*,
R-NET-*, R-AUD-2) and stored ``perms report`` records (R-ACC-*, R-AUD-3, R-AUD-2).

Regularity comes from every run/report in the period (policy: one a day;
permission review: one a week); the verdict on each rule from the newest one.
A rule is met only when that newest one has, on every host, a check of the rule
that passed and none that failed, errored or was switched off by the policy; a
host whose checks were all n/a is no evidence.
"""
from __future__ import annotations

import os

from opskit.core.keep import id_time
from opskit.core.state import StateLayout

from .model import MET, NO_EVIDENCE, NOT_MET, judge, not_implemented, source
from .packfiles import Context, iso, json_files, parse_when, read_json, sha256_file
from .text import T, join

POLICY_RULES = ("R-MED-1", "R-MED-2", "R-NET-1", "R-NET-2", "R-NET-3", "R-NET-4", "R-NET-5")
PERMS_RULES = ("R-ACC-1", "R-ACC-2", "R-ACC-3", "R-ACC-4", "R-ACC-5", "R-ACC-6", "R-ACC-8",
               "R-AUD-3")
DISABLED = ("disabled by the policy",)


def _in_period(ctx: Context, folder: str, names: list[str], key: str, when_of=None):
    """[(time, name)] of stored records inside the period, oldest first."""
    found = []
    for name in names:
        when = when_of(name) if when_of else None
        if when is None:
            data = read_json(os.path.join(folder, name))
            when = parse_when(data.get(key)) if isinstance(data, dict) else None
        if when is not None and ctx.since <= when <= ctx.now:
            found.append((when, name))
    return sorted(found)


def _index(ctx: Context, folder: str, found, rel: str, what: str):
    """A pack file listing every record of the period with its SHA-256 (the
    originals stay in the state directory: the hashes pin them)."""
    lines = "".join(f"{sha256_file(os.path.join(folder, n))}  {iso(t)}  {n}\n" for t, n in found)
    entry = ctx.pack.write(rel, lines, folder)
    return ctx.pack.item(entry, T("{count} {what} in the period (SHA-256, time, name)",
                                  count=len(found), what=T(what)))


def _policy_rules(data: dict) -> dict[str, list[tuple[str, dict]]]:
    """rule -> [(host, check result)] of one stored run; unreachable hosts as None."""
    out: dict[str, list] = {}
    for host in data.get("hosts") or []:
        if host.get("status", "ok") != "ok":
            out.setdefault("*unreachable", []).append((host.get("host"), host))
            continue
        for result in host.get("results") or []:
            for rule in str(result.get("rule") or "").replace(",", " ").split():
                out.setdefault(rule, []).append((host.get("host"), result))
    return out


def _judge_rule(rule: str, results, unreachable) -> tuple[str, T]:
    """(verdict, reason) for one rule from its results in the newest run."""
    fails = [f"{h}: {r['check']}: " + "; ".join(f.get("message", "") for f in
                                                  r.get("findings") or [])[:200]
             for h, r in results if r["status"] == "fail"]
    off = [f"{h}: {r['check']} {r.get('reason')}" for h, r in results
           if r["status"] == "n/a" and str(r.get("reason", "")).startswith(DISABLED)]
    if fails or off:
        return NOT_MET, join(([T("findings: {list}", list="; ".join(fails[:5]))] if fails
                              else []) +
                             ([T("switched off: {list}", list="; ".join(off[:5]))] if off
                              else []))
    hosts = sorted({h for h, _ in results})
    blind = [h for h in hosts if not any(r["status"] == "pass" for hh, r in results if hh == h)]
    errors = [f"{h}: {r['check']}: {r.get('reason')}" for h, r in results if r["status"] == "error"]
    if blind or errors or unreachable:
        why = ([T("no check passed on {hosts} (all n/a or error)", hosts=", ".join(blind))]
               if blind else []) \
            + errors[:3] + [T("host {host} unreachable", host=h) for h in unreachable]
        return NO_EVIDENCE, join(why)
    passed = sum(1 for _, r in results if r["status"] == "pass")
    return MET, T("{passed} check(s) passed on {hosts} host(s), none failed or switched off",
                  passed=passed, hosts=len(hosts))


@source("policy", *POLICY_RULES, "R-AUD-2", title="Policy check runs")
def policy(ctx: Context):
    from opskit.policy.catalogue import catalogue      # which rules have a check at all
    covered = {spec.rule for spec in catalogue().values()}
    folder = StateLayout(ctx.state_dir).policy_runs
    found = _in_period(ctx, folder, json_files(folder), "started", id_time)
    reg = ctx.regularity("policy check", "policy check", [t for t, _ in found])
    out = [not_implemented(r, T("no policy check covers {rule}", rule=r)) for r in POLICY_RULES
           if r not in covered]
    rules = [r for r in POLICY_RULES if r in covered]
    if not found:
        why = T("no stored 'opskit policy check' run since {since} in {folder}",
                since=iso(ctx.since)[:10], folder=folder)
        return out + [judge(r, NOT_MET, why, periods=reg.as_dict()) for r in rules] + \
            [judge("R-AUD-2", NOT_MET, why, periods=reg.as_dict())]
    items = [_index(ctx, folder, found, "policy/runs.sha256", "policy check runs")]
    when, name, data = _newest_of_profile(folder, found, None) or (*found[-1], {})
    entry = ctx.pack.copy(os.path.join(folder, name), f"policy/{name}")
    items.append(ctx.pack.item(entry, T("newest policy check run {run}", run=name[:-5]), when))
    by_rule = _policy_rules(data)
    unreachable = [h for h, _ in by_rule.get("*unreachable", [])]
    for rule in rules:
        verdict, reason = _judge_rule(rule, by_rule.get(rule, []), unreachable)
        if not by_rule.get(rule):
            verdict, reason = NO_EVIDENCE, T("the newest run has no result for {rule}", rule=rule)
        if not reg.ok and verdict == MET:
            verdict = NOT_MET
        out.append(judge(rule, verdict, T("newest run {when}: {why}; {regularity}",
                                          when=iso(when), why=reason,
                                          regularity=reg.describe()), items, reg.as_dict()))
    ran = any(r.get("status") == "pass" for res in by_rule.values() for _, r in res
              if isinstance(r, dict) and "check" in r)
    out.append(judge("R-AUD-2", MET if reg.ok and ran else NOT_MET,
                     reg.describe() if ran else T("the newest policy run passed no check"),
                     items, reg.as_dict()))
    return out


def _newest_of_profile(folder: str, found, profile: str | None):
    """(time, name, data) of the newest run of ``profile`` (None: the baseline) in
    ``found``: an MLPS run does not stand in for the media and network checks."""
    for when, name in reversed(found):
        data = read_json(os.path.join(folder, name)) or {}
        if data.get("profile") == profile:
            return when, name, data
    return None


@source("mlps3", "R-SEC-1", title="MLPS level-3 host baseline (policy check --profile mlps3)")
def mlps3(ctx: Context):
    """R-SEC-1 from the newest ``policy check --profile mlps3`` run of the period:
    not met on any failed or errored item; manual items are left to the assessor."""
    folder = StateLayout(ctx.state_dir).policy_runs
    found = _in_period(ctx, folder, json_files(folder), "started", id_time)
    newest = _newest_of_profile(folder, found, "mlps3")
    if newest is None:
        return [not_implemented("R-SEC-1", T("no 'opskit policy check --profile mlps3' run "
                                             "since {since}", since=iso(ctx.since)[:10]))]
    when, name, data = newest
    entry = ctx.pack.copy(os.path.join(folder, name), f"policy/{name}")
    items = [ctx.pack.item(entry, T("newest MLPS level-3 run {run}", run=name[:-5]), when)]
    results = [(h.get("host"), r) for h in data.get("hosts") or [] for r in h.get("results") or []]
    bad = [f"{h}: {r['check']}" for h, r in results if r.get("status") in ("fail", "error")]
    manual = sum(1 for _, r in results if r.get("status") == "manual")
    down = [h.get("host") for h in data.get("hosts") or [] if h.get("status", "ok") != "ok"]
    if bad or down:
        why = join(([T("{count} item(s) failed: {items}", count=len(bad),
                       items=", ".join(bad[:8]))] if bad else [])
                   + [T("host {host} unreachable", host=h) for h in down])
        return [judge("R-SEC-1", NOT_MET, T("run {when}: {why}", when=iso(when), why=why), items)]
    return [judge("R-SEC-1", MET, T("run {when}: every judged item passed; {manual} manual "
                                    "item(s) are questions for the assessor", when=iso(when),
                                    manual=manual), items)]


def _report_problem(data: dict) -> T | None:
    """Why a stored permission report is no evidence, or None."""
    from opskit.perms.report import verify_content
    try:
        if not verify_content(data):
            return T("its content does not match its SHA-256 (changed after it was made)")
    except (KeyError, TypeError):
        return T("it is not a complete 'perms report' record")
    summary = data.get("summary") or {}
    if not summary.get("hosts") and not summary.get("databases"):
        return T("its snapshot collected no host and no database")
    return None


@source("perms", *PERMS_RULES, "R-AUD-2", title="Permission reviews")
def perms(ctx: Context):
    folder = StateLayout(ctx.state_dir).perms_reports
    found = _in_period(ctx, folder, json_files(folder, (".report.json",)), "generated")
    reg = ctx.regularity("permission review", "permission review", [t for t, _ in found])
    if not found:
        why = T("no stored 'opskit perms report' since {since} in {folder}",
                since=iso(ctx.since)[:10], folder=folder)
        return [judge(r, NOT_MET, why, periods=reg.as_dict()) for r in (*PERMS_RULES, "R-AUD-2")]
    items = [_index(ctx, folder, found, "perms/reports.sha256", "permission reports")]
    when, name = found[-1]
    data = read_json(os.path.join(folder, name)) or {}
    entry = ctx.pack.copy(os.path.join(folder, name), f"perms/{name}")
    items.append(ctx.pack.item(entry, T("newest permission report {report}", report=name[:-5]),
                               when))
    rendered = data.get("rendered")
    if isinstance(rendered, str) and os.sep not in rendered and \
            os.path.exists(os.path.join(folder, rendered)):
        ctx.pack.copy(os.path.join(folder, rendered), f"perms/{rendered}")
    problem = _report_problem(data)
    out = []
    for rule in (*PERMS_RULES, "R-AUD-2"):
        hits = [f for f in data.get("findings") or [] if f.get("rule") == rule]
        if problem:
            verdict, reason = NO_EVIDENCE, T("newest report {report}: {why}", report=name,
                                             why=problem)
        elif hits:
            verdict = NOT_MET
            reason = T("newest report {when}: {count} finding(s): {findings}", when=iso(when),
                       count=len(hits), findings="; ".join(
                           f"{f.get('check')}: {f.get('message')}" for f in hits[:3]))
        else:
            verdict = MET if reg.ok else NOT_MET
            reason = T("newest report {when}: no {rule} finding", when=iso(when), rule=rule)
        out.append(judge(rule, verdict, join([reason, reg.describe()]), items, reg.as_dict()))
    return out
