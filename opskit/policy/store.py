"""Stored runs (``<state_dir>/policy/runs/<id>.json``, mode 0600) and the drift
between two runs (R-AUD-2: periodic checks whose changes are visible)."""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass

from opskit.core.errors import OperationalError
from opskit.core.keep import expired
from opskit.core.state import StateLayout, ensure_private_dir

from .fleet import RunReport


class RunStore:
    """Stored runs: a run is deleted only when it is beyond the newest ``keep``,
    older than ``keep_days`` (the evidence pack reads the audit window) and older
    than ``floor_days`` (the 183-day retention floor of the security records,
    R-AUD-4: the policy history follows it)."""

    def __init__(self, state_dir: str, keep: int = 100, keep_days: float = 400.0,
                 floor_days: float = 183.0):
        self.dir = StateLayout(state_dir).policy_runs
        self.keep = keep
        self.keep_days = keep_days
        self.floor_days = floor_days

    def save(self, report: RunReport) -> str:
        ensure_private_dir(os.path.dirname(self.dir))
        ensure_private_dir(self.dir)
        path = os.path.join(self.dir, f"{report.id}.json")
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".run-")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(report.as_dict(), fh, indent=1, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.prune()
        return path

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def load(self, run_id: str) -> RunReport:
        path = os.path.join(self.dir, f"{run_id}.json")
        try:
            with open(path, encoding="utf-8") as fh:
                return RunReport.from_dict(json.load(fh))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OperationalError(f"stored policy run {path} is unreadable: {exc}") from None

    def latest(self, profile: str | None = None) -> RunReport | None:
        """The newest stored run of ``profile`` (None: of the baseline), so drift
        never compares a profile run with a baseline run."""
        for run_id in reversed(self.ids()):
            report = self.load(run_id)
            if report.profile == profile:
                return report
        return None

    def prune(self, now: _dt.datetime | None = None) -> None:
        """Drop what is beyond ``keep`` and older than both ages; never a run whose
        time cannot be read from its id."""
        for run_id in expired(self.ids(), self.keep, max(self.keep_days, self.floor_days),
                              now=now):
            try:
                os.unlink(os.path.join(self.dir, f"{run_id}.json"))
            except FileNotFoundError:
                pass


@dataclass
class Change:
    host: str
    check: str
    change: str          # 'new failure', 'resolved', 'status changed', 'finding added', ...
    before: str
    after: str
    detail: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def drift(old: RunReport, new: RunReport) -> list[Change]:
    """What changed from ``old`` to ``new`` for the hosts of ``new``."""
    changes: list[Change] = []
    old_hosts = {h.host: h for h in old.hosts}
    for host in new.hosts:
        before = old_hosts.get(host.host)
        if before is None:
            changes.append(Change(host.host, "-", "host not in the previous run", "-",
                                  host.status))
            continue
        if before.status != host.status:
            changes.append(Change(host.host, "-", "host status changed", before.status,
                                  host.status, host.error or ""))
        if not host.reachable or not before.reachable:
            continue
        for result in host.results:
            prev = before.result(result.check)
            if prev is None:
                changes.append(Change(host.host, result.check, "check added", "-", result.status))
                continue
            if prev.status != result.status:
                kind = ("new failure" if result.status == "fail" else
                        "resolved" if prev.status == "fail" and result.status == "pass" else
                        "status changed")
                detail = "; ".join(f.message for f in result.findings) or result.reason
                changes.append(Change(host.host, result.check, kind, prev.status, result.status,
                                      detail))
                continue
            old_keys = {f.message: f for f in prev.findings}
            new_keys = {f.message: f for f in result.findings}
            for message in new_keys.keys() - old_keys.keys():
                changes.append(Change(host.host, result.check, "finding added", prev.status,
                                      result.status, f"{message} ({new_keys[message].evidence})"))
            for message in old_keys.keys() - new_keys.keys():
                changes.append(Change(host.host, result.check, "finding gone", prev.status,
                                      result.status, message))
    return changes
