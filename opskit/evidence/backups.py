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
from .periods import DAY, regularity

HOUR = 3600.0
MIN_DRILL_FILES = 10          # a drill proves a restore when it verified this many (or all)


def _snapshots(ctx: Context):
    """(snapshots, pack Item, error) from 'opskit backup snapshots --json', once."""
    def make():
        code, out, err = ctx.run(["backup", "snapshots", "--json"])
        if code not in (0, 1):
            return None, None, f"cannot list backup snapshots: {first_error(err, out)}"
        try:
            snaps = json.loads(out)
        except ValueError:
            return None, None, "backup snapshots --json printed no JSON"
        entry = ctx.pack.write("backup/snapshots.json", out, "opskit backup snapshots --json")
        return snaps, ctx.pack.item(entry, f"{len(snaps)} snapshots in the repository"), None
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
    inc = regularity("backup", every, DAY, 2 * HOUR, ctx.since, ctx.now)
    full = regularity("full backup", fulls, 7 * DAY, 12 * HOUR, ctx.since, ctx.now)
    inc_j = judge("R-BAK-4", MET if inc.ok else NOT_MET, inc.describe(), [item], inc.as_dict())
    full_j = judge("R-BAK-4", MET if full.ok else NOT_MET, full.describe(), [item],
                   full.as_dict())
    regular = judge("R-BAK-2", MET if inc.ok else NOT_MET, inc.describe(), [item],
                    inc.as_dict())
    enc = judge("R-BAK-1", MET if inc.count else NO_EVIDENCE,
                f"{inc.count} snapshots in the period, each object encrypted (AES-256-GCM) "
                "before it is stored (docs/repository-format.md); scope: backups only"
                if inc.count else "no backup snapshot in the period", [item])
    return [inc_j, full_j, regular, enc]


def _site_state(ctx: Context, name: str) -> tuple[dict, Item | None]:
    path = os.path.join(StateLayout(ctx.state_dir).replication, f"{name}.json")
    state = read_json(path)
    if not isinstance(state, dict):
        return {}, None
    entry = ctx.pack.copy(path, f"backup/replication/{name}.json")
    return state, ctx.pack.item(entry, f"replication state of site {name}")


def _site_problem(ctx: Context, name: str, st: dict) -> str | None:
    """Why an off-site site's copy is not good evidence now, or None."""
    replicated, verified = parse_when(st.get("last_replicated")), parse_when(st.get("last_verified"))
    if replicated is None:
        return f"site {name} was never replicated"
    if (ctx.now - replicated).total_seconds() > 26 * HOUR:
        return f"site {name}: last replicated {iso(replicated)}, more than 26 h ago"
    if st.get("last_error"):
        return f"site {name}: the last replication failed: {st['last_error']}"
    if st.get("damaged"):
        return f"site {name}: {len(st['damaged'])} damaged or missing object(s)"
    if verified is None or verified < ctx.since:
        return (f"site {name}: the copy was not verified ('backup check-site {name}') since "
                f"{iso(ctx.since)[:10]}" + (f" (last {iso(verified)})" if verified else ""))
    if not st.get("last_check_ok", False):
        return f"site {name}: the last verification ({iso(verified)}) FAILED"
    return None


@source("offsite", "R-BAK-3", "R-BAK-2", title="Off-site copies")
def offsite(ctx: Context):
    if not ctx.sites:
        why = "no off-site site configured ('sites:' in the config)"
        return [judge("R-BAK-3", NOT_MET, why), judge("R-BAK-2", NOT_MET, why)]
    items, notes, problems, good = [], [], [], []
    for site in ctx.sites:
        st, item = _site_state(ctx, site["name"])
        items += [item] if item else []
        local = not_offsite(site, ctx.repo)
        if local:
            notes.append(f"not off-site: {local}")
            continue
        problem = _site_problem(ctx, site["name"], st)
        (problems.append(problem) if problem else
         good.append(f"site {site['name']}: replicated {st.get('last_replicated')}, "
                     f"verified {st.get('last_verified')}"))
    if not good and not problems:
        verdict, reason = NOT_MET, "no off-site copy: " + "; ".join(notes)
    elif problems:
        verdict, reason = NOT_MET, "; ".join(problems + notes)
    else:
        verdict, reason = MET, "; ".join(good + notes)
    return [judge("R-BAK-3", verdict, reason, items),
            judge("R-BAK-2", verdict, "copies kept safe off-site: " + reason, items)]


def _restore_problem(data: dict) -> str | None:
    """Why a drill report does not prove a restore (from any site), or None."""
    if not data.get("passed"):
        return f"it failed: {data.get('verdict') or 'FAIL'}"
    total, done = int(data.get("files_total") or 0), int(data.get("files_verified") or 0)
    if total == 0 or done < min(total, MIN_DRILL_FILES):
        return (f"it verified {done} of {total} files (a drill must restore and verify all "
                f"files or at least {MIN_DRILL_FILES})")
    return None


def _drill_problem(ctx: Context, data: dict, sites: dict) -> str | None:
    """Why a drill report does not count as a disaster-recovery drill, or None."""
    site = data.get("site")
    problem = _restore_problem(data)
    if problem:
        return problem
    if site in (None, "local") or site not in sites:
        return f"it restored from '{site}', not from a configured off-site site"
    repo = data.get("repository")
    if ctx.repo and repo and os.path.abspath(str(repo).replace("file://", "")) == \
            os.path.abspath(str(ctx.repo).replace("file://", "")):
        return "it used the local repository"
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
        items.append(ctx.pack.item(entry, f"drill from {data.get('site')}: "
                                   + ("counts" if not problem else f"does not count: {problem}"),
                                   when))
        newest = max(newest or (when, data), (when, data), key=lambda p: p[0])
        (notes.append(f"{name}: {problem}") if problem else counted.append(when))
    reg = regularity("disaster-recovery drill from an off-site site", counted,
                     ctx.drill_every_days * DAY, DAY, ctx.since, ctx.now)
    failed = newest is not None and not newest[1].get("passed")
    reason = reg.describe() + (f"; the newest drill ({iso(newest[0])}) FAILED" if failed else "")
    if notes:
        reason += "; not counted: " + "; ".join(notes[-3:])
    bak5 = judge("R-BAK-5", MET if reg.ok and not failed else NOT_MET, reason, items,
                 reg.as_dict())
    if newest is None:
        proof = "no restore drill in the period"
    else:
        problem = _restore_problem(newest[1])
        proof = problem and f"the newest restore drill ({iso(newest[0])}) does not prove it: " \
            f"{problem}"
    bak2 = judge("R-BAK-2", NOT_MET if proof else MET, "recoverable: " + (
        proof or f"the newest restore drill ({iso(newest[0])}) passed"), items)
    return [bak5, bak2]
