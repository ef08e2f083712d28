"""Evidence for the backup rules: snapshots (R-BAK-1, R-BAK-2, R-BAK-4), the
off-site copies (R-BAK-3, R-BAK-2) and restore drills (R-BAK-5, R-BAK-2)."""
from __future__ import annotations

import json
import os

from opskit.backup.fullness import is_full
from opskit.core.state import StateLayout

from .model import MET, NO_EVIDENCE, NOT_MET, Item, judge, source
from .offsite import not_offsite
from .packfiles import Context, first_error, iso, json_files, parse_when, read_json
from .text import T, join

HOUR = 3600.0
MIN_DRILL_FILES = 10          # a drill proves a restore when it verified this many (or all)


def _snapshots(ctx: Context):
    """(snapshots, pack Item, error) from 'opskit backup snapshots --json', once."""
    def make():
        code, out, err = ctx.run(["backup", "snapshots", "--json"])
        if code not in (0, 1):
            return None, None, T("cannot list backup snapshots: {error}",
                                 error=first_error(err, out))
        try:
            snaps = json.loads(out)
        except ValueError:
            return None, None, T("backup snapshots --json printed no JSON")
        entry = ctx.pack.write("backup/snapshots.json", out, "opskit backup snapshots --json")
        what = T("{count} snapshots in the repository", count=len(snaps))
        return snaps, ctx.pack.item(entry, what), None
    return ctx.once("snapshots", make)


@source("backups", "R-BAK-1", "R-BAK-2", "R-BAK-4", title="Backup snapshots")
def backups(ctx: Context):
    snaps, item, error = _snapshots(ctx)
    if error:
        return [judge(r, NO_EVIDENCE, error) for r in ("R-BAK-1", "R-BAK-2", "R-BAK-4")]
    times = [(parse_when(s.get("time")), s) for s in snaps]
    times = [(t, s) for t, s in times if t is not None]
    every = [t for t, _ in times]
    fulls = [t for t, s in times if is_full(s)]
    inc = ctx.regularity("backup", "backup", every)
    full = ctx.regularity("full backup", "full backup", fulls)
    inc_j = judge("R-BAK-4", MET if inc.ok else NOT_MET, inc.describe(), [item], inc.as_dict())
    full_j = judge("R-BAK-4", MET if full.ok else NOT_MET, full.describe(), [item],
                   full.as_dict())
    regular = judge("R-BAK-2", MET if inc.ok else NOT_MET, inc.describe(), [item],
                    inc.as_dict())
    enc = judge("R-BAK-1", MET if inc.count else NO_EVIDENCE,
                T("{count} snapshots in the period, each object encrypted (AES-256-GCM) "
                  "before it is stored (docs/repository-format.md); scope: backups only",
                  count=inc.count)
                if inc.count else T("no backup snapshot in the period"), [item])
    return [inc_j, full_j, regular, enc]


def _site_state(ctx: Context, name: str) -> tuple[dict, Item | None]:
    path = os.path.join(StateLayout(ctx.state_dir).replication, f"{name}.json")
    state = read_json(path)
    if not isinstance(state, dict):
        return {}, None
    entry = ctx.pack.copy(path, f"backup/replication/{name}.json")
    return state, ctx.pack.item(entry, T("replication state of site {site}", site=name))


def _site_problem(ctx: Context, name: str, st: dict) -> T | None:
    """Why an off-site site's copy is not good evidence now, or None."""
    replicated, verified = parse_when(st.get("last_replicated")), parse_when(st.get("last_verified"))
    if replicated is None:
        return T("site {site} was never replicated", site=name)
    if (ctx.now - replicated).total_seconds() > 26 * HOUR:
        return T("site {site}: last replicated {when}, more than 26 h ago", site=name,
                 when=iso(replicated))
    if st.get("last_error"):
        return T("site {site}: the last replication failed: {error}", site=name,
                 error=st["last_error"])
    if st.get("damaged"):
        return T("site {site}: {count} damaged or missing object(s)", site=name,
                 count=len(st["damaged"]))
    if verified is None or verified < ctx.since:
        last = T(" (last {when})", when=iso(verified)) if verified else ""
        return T("site {site}: the copy was not verified ('backup check-site {site}') since "
                 "{since}{last}", site=name, since=iso(ctx.since)[:10], last=last)
    if not st.get("last_check_ok", False):
        return T("site {site}: the last verification ({when}) FAILED", site=name,
                 when=iso(verified))
    return None


@source("offsite", "R-BAK-3", "R-BAK-2", title="Off-site copies")
def offsite(ctx: Context):
    if not ctx.sites:
        why = T("no off-site site configured ('sites:' in the config)")
        return [judge("R-BAK-3", NOT_MET, why), judge("R-BAK-2", NOT_MET, why)]
    items, notes, problems, good = [], [], [], []
    for site in ctx.sites:
        st, item = _site_state(ctx, site["name"])
        items += [item] if item else []
        local = not_offsite(site, ctx.repo)
        if local:
            notes.append(T("not off-site: {why}", why=local))
            continue
        problem = _site_problem(ctx, site["name"], st)
        (problems.append(problem) if problem else
         good.append(T("site {site}: replicated {replicated}, verified {verified}",
                       site=site["name"], replicated=st.get("last_replicated"),
                       verified=st.get("last_verified"))))
    if not good and not problems:
        verdict, reason = NOT_MET, T("no off-site copy: {why}", why=join(notes))
    elif problems:
        verdict, reason = NOT_MET, join(problems + notes)
    else:
        verdict, reason = MET, join(good + notes)
    return [judge("R-BAK-3", verdict, reason, items),
            judge("R-BAK-2", verdict, T("copies kept safe off-site: {why}", why=reason), items)]


def _restore_problem(data: dict) -> T | None:
    """Why a drill report does not prove a restore (from any site), or None."""
    if not data.get("passed"):
        return T("it failed: {verdict}", verdict=data.get("verdict") or "FAIL")
    total, done = int(data.get("files_total") or 0), int(data.get("files_verified") or 0)
    if total == 0 or done < min(total, MIN_DRILL_FILES):
        return T("it verified {done} of {total} files (a drill must restore and verify all "
                 "files or at least {least})", done=done, total=total, least=MIN_DRILL_FILES)
    return None


def _drill_problem(ctx: Context, data: dict, sites: dict) -> T | None:
    """Why a drill report does not count as a disaster-recovery drill, or None."""
    site = data.get("site")
    problem = _restore_problem(data)
    if problem:
        return problem
    if site in (None, "local") or site not in sites:
        return T("it restored from '{site}', not from a configured off-site site", site=site)
    repo = data.get("repository")
    if ctx.repo and repo and os.path.abspath(str(repo).replace("file://", "")) == \
            os.path.abspath(str(ctx.repo).replace("file://", "")):
        return T("it used the local repository")
    return not_offsite(sites[site], ctx.repo)


@source("drills", "R-BAK-5", "R-BAK-2", title="Restore drills")
def drills(ctx: Context):
    folder = StateLayout(ctx.state_dir).drills
    sites = {s["name"]: s for s in ctx.sites}
    counted, items, notes, newest = [], [], [], None
    for name in json_files(folder):
        data = read_json(os.path.join(folder, name))
        when = parse_when(data.get("time")) if isinstance(data, dict) else None
        if when is None or not ctx.since <= when <= ctx.now:
            continue
        entry = ctx.pack.copy(os.path.join(folder, name), f"drills/{name}")
        if os.path.exists(os.path.join(folder, name[:-5] + ".md")):
            ctx.pack.copy(os.path.join(folder, name[:-5] + ".md"), f"drills/{name[:-5]}.md")
        problem = _drill_problem(ctx, data, sites)
        what = T("drill from {site}: counts", site=data.get("site")) if not problem else \
            T("drill from {site}: does not count: {why}", site=data.get("site"), why=problem)
        items.append(ctx.pack.item(entry, what, when))
        newest = max(newest or (when, data), (when, data), key=lambda p: p[0])
        (notes.append(T("{name}: {why}", name=name, why=problem)) if problem
         else counted.append(when))
    reg = ctx.regularity("drill", "disaster-recovery drill from an off-site site", counted)
    failed = newest is not None and not newest[1].get("passed")
    reason = reg.describe() + (T("; the newest drill ({when}) FAILED", when=iso(newest[0]))
                               if failed else "")
    if notes:
        reason += T("; not counted: {notes}", notes=join(notes[-3:]))
    bak5 = judge("R-BAK-5", MET if reg.ok and not failed else NOT_MET, reason, items,
                 reg.as_dict())
    if newest is None:
        proof = T("no restore drill in the period")
    else:
        problem = _restore_problem(newest[1])
        proof = problem and T("the newest restore drill ({when}) does not prove it: {why}",
                              when=iso(newest[0]), why=problem)
    bak2 = judge("R-BAK-2", NOT_MET if proof else MET, T("recoverable: {why}", why=(
        proof or T("the newest restore drill ({when}) passed", when=iso(newest[0])))), items)
    return [bak5, bak2]
