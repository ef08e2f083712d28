"""The auditor evidence pack (R-AUD-2, R-AUD-4): for every rule opskit covers,
the newest evidence, copied with SHA-256 hashes into one folder with an
``index.html`` (summary first, then rule -> evidence -> verdict), a
``manifest.json`` and a ``SHA256SUMS`` file (``sha256sum -c SHA256SUMS``).

Each covered rule has a freshness interval (``CHECKS``). A rule whose newest
evidence is older than its interval is *stale*, one without evidence since
``--since`` is *missing*, one whose newest evidence shows a problem (a failed
drill, policy violations, a broken audit chain) has *findings*; any of those
makes the pack exit 1 and the reason names the rule.

Evidence is copied verbatim from what opskit itself wrote (reports without
secrets), so an auditor can compare hashes with the originals; the
configuration, keys and passphrases are never copied.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from opskit.core.errors import UsageError
from opskit.core.output import Result
from opskit.core.state import StateLayout, opskit_command

from .report import DAY, HOUR, human_age, pack_result, render_html

OPSKIT = opskit_command()


@dataclass
class Check:
    key: str
    rules: list[str]
    title: str
    interval: float | None          # seconds; None = verified when the pack is made
    basis: str                      # why this interval


CHECKS = [
    Check("backup-incremental", ["R-BAK-2", "R-BAK-4"], "Incremental backup", 26 * HOUR,
          "daily incremental backups (opskit's default schedule; R-BAK-4), 2 h grace"),
    Check("backup-full", ["R-BAK-4"], "Full backup", 7 * DAY,
          "a full backup at least every 7 days (R-BAK-4)"),
    Check("replication", ["R-BAK-3"], "Off-site copy (replication)", 26 * HOUR,
          "replicated after each daily backup, 2 h grace"),
    Check("restore-drill", ["R-BAK-5", "R-BAK-2"], "Restore drill", 32 * DAY,
          "a monthly restore drill (R-BAK-5), 1 day grace"),
    Check("policy-check", ["R-MED-1", "R-MED-2", "R-NET-1", "R-NET-3", "R-NET-4", "R-NET-5",
                           "R-AUD-2"], "Removable-media and network policy check", 26 * HOUR,
          "hourly policy checks; at least one a day"),
    Check("permission-report", ["R-ACC-2", "R-ACC-4", "R-ACC-5", "R-AUD-2"],
          "Permission report", 8 * DAY, "a weekly permission report, 1 day grace"),
    Check("correction-ledger", ["R-DAT-1", "R-DAT-2", "R-DAT-3", "R-AUD-1"],
          "Correction ledger verification", None, "verified when the pack is made"),
    Check("audit-log", ["R-AUD-3", "R-DAT-1", "R-AUD-1", "R-AUD-4"],
          "Audit log verification", None, "verified when the pack is made"),
]


@dataclass
class Outcome:
    check: Check
    verdict: str = "missing"         # ok, findings, stale, missing
    reason: str = ""
    newest: str | None = None        # ISO time of the newest evidence
    age_s: float | None = None
    files: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"check": self.check.key, "rules": self.check.rules, "title": self.check.title,
                "interval_s": self.check.interval, "interval": human_age(self.check.interval),
                "basis": self.check.basis, "verdict": self.verdict, "reason": self.reason,
                "newest": self.newest, "age_s": None if self.age_s is None else round(self.age_s),
                "evidence": self.files}


def parse_when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Pack:
    """The output folder: every file written or copied gets its SHA-256 recorded."""

    def __init__(self, out_dir: str):
        self.dir = os.path.abspath(out_dir)
        self.files: list[dict] = []

    def _record(self, rel: str, source: str | None) -> dict:
        path = os.path.join(self.dir, rel)
        os.chmod(path, 0o600)
        entry = {"file": rel, "sha256": sha256_file(path), "bytes": os.path.getsize(path),
                 "source": source}
        self.files.append(entry)
        return entry

    def copy(self, src: str, rel: str) -> dict:
        dest = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
        shutil.copyfile(src, dest)
        return self._record(rel, os.path.abspath(src))

    def write(self, rel: str, text: str, source: str | None = None) -> dict:
        dest = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
        with open(dest, "w", encoding="utf-8") as fh:
            fh.write(text)
        return self._record(rel, source)


@dataclass
class Context:
    state_dir: str
    audit_log: str
    pack: Pack
    since: dt.datetime
    now: dt.datetime
    run: Callable[[list[str]], tuple[int, str, str]]   # opskit ARGS -> (exit, stdout, stderr)

    def judge(self, out: Outcome, when: dt.datetime | None, problem: str | None = None,
              what: str = "evidence") -> Outcome:
        """Verdict from the time of the newest evidence and an optional problem in it."""
        if when is None:
            out.verdict = "missing"
            out.reason = out.reason or f"no {what} since {self.since:%Y-%m-%d %H:%M}"
            return out
        out.newest = when.astimezone(dt.timezone.utc).isoformat(timespec="seconds") \
            .replace("+00:00", "Z")
        out.age_s = max(0.0, (self.now - when).total_seconds())
        interval = out.check.interval
        if when < self.since:
            out.verdict = "missing"
            out.reason = (f"newest {what} ({out.newest}) is before --since "
                          f"{self.since:%Y-%m-%d %H:%M}")
        elif interval is not None and out.age_s > interval:
            out.verdict = "stale"
            out.reason = (f"{', '.join(out.check.rules)}: newest {what} is "
                          f"{human_age(out.age_s)} old ({out.newest}), older than "
                          f"{human_age(interval)} ({out.check.basis})")
        elif problem:
            out.verdict = "findings"
            out.reason = problem
        else:
            out.verdict = "ok"
            out.reason = out.reason or f"newest {what}: {out.newest}"
        return out


def _first_error(stderr: str, stdout: str = "") -> str:
    for line in (stderr or "").splitlines():
        if line.startswith("opskit: error:"):
            return line[len("opskit: error:"):].strip()
    text = (stderr or stdout or "").strip().splitlines()
    return text[-1] if text else "no output"


# --- collectors ---------------------------------------------------------------------
def _backups(ctx: Context) -> list[Outcome]:
    inc = Outcome(CHECKS[0])
    full = Outcome(CHECKS[1])
    code, out, err = ctx.run(["backup", "snapshots", "--json"])
    if code != 0:
        reason = f"cannot list backup snapshots: {_first_error(err, out)}"
        inc.reason = full.reason = reason
        return [ctx.judge(inc, None), ctx.judge(full, None)]
    entry = ctx.pack.write("backup/snapshots.json", out, "opskit backup snapshots --json")
    try:
        snaps = json.loads(out)
    except ValueError:
        snaps = []
    inc.files = full.files = [entry]
    times = [(parse_when(s.get("time")), s) for s in snaps if parse_when(s.get("time"))]
    newest = max(times, key=lambda t: t[0], default=(None, None))
    fulls = [t for t in times if t[1].get("full") or not t[1].get("parent")]
    newest_full = max(fulls, key=lambda t: t[0], default=(None, None))
    if newest[1]:
        inc.reason = f"newest snapshot {newest[1]['id'][:8]} at {newest[1].get('time')}"
    if newest_full[1]:
        full.reason = (f"newest full snapshot {newest_full[1]['id'][:8]} at "
                       f"{newest_full[1].get('time')}")
    return [ctx.judge(inc, newest[0], what="backup snapshot"),
            ctx.judge(full, newest_full[0], what="full backup")]


def _replication(ctx: Context) -> Outcome:
    out = Outcome(CHECKS[2])
    code, stdout, err = ctx.run(["backup", "sites", "--json"])
    if code not in (0, 1):
        out.reason = f"cannot read the off-site sites: {_first_error(err, stdout)}"
        return ctx.judge(out, None)
    try:
        sites = json.loads(stdout)
    except ValueError:
        sites = []
    if not sites:
        out.reason = "no off-site site configured ('sites:' in the config, R-BAK-3)"
        return ctx.judge(out, None)
    out.files = [ctx.pack.write("backup/sites.json", stdout, "opskit backup sites --json")]
    # the least recently replicated site decides: every site must be fresh
    worst, problems = None, []
    for site in sites:
        when = parse_when(site.get("last replicated"))
        if when is None:
            out.reason = f"site {site.get('site')} has never been replicated"
            return ctx.judge(out, None)
        if worst is None or when < worst[0]:
            worst = (when, site.get("site"))
        if site.get("status") != "ok":
            problems.append(f"site {site.get('site')}: {site.get('status')}")
    out.reason = f"oldest last replication: site {worst[1]} at {worst[0]:%Y-%m-%d %H:%M}"
    return ctx.judge(out, worst[0], "; ".join(problems) or None, what="replication")


def newest_record(folder: str, time_key: str, *, skip_suffix: str | None = None
                  ) -> tuple[dt.datetime, str, dict] | None:
    """The JSON record in ``folder`` with the latest ``time_key`` timestamp, as
    (time, file name, data); unreadable, hidden or undated files are passed over."""
    found = []
    if not os.path.isdir(folder):
        return None
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json") or name.startswith(".") or \
                (skip_suffix and name.endswith(skip_suffix)):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            continue
        when = parse_when(data.get(time_key)) if isinstance(data, dict) else None
        if when is not None:
            found.append((when, name, data))
    return max(found, key=lambda r: r[0]) if found else None


def _drill(ctx: Context) -> Outcome:
    out = Outcome(CHECKS[3])
    folder = StateLayout(ctx.state_dir).drills
    newest = newest_record(folder, "time")
    if newest is None:
        out.reason = f"no restore drill report in {folder}"
        return ctx.judge(out, None)
    when, name, data = newest
    out.files.append(ctx.pack.copy(os.path.join(folder, name), f"drills/{name}"))
    md = os.path.join(folder, name[:-5] + ".md")
    if os.path.exists(md):
        out.files.append(ctx.pack.copy(md, f"drills/{name[:-5]}.md"))
    site = data.get("site")
    out.reason = (f"newest drill: site {site}, snapshot {str(data.get('snapshot'))[:8]}, "
                  f"{data.get('verdict') or ('PASS' if data.get('passed') else 'FAIL')}")
    problem = None if data.get("passed") else \
        f"R-BAK-5: the newest restore drill ({name}) FAILED: {data.get('verdict')}"
    return ctx.judge(out, when, problem, what="restore drill")


def _policy(ctx: Context) -> Outcome:
    out = Outcome(CHECKS[4])
    folder = StateLayout(ctx.state_dir).policy_runs
    newest = newest_record(folder, "started")
    if newest is None:
        out.reason = f"no stored 'opskit policy check' run in {folder}"
        return ctx.judge(out, None)
    when, name, data = newest
    out.files.append(ctx.pack.copy(os.path.join(folder, name), f"policy/{name}"))
    counts = data.get("counts") or {}
    failed, errors = int(counts.get("fail", 0) or 0), int(counts.get("error", 0) or 0)
    hosts = len(data.get("hosts") or [])
    out.reason = f"newest run {data.get('id')}: {hosts} host(s), {failed} failed check(s)"
    problem = None
    if failed or errors or data.get("exit_code"):
        problem = (f"policy check run {data.get('id')}: {failed} failed and {errors} errored "
                   f"check(s) (exit {data.get('exit_code')})")
    return ctx.judge(out, when, problem, what="policy check")


def _findings_count(value) -> int:
    if isinstance(value, list):
        return len(value)
    if isinstance(value, dict):
        return len(value)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 1


def _perms(ctx: Context) -> Outcome:
    out = Outcome(CHECKS[5])
    folder = StateLayout(ctx.state_dir).perms_reports
    # <id>.report.json is the rendered copy of a --format json report, not the record
    newest = newest_record(folder, "generated", skip_suffix=".report.json")
    if newest is None:
        out.reason = f"no permission report in {folder} ('opskit perms report')"
        return ctx.judge(out, None)
    when, name, data = newest
    out.files.append(ctx.pack.copy(os.path.join(folder, name), f"perms/{name}"))
    rendered = data.get("rendered")                   # the rendered report beside it
    others = [rendered] if isinstance(rendered, str) and os.sep not in rendered and \
        os.path.exists(os.path.join(folder, rendered)) else \
        [o for o in sorted(os.listdir(folder)) if o != name and os.path.splitext(o)[0] == name[:-5]]
    for other in others:
        out.files.append(ctx.pack.copy(os.path.join(folder, other), f"perms/{other}"))
    n = _findings_count(data.get("findings"))
    out.reason = f"newest report {name}: snapshot {data.get('snapshot')}, {n} finding(s)"
    problem = f"permission report {name}: {n} finding(s)" if n else None
    return ctx.judge(out, when, problem, what="permission report")


def _ledger(ctx: Context) -> Outcome:
    out = Outcome(CHECKS[6])
    code, stdout, err = ctx.run(["correct", "verify", "--json"])
    if code not in (0, 1):
        out.reason = f"cannot verify the correction ledger: {_first_error(err, stdout)}"
        return ctx.judge(out, None)
    out.files.append(ctx.pack.write("corrections/verify.json", stdout,
                                    "opskit correct verify --json"))
    try:
        report = json.loads(stdout)
    except ValueError:
        report = {"ok": False, "problem": "unreadable verify output"}
    export = os.path.join(ctx.pack.dir, "corrections", "ledger.json")
    ecode, eout, eerr = ctx.run(["correct", "export", "--format", "json", "--out", export])
    if ecode == 0 and os.path.exists(export):
        out.files.append(ctx.pack._record("corrections/ledger.json",
                                          "opskit correct export --format json"))
    out.reason = (f"ledger intact: {report.get('entries_checked', 0)} entries, "
                  f"{report.get('signatures_checked', 0)} signatures checked"
                  if report.get("ok") else "")
    problem = None if report.get("ok") else \
        f"correction ledger verification FAILED: {report.get('problem')}"
    return ctx.judge(out, ctx.now, problem, what="ledger verification")


def _audit(ctx: Context) -> Outcome:
    from opskit.core.audit import AuditLog
    out = Outcome(CHECKS[7])
    log = AuditLog(ctx.audit_log)
    if not os.path.exists(log.path):
        out.reason = f"no audit log at {log.path}"
        return ctx.judge(out, None)
    report = log.verify()
    out.files.append(ctx.pack.copy(log.path, "audit/audit.log"))
    if os.path.exists(log.checkpoints_path):
        out.files.append(ctx.pack.copy(log.checkpoints_path, "audit/checkpoints.jsonl"))
    out.files.append(ctx.pack.write("audit/verify.json",
                                    json.dumps(report.to_dict(), indent=2) + "\n",
                                    "opskit audit verify"))
    oldest = None
    for entry in log.entries():
        oldest = entry.get("time")
        break
    kept = ""
    if oldest:
        days = max(0.0, (ctx.now - parse_when(oldest)).total_seconds() / DAY)
        kept = f"; log kept since {oldest[:10]} ({days:.0f} days; R-AUD-4 asks for >= 183)"
    out.reason = report.describe() + kept
    problem = None if report.ok else f"R-AUD-3: {report.describe()}"
    return ctx.judge(out, ctx.now, problem, what="audit verification")


COLLECTORS = (_backups, _replication, _drill, _policy, _perms, _ledger, _audit)


# --- the pack -----------------------------------------------------------------------
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
    def run(args: list[str]) -> tuple[int, str, str]:
        try:
            proc = subprocess.run([*OPSKIT, *global_args, *args], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 3, "", f"opskit: error: timed out after {timeout:g}s"
        return proc.returncode, proc.stdout, proc.stderr
    return run


def build_pack(out_dir: str, *, state_dir: str, audit_log: str, since: dt.datetime,
               run: Callable[[list[str]], tuple[int, str, str]],
               now: dt.datetime | None = None, meta: dict | None = None) -> Result:
    """Collect the evidence into ``out_dir`` and return the verdicts."""
    prepare_out_dir(out_dir)
    now = now or dt.datetime.now(dt.timezone.utc)
    pack = Pack(out_dir)
    ctx = Context(state_dir, audit_log, pack, since, now, run)
    outcomes: list[Outcome] = []
    for collect in COLLECTORS:
        got = collect(ctx)
        outcomes.extend(got if isinstance(got, list) else [got])
    bad = [o for o in outcomes if o.verdict != "ok"]
    counts = {v: sum(1 for o in outcomes if o.verdict == v)
              for v in ("ok", "findings", "stale", "missing")}
    summary = (f"evidence pack {pack.dir}: {counts['ok']}/{len(outcomes)} checks ok"
               + (f"; NOT ok: " + "; ".join(f"{o.check.key} ({', '.join(o.check.rules)}) "
                                            f"{o.verdict}" for o in bad) if bad else ""))
    manifest = {
        "format": "opskit-evidence/1", "generated": now.isoformat(timespec="seconds"),
        "since": since.isoformat(timespec="seconds"), **(meta or {}),
        "summary": {"ok": not bad, "counts": counts, "text": summary},
        "checks": [o.as_dict() for o in outcomes],
        "files": list(pack.files),
    }
    pack.write("index.html", render_html(manifest))
    manifest_text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    manifest_entry = pack.write("manifest.json", manifest_text)
    sums = "".join(f"{f['sha256']}  {f['file']}\n" for f in pack.files)
    with open(os.path.join(pack.dir, "SHA256SUMS"), "w", encoding="utf-8") as fh:
        fh.write(sums)
    os.chmod(os.path.join(pack.dir, "SHA256SUMS"), 0o600)
    return pack_result(pack.dir, outcomes, manifest, manifest_entry["sha256"])
