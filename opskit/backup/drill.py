"""Restore drills: prove a snapshot can be recovered, and how fast (R-BAK-5).

A drill restores a snapshot (all of it, or a random sample of its files)
into a fresh scratch directory, re-reads every restored file from disk and
re-chunks it to compare with the snapshot's chunk ids, optionally compares
the sample with the live source, then removes the scratch copy. It measures
RTO (restore time, throughput, extrapolated full-restore time) and RPO (age
of the verified snapshot) against the site's targets; report.py writes the
report (JSON for machines, Markdown for people) to ``<state_dir>/drills/``.

The newest *passing* drill per site is what the retention floor keeps
(retention.newest_drill_verified reads these reports).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field

from opskit.core.errors import UsageError

from . import crypto
from .chunker import chunk_stream
from .backends import BackendError
from .repository import CorruptObject, DamagedSnapshot, Repository
from .restorer import Restorer
from .tree import TYPE_DIR, TYPE_FILE, decode_name
from opskit.core.state import StateLayout


@dataclass
class Targets:
    rto_minutes: float
    rpo_hours: float


@dataclass
class DrillReport:
    time: str
    site: str
    repository: str
    snapshot: str
    snapshot_time: str
    operator: str
    host: str
    sample_pct: float
    files_total: int
    bytes_total: int
    files_verified: int = 0
    bytes_verified: int = 0
    failures: list = field(default_factory=list)          # {"path", "problem"}
    changed_since_snapshot: list = field(default_factory=list)
    compared_with_source: int = 0
    target_host: str | None = None
    host_dir: str | None = None
    host_files_verified: int = 0
    restore_seconds: float = 0.0
    throughput_mib_s: float = 0.0
    full_restore_estimate_s: float = 0.0
    rto_target_minutes: float = 0.0
    rto_ok: bool = False
    rpo_hours: float = 0.0
    rpo_target_hours: float = 0.0
    rpo_ok: bool = False
    verified: bool = False
    passed: bool = False
    verdict: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def _snapshot_files(repo: Repository, snap: dict) -> list[tuple[bytes, dict]]:
    out: list[tuple[bytes, dict]] = []
    stack = [(bytes.fromhex(snap["tree"]), b"")]
    while stack:
        tree_id, base = stack.pop()
        for node in repo.load_tree(tree_id).get("nodes", ()):
            path = base + b"/" + decode_name(node)
            if node.get("type") == TYPE_DIR:
                stack.append((bytes.fromhex(node["subtree"]), path))
            elif node.get("type") == TYPE_FILE:
                out.append((path, node))
    out.sort()
    return out


def choose_snapshot(repo: Repository, ref: str, rng: random.Random) -> dict:
    """The snapshot to drill; DamagedSnapshot when it (or, for 'latest', possibly
    the newest one) cannot be read: a drill never falls back to another."""
    snaps = repo.snapshots()
    damaged = sorted(repo.damaged_snapshots)
    if not snaps and not damaged:
        raise UsageError(f"repository {repo.backend.location} has no snapshots to drill")
    if ref == "random":
        pick = rng.randrange(len(snaps) + len(damaged))
        if pick >= len(snaps):      # a damaged file is part of what a random drill samples
            raise DamagedSnapshot(damaged[pick - len(snaps)], "")
        return snaps[pick]
    return repo.resolve_snapshot(ref, snaps)


def check_target(target: str, snap: dict) -> None:
    """A drill target must be empty and must not be (or hold, or sit in) the live source."""
    real = os.path.realpath(target)
    for src in snap.get("paths", []):
        src_real = os.path.realpath(src)
        if real == src_real or real.startswith(src_real.rstrip("/") + "/") \
                or src_real.startswith(real.rstrip("/") + "/") or real == "/":
            raise UsageError(f"drill target {target} overlaps the live source {src}: refusing "
                             "(a drill must never write over what it protects)")
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        raise UsageError(f"drill target {target} is not an empty directory")


def _chunk_ids(path: str, repo: Repository) -> tuple[list[str], int]:
    cfg = repo.config
    ids, size = [], 0
    with open(path, "rb", buffering=0) as fh:
        first = fh.read(cfg.chunk_min + 1)
        chunks = [first] if len(first) <= cfg.chunk_min else \
            chunk_stream(fh, cfg.chunk_min, cfg.chunk_avg, cfg.chunk_max, first=first)
        for chunk in chunks:
            if not chunk:
                continue
            ids.append(crypto.blob_id(repo.keys.id_key, chunk).hex())
            size += len(chunk)
    return ids, size


def run_drill(repo: Repository, *, site: str, snapshot_ref: str = "latest",
              sample_pct: float | None = None, compare_source: bool = False,
              target: str | None = None, targets: Targets, operator: str,
              seed: int | None = None, keep: bool = False, workers: int | None = None,
              host=None, host_dir: str | None = None,
              now: dt.datetime | None = None) -> DrillReport:
    """Run one drill; never raises for a failed verification (that is the report)."""
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.timezone.utc)
    repo.load_index(repair=False)
    try:
        snap = choose_snapshot(repo, snapshot_ref, rng)
    except DamagedSnapshot as exc:
        snap = {"id": exc.snapshot, "time": ""}
        return _unreadable(repo, snap, site, operator, targets, now, exc.message)
    try:
        files = _snapshot_files(repo, snap)
    except (CorruptObject, BackendError) as exc:
        return _unreadable(repo, snap, site, operator, targets, now, f"cannot be listed: {exc}")
    total_bytes = sum(int(n.get("size") or 0) for _p, n in files)
    if sample_pct is None or sample_pct >= 100:
        sample = files
        pct = 100.0
    else:
        k = max(1, round(len(files) * sample_pct / 100)) if files else 0
        sample = sorted(rng.sample(files, k))
        pct = float(sample_pct)
    report = DrillReport(
        time=now.strftime("%Y-%m-%dT%H:%M:%SZ"), site=site, repository=repo.backend.location,
        snapshot=snap["id"], snapshot_time=snap["time"], operator=operator,
        host=socket.gethostname(), sample_pct=pct, files_total=len(files),
        bytes_total=total_bytes, rto_target_minutes=targets.rto_minutes,
        rpo_target_hours=targets.rpo_hours)
    made_scratch = target is None
    if target is None:
        target = tempfile.mkdtemp(prefix="opskit-drill-")
    else:
        check_target(target, snap)
    try:
        started = time.monotonic()
        restorer = Restorer(repo, target, files={p for p, _n in sample}, workers=workers)
        try:
            stats = restorer.run(snap)
        except (CorruptObject, BackendError) as exc:
            report.restore_seconds = round(time.monotonic() - started, 3)
            report.failures.append({"path": "(snapshot)", "problem": f"restore stopped: {exc}"})
            stats = None
        if stats is None:
            sample = []
        report.restore_seconds = report.restore_seconds or round(time.monotonic() - started, 3)
        for err in (stats.errors if stats else []):
            report.failures.append({"path": err["path"], "problem": f"restore: {err['error']}"})
        failed = {f["path"] for f in report.failures}
        for path, node in sample:
            restored = os.fsdecode(os.fsencode(target) + path)
            if restored in failed:
                continue
            try:
                ids, size = _chunk_ids(restored, repo)
            except OSError as exc:
                report.failures.append({"path": os.fsdecode(path), "problem": f"unreadable: {exc}"})
                continue
            if ids != node.get("content", []) or size != int(node.get("size") or 0):
                report.failures.append({"path": os.fsdecode(path),
                                        "problem": "restored content differs from the snapshot"})
                continue
            report.files_verified += 1
            report.bytes_verified += size
            if compare_source:
                _compare_live(report, path, node, ids, repo)
        if host is not None:
            report.target_host = host.name
            bad = {f["path"] for f in report.failures}
            good = [p for p, _n in sample if os.fsdecode(p) not in bad]
            report.host_dir = host_dir or f"/tmp/opskit-drill-on-host-{os.urandom(6).hex()}"
            _push_to_host(report, host, target, good, report.host_dir)
            report.restore_seconds = round(time.monotonic() - started, 3)
    finally:
        if not keep:
            if made_scratch:
                shutil.rmtree(target, ignore_errors=True)
            else:
                for entry in os.listdir(target):
                    p = os.path.join(target, entry)
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    secs = max(report.restore_seconds, 1e-6)
    rate = report.bytes_verified / secs
    report.throughput_mib_s = round(rate / 2**20, 1)
    report.full_restore_estimate_s = round(total_bytes / rate if rate else secs, 1) \
        if pct < 100 else report.restore_seconds
    verified = not report.failures and report.files_verified == len(sample) and bool(sample
                                                                                   or not files)
    return conclude(report, snap, targets, now, verified, "file(s) failed verification")


def conclude(report: DrillReport, snap: dict, targets: Targets, now: dt.datetime,
             verified: bool, failed_what: str) -> DrillReport:
    """RTO and RPO against the targets, pass or fail, and the verdict line
    (file drills here, database drills in opskit.backup.db.drill)."""
    report.rto_ok = report.full_restore_estimate_s <= targets.rto_minutes * 60
    snap_time = dt.datetime.fromisoformat(snap["time"].rstrip("Z")).replace(tzinfo=dt.timezone.utc)
    age_hours = (now - snap_time).total_seconds() / 3600
    report.rpo_hours = round(age_hours, 2)
    report.rpo_ok = age_hours <= targets.rpo_hours
    report.verified = verified
    report.passed = report.verified and report.rto_ok and report.rpo_ok
    reasons = []
    if not report.verified:
        reasons.append(f"{len(report.failures)} {failed_what}")
    if not report.rto_ok:
        reasons.append(f"RTO {report.full_restore_estimate_s:.0f} s over target "
                       f"{targets.rto_minutes:g} min")
    if not report.rpo_ok:
        reasons.append(f"RPO {report.rpo_hours:.1f} h over target {targets.rpo_hours:g} h")
    report.verdict = "PASS" if report.passed else "FAIL: " + "; ".join(reasons)
    return report


def _unreadable(repo: Repository, snap: dict, site: str, operator: str, targets: Targets,
                now: dt.datetime, problem: str) -> DrillReport:
    """The snapshot's own trees cannot be read: the drill fails, it does not crash."""
    return DrillReport(
        time=now.strftime("%Y-%m-%dT%H:%M:%SZ"), site=site, repository=repo.backend.location,
        snapshot=snap["id"], snapshot_time=snap["time"], operator=operator,
        host=socket.gethostname(), sample_pct=0.0, files_total=0, bytes_total=0,
        failures=[{"path": "(snapshot)", "problem": problem}],
        rto_target_minutes=targets.rto_minutes, rpo_target_hours=targets.rpo_hours,
        verdict="FAIL: the snapshot cannot be read (see failures)")


def _push_to_host(report: DrillReport, host, local_root: str, paths: list[bytes],
                  remote_root: str) -> None:
    """Copy the verified files onto ``host`` under ``remote_root``, prove the copy
    byte-identical with the host's own sha256sum, then remove it (incident
    responders restore onto a replacement server this way)."""
    import hashlib
    root = remote_root.rstrip("/")
    if not root.startswith("/") or root in ("", "/") or ".." in root.split("/"):
        raise UsageError(f"remote drill directory {remote_root!r} must be an absolute path "
                         "other than /")
    expected: dict[str, str] = {}
    try:
        dirs = sorted({root + os.fsdecode(os.path.dirname(p)) for p in paths} | {root})
        for i in range(0, len(dirs), 200):
            host.run(["mkdir", "-p", "--", *dirs[i:i + 200]], check=True)
        for p in paths:
            local = os.fsencode(local_root) + p
            with open(local, "rb") as fh:
                data = fh.read()
            remote = root + os.fsdecode(p)
            host.write_file(remote, data, mode=0o600)
            expected[remote] = hashlib.sha256(data).hexdigest()
        names = sorted(expected)
        seen: dict[str, str] = {}
        for i in range(0, len(names), 200):
            out = host.run(["sha256sum", "--zero", "--", *names[i:i + 200]], check=True).stdout
            for rec in out.split(b"\0"):
                if rec.strip():
                    digest, _, name = rec.decode("utf-8", "surrogateescape").partition("  ")
                    seen[name.lstrip("*")] = digest.lstrip("\\")
        for remote, digest in expected.items():
            if seen.get(remote) != digest:
                report.failures.append({"path": remote, "problem": f"copy on {host.name} differs"})
            else:
                report.host_files_verified += 1
    except (OSError, UnicodeError) as exc:
        report.failures.append({"path": f"{host.name}:{root}", "problem": f"copy to host: {exc}"})
    except Exception as exc:  # HostError and friends: the host is part of the drill
        report.failures.append({"path": f"{host.name}:{root}",
                                "problem": f"copy to host: {getattr(exc, 'message', exc)}"})
    finally:
        try:
            host.run(["rm", "-rf", "--", root], check=False)
        except Exception:
            pass


def _compare_live(report: DrillReport, path: bytes, node: dict, ids: list[str],
                  repo: Repository) -> None:
    """Compare a verified file with the live source: a change since the
    snapshot is noted; a difference without a change is a failure."""
    report.compared_with_source += 1
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        report.changed_since_snapshot.append({"path": os.fsdecode(path), "change": "deleted"})
        return
    except OSError as exc:
        report.changed_since_snapshot.append({"path": os.fsdecode(path), "change": str(exc)})
        return
    if st.st_size != node.get("size") or st.st_mtime_ns != node.get("mtime_ns"):
        report.changed_since_snapshot.append({"path": os.fsdecode(path), "change": "modified"})
        return
    try:
        live_ids, _ = _chunk_ids(os.fsdecode(path), repo)
    except OSError as exc:
        report.changed_since_snapshot.append({"path": os.fsdecode(path), "change": str(exc)})
        return
    if live_ids != ids:
        report.failures.append({"path": os.fsdecode(path),
                                "problem": "live file has the snapshot's size and mtime but other "
                                           "content (silent change or bad backup)"})


# --- reports ---------------------------------------------------------------------------
def drills_dir(state_dir: str) -> str:
    path = StateLayout(state_dir).drills
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def history(state_dir: str) -> list[dict]:
    out = []
    path = StateLayout(state_dir).drills
    if not os.path.isdir(path):
        return out
    for name in sorted(os.listdir(path)):
        if name.endswith(".json"):
            try:
                with open(os.path.join(path, name)) as fh:
                    out.append(json.load(fh))
            except (OSError, ValueError):
                continue
    return out
