"""The WAL chain behind base backups: gaps (``backup db check``) and WAL retention.

A base backup is usable up to time T only if every WAL segment from its
start point to T is archived, following timeline switches: after a
promotion, timeline N+1's history file says at which LSN it left its
parent, recovery reads the parent's segments before that point and the new
timeline's from the segment holding it on. ``check`` walks that path from
the oldest kept base backup of a cluster to the newest archived segment
and names the first segment (or history file) missing. Retention removes
only WAL files older than the oldest kept base backup's start segment;
history files are always kept (they are tiny and recovery asks for them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .wal import HISTORY, SEGMENT, WalArchive

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text: str) -> int:
    """'16/B374D848' -> integer byte position; ValueError when malformed."""
    m = _LSN.match(text.strip())
    if not m:
        raise ValueError(f"not an LSN: {text!r} (expected like 0/3000028)")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


@dataclass(frozen=True)
class Segments:
    """WAL file naming for one segment size (PostgreSQL's XLogFileName)."""

    size: int

    @property
    def per_id(self) -> int:
        return 0x100000000 // self.size

    def segno(self, lsn: int) -> int:
        return lsn // self.size

    def name(self, tli: int, segno: int) -> str:
        return f"{tli:08X}{segno // self.per_id:08X}{segno % self.per_id:08X}"

    def parse(self, name: str) -> tuple[int, int]:
        """(timeline, segment number) of a segment file name."""
        return int(name[:8], 16), int(name[8:16], 16) * self.per_id + int(name[16:24], 16)


def parse_history(text: str) -> list[tuple[int, int]]:
    """A timeline history file: [(parent timeline, LSN where the child left it), ...]."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        out.append((int(parts[0]), parse_lsn(parts[1])))
    return out


@dataclass
class ChainReport:
    """One cluster's WAL chain from its oldest kept base backup."""

    cluster: str
    base_snapshot: str = ""
    start_wal: str = ""
    timeline: int = 0            # the newest timeline the chain follows
    newest_wal: str = ""
    segments: int = 0            # segments the chain needs (and has, up to a gap)
    missing: list = field(default_factory=list)   # first missing file per problem
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Chain:
    """The archived files of one cluster and its base backups' manifests (``pg_base``)."""

    def __init__(self, archive: WalArchive, bases: list[dict]):
        self.archive = archive
        self.bases = sorted(bases, key=lambda s: (s.get("time", ""), s["id"]))
        self.names = archive.names()

    def _history(self, tli: int) -> list[tuple[int, int]] | None:
        name = f"{tli:08X}.history"
        if name not in self.names:
            return None
        return parse_history(self.archive.read(name).decode("utf-8", "replace"))

    def _path(self, tli: int, report: ChainReport) -> list[tuple[int, int | None]]:
        """[(timeline, LSN it ends at or None for the last), ...] leading to ``tli``."""
        if tli == 1:
            return [(1, None)]
        hist = self._history(tli)
        if hist is None:
            report.missing.append(f"{tli:08X}.history")
            report.problems.append(f"timeline {tli}: history file {tli:08X}.history is not "
                                   "archived")
            return [(tli, None)]
        return [(parent, end) for parent, end in hist] + [(tli, None)]

    def check(self) -> ChainReport:
        """Walk from the oldest base backup to the newest archived segment."""
        report = ChainReport(self.archive.cluster)
        if not self.bases:
            report.problems.append(f"cluster {self.archive.cluster}: no base backup (run "
                                   "'opskit backup db basebackup')")
            return report
        base = self.bases[0]
        man = base["pg_base"]
        seg = Segments(int(man["wal_segment_size"]))
        report.base_snapshot, report.start_wal = base["id"], man["start_wal"]
        segs = [seg.parse(n) for n in self.names if SEGMENT.match(n)]
        tlis = {t for t, _ in segs} | {int(n[:8], 16) for n in self.names if HISTORY.match(n)}
        start_tli = int(man["timeline"])
        path = self._latest_path(start_tli, tlis, report)
        report.timeline = path[-1][0]
        have = {(t, s) for t, s in segs}
        last_seg = max((s for t, s in segs if t == report.timeline), default=-1)
        stop_seg = seg.segno(parse_lsn(self.bases[-1]["pg_base"]["stop_lsn"]))
        cur = seg.segno(parse_lsn(man["start_lsn"]))
        for tli, end in path:
            if tli < start_tli:
                continue
            upto = seg.segno(end) - 1 if end is not None else max(last_seg, stop_seg)
            while cur <= upto:
                if (tli, cur) not in have:
                    report.missing.append(seg.name(tli, cur))
                    report.problems.append(f"WAL segment {seg.name(tli, cur)} is missing: "
                                           f"recovery from base backup {base['id'][:8]} "
                                           "stops before it")
                    return report
                report.newest_wal = seg.name(tli, cur)
                report.segments += 1
                cur += 1
        return report

    def _latest_path(self, start_tli: int, tlis: set[int], report: ChainReport) -> list:
        """The path of the newest timeline descending from ``start_tli``."""
        for tli in sorted(tlis | {start_tli}, reverse=True):
            if tli < start_tli:
                break
            probe = ChainReport(report.cluster)
            path = self._path(tli, probe)
            # a timeline without its history file cannot be followed: said, not skipped
            report.missing += probe.missing
            report.problems += probe.problems
            if any(t == start_tli for t, _ in path):
                return path
        return [(start_tli, None)]

    def removable(self) -> list[str]:
        """WAL files no kept base backup needs: older than the oldest one's start
        segment. Nothing without a base backup; history files never."""
        if not self.bases:
            return []
        man = self.bases[0]["pg_base"]
        seg = Segments(int(man["wal_segment_size"]))
        first = seg.segno(parse_lsn(man["start_lsn"]))
        return sorted(n for n in self.names if not HISTORY.match(n)
                      and seg.parse(n[:24])[1] < first)


def bases_by_cluster(snapshots: list[dict]) -> dict[str, list[dict]]:
    """The pg-base snapshots among ``snapshots``, by cluster."""
    out: dict[str, list[dict]] = {}
    for snap in snapshots:
        if snap.get("kind") == "pg-base":
            out.setdefault(snap["pg_base"]["cluster"], []).append(snap)
    return out


def check_all(repo, snapshots: list[dict], clusters: list[str]) -> list[ChainReport]:
    """The chain report of each cluster in ``clusters``."""
    bases = bases_by_cluster(snapshots)
    return [Chain(WalArchive(repo, c), bases.get(c, [])).check() for c in clusters]


def forget_wal(repo, kept: list[dict], *, dry_run: bool) -> tuple[list[str], list[dict]]:
    """Remove the WAL files no kept base backup needs, cluster by cluster (clusters
    without a kept base backup keep everything). Returns (removed object names,
    [{"object", "retain_until"}] held by S3 Object Lock)."""
    from ..backends import ObjectLocked
    from .wal import clusters
    bases = bases_by_cluster(kept)
    removed, locked = [], []
    for cluster in clusters(repo):
        chain = Chain(WalArchive(repo, cluster), bases.get(cluster, []))
        for name in chain.removable():
            obj = chain.archive.object_name(name)
            if not dry_run:
                try:
                    chain.archive.delete(name)
                except ObjectLocked as exc:
                    locked.append({"object": obj, "retain_until": exc.retain_until})
                    continue
            removed.append(obj)
    return removed, locked


def check_repository(repo, cluster: str | None = None) -> list[ChainReport]:
    """The chain report of ``cluster``, or of every cluster with a WAL archive or a
    base backup in ``repo`` (empty when it has neither)."""
    from .wal import clusters
    snaps = repo.snapshots()
    names = [cluster] if cluster else sorted(set(clusters(repo)) | set(bases_by_cluster(snaps)))
    return check_all(repo, snaps, names) if names else []


def chain_findings(reports: list[ChainReport]) -> list[dict]:
    """Chain problems as ``{"object", "problem"}`` findings (``check``, ``check-site``)."""
    out = []
    for rep in reports:
        for i, problem in enumerate(rep.problems):
            name = rep.missing[i] if i < len(rep.missing) else ""
            out.append({"object": f"wal/{rep.cluster}/{name}" if name else f"wal/{rep.cluster}/",
                        "problem": problem,
                        "snapshots": [rep.base_snapshot[:8]] if rep.base_snapshot else []})
    return out
