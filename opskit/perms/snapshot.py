"""Snapshots of actual access: taken, stored, hashed, listed, loaded (R-AUD-2).

A snapshot is one JSON document (format ``opskit-perms-snapshot/3``,
docs/perms.md) holding, per host, what opskit.perms.linux collected and, per
database, what opskit.perms.postgres collected; a host or database that could
not be read keeps its row with the reason. It is stored under
``<state_dir>/perms/snapshots/`` (directory 0700, files 0600) as:

    <id>.json          the content, canonical JSON (sorted keys, no spaces, UTF-8)
    <id>.json.sha256   "<sha256>  <id>.json" -- checkable with ``sha256sum -c``
    <id>.meta.json     a small summary for ``perms snapshots``

The id is ``<UTC time>-<first 12 hex digits of the SHA-256>``; loading
re-hashes the content and refuses a snapshot whose bytes do not match
(IntegrityError, exit 1), so a report always names content that is provably
the one it was computed from.

Format 2 (#19) adds, per host, ``identity`` (host name, FQDN, addresses sudo
matches host lists with) and ``sudo_elsewhere`` (rules written for other
hosts), and its ``sudo`` holds only the rights sudo grants on that host.
``migrate`` brings a format-1 snapshot to the format-2 shape when it is
loaded (its bytes and hash are untouched): no identity, nothing elsewhere, and
a warning that its sudo rights were read without host lists.

Format 3 (#19) adds, per database, what effective privileges are computed from
(opskit.perms.pg_effective): ``server_version_num``, ``owners`` (database,
schemas, tables, functions), function privileges and ``functions`` (SECURITY
DEFINER, volatility, what the body writes), ``default_acl`` (future grants),
``rls`` (row-level security and policies), and each membership's ``set``
option. A format-1 or -2 snapshot is brought to the format-3 shape with
those empty and a warning that they were not collected.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

from opskit.core.errors import IntegrityError, OperationalError, UsageError
from opskit.core.atomicfile import write_atomic
from opskit.core.gcpause import paused_gc
from opskit.core.state import StateLayout, ensure_private_dir

FORMAT = "opskit-perms-snapshot/3"
FORMAT_2 = "opskit-perms-snapshot/2"
FORMAT_1 = "opskit-perms-snapshot/1"


def canonical_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


@dataclass
class Snapshot:
    id: str
    sha256: str
    content: dict
    path: str | None = None

    @property
    def created(self) -> str:
        return self.content.get("created", "")

    @property
    def hosts(self) -> list[dict]:
        return self.content.get("hosts", [])

    @property
    def databases(self) -> list[dict]:
        return self.content.get("databases", [])

    def failed(self) -> list[str]:
        """Hosts and databases that could not be collected."""
        return ([h["name"] for h in self.hosts if h.get("status") != "ok"] +
                [f"db:{d['name']}" for d in self.databases if d.get("status") != "ok"])

    def warnings(self) -> list[tuple[str, str]]:
        out = [("snapshot", w) for w in self.content.get("warnings", [])]
        for h in self.hosts:
            out += [(h["name"], w) for w in (h.get("data") or {}).get("warnings", [])]
        for d in self.databases:
            out += [(f"db:{d['name']}", w) for w in (d.get("data") or {}).get("warnings", [])]
        return out

    def meta(self) -> dict:
        return {"id": self.id, "created": self.created, "sha256": self.sha256,
                "hosts": [h["name"] for h in self.hosts],
                "databases": [d["name"] for d in self.databases],
                "failed": self.failed(), "warnings": len(self.warnings())}


def migrate(content: dict) -> dict:
    """A loaded snapshot in the current shape (see module doc); unknown formats refused."""
    fmt = content.get("format", FORMAT_1)
    if fmt == FORMAT:
        return content
    if fmt not in (FORMAT_1, FORMAT_2):
        raise IntegrityError(f"snapshot format {fmt!r} is not one this opskit reads "
                             f"({FORMAT_1}, {FORMAT_2}, {FORMAT})")
    content = dict(content, format=FORMAT, migrated_from=fmt)
    warnings = list(content.get("warnings", []))
    if fmt == FORMAT_1:
        for h in content.get("hosts", []):
            data = h.get("data")
            if data:
                data.setdefault("identity", None)
                data.setdefault("sudo_elsewhere", {})
        warnings.append(f"taken in format {FORMAT_1}: sudo rights were read without "
                        "evaluating host lists, Defaults or last-match order; take a new "
                        "snapshot for sudo's own view")
    if any(d.get("data") for d in content.get("databases", [])):
        _migrate_databases(content["databases"])
        warnings.append(f"taken in format {fmt}: database functions, default privileges, "
                        "row-level security and owners were not collected; take a new "
                        "snapshot for them")
    content["warnings"] = warnings
    return content


def _migrate_databases(rows: list[dict]) -> None:
    """Format-3 database fields, empty, on older rows; a membership's SET option was
    not recorded: taken as the default (it allows SET ROLE)."""
    for d in rows:
        data = d.get("data")
        if not data:
            continue
        data.setdefault("server_version_num", None)
        data.setdefault("owners", {})
        data.setdefault("functions", {})
        data.setdefault("default_acl", [])
        data.setdefault("rls", {})
        data.setdefault("privileges", {}).setdefault("functions", {})
        for memberships in data.get("member_of", {}).values():
            for m in memberships:
                m.setdefault("set", True)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def make_snapshot(content: dict, when: _dt.datetime | None = None) -> Snapshot:
    when = when or _now()
    content = dict(content)
    content.setdefault("format", FORMAT)
    content.setdefault("created", when.isoformat(timespec="seconds").replace("+00:00", "Z"))
    data = canonical_bytes(content)
    digest = hashlib.sha256(data).hexdigest()
    sid = when.strftime("%Y%m%dT%H%M%S") + f"{when.microsecond // 1000:03d}Z-" + digest[:12]
    snap = Snapshot(sid, digest, content)
    snap._bytes = data  # type: ignore[attr-defined]
    return snap


def take_snapshot(targets: Sequence[Any], databases: Sequence[Any], *, concurrency: int = 16,
                  timeout_per_host: float | None = 120.0, ssh_settings: Any = None,
                  min_uid: int = 1000) -> Snapshot:
    """Collect every target (HostSpecs or Hosts, concurrently: every host gets a
    row) and every database (DatabaseSpecs); return the snapshot (not stored)."""
    from opskit.hosts.fanout import fan_out

    from .linux import collect_linux
    from .postgres import collect_postgres

    started = _now()
    outcomes = fan_out(list(targets), lambda host: collect_linux(host, min_uid=min_uid),
                       concurrency=concurrency, timeout_per_host=timeout_per_host,
                       ssh_settings=ssh_settings)
    hosts = []
    for target, outcome in zip(targets, outcomes):
        hosts.append({"name": outcome.name, "groups": list(getattr(target, "groups", []) or []),
                      "endpoint": getattr(target, "endpoint", None) or
                      (target.describe() if hasattr(target, "describe") else outcome.name),
                      "status": outcome.status, "error": outcome.error,
                      "duration": round(outcome.duration, 3),
                      "data": outcome.value if outcome.ok else None})
    dbs = []
    for spec in databases:
        t0 = time.monotonic()
        try:
            data = collect_postgres(spec)
            dbs.append({"name": spec.name, "where": spec.describe(), "status": "ok",
                        "error": None, "duration": round(time.monotonic() - t0, 3),
                        "data": data})
        except OperationalError as exc:
            dbs.append({"name": spec.name, "where": spec.describe(), "status": "error",
                        "error": exc.message, "duration": round(time.monotonic() - t0, 3),
                        "data": None})
    return make_snapshot({"format": FORMAT, "hosts": hosts, "databases": dbs,
                          "warnings": [] if hosts or dbs else
                          ["nothing collected: no hosts selected and no databases"]},
                         when=started)


class SnapshotStore:
    """``<state_dir>/perms/snapshots``: save, list, load (verified), prune."""

    def __init__(self, state_dir: str, keep: int = 100, keep_days: float = 400.0):
        self.dir = StateLayout(state_dir).perms_snapshots
        self.keep = keep
        self.keep_days = keep_days      # by age: the evidence pack reads the audit window

    def _write(self, name: str, data: bytes) -> None:
        write_atomic(os.path.join(self.dir, name), data)

    def save(self, snap: Snapshot) -> str:
        ensure_private_dir(os.path.dirname(self.dir))
        ensure_private_dir(self.dir)
        data = getattr(snap, "_bytes", None) or canonical_bytes(snap.content)
        self._write(f"{snap.id}.json", data)
        self._write(f"{snap.id}.json.sha256", f"{snap.sha256}  {snap.id}.json\n".encode())
        self._write(f"{snap.id}.meta.json", json.dumps(snap.meta(), indent=1).encode())
        snap.path = os.path.join(self.dir, f"{snap.id}.json")
        self.prune()
        return snap.path

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")
                      and not n.endswith(".meta.json"))

    def resolve(self, ref: str | None) -> str:
        """A snapshot id from an id, a unique prefix, 'latest' or None (the newest)."""
        ids = self.ids()
        if not ids:
            raise UsageError("no permission snapshot stored yet",
                             hint="run 'opskit perms snapshot' first")
        if ref in (None, "", "latest"):
            return ids[-1]
        if ref in ids:
            return ref
        matches = [i for i in ids if i.startswith(ref) or i.endswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UsageError(f"no stored snapshot '{ref}'",
                             hint="'opskit perms snapshots' lists them")
        raise UsageError(f"'{ref}' matches {len(matches)} snapshots: "
                         f"{', '.join(matches[:5])}; give more of the id")

    def load(self, ref: str | None = None) -> Snapshot:
        sid = self.resolve(ref)
        path = os.path.join(self.dir, f"{sid}.json")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            with open(path + ".sha256", encoding="utf-8") as fh:
                recorded = fh.read().split()[0]
        except (OSError, IndexError) as exc:
            raise OperationalError(f"stored snapshot {path} is unreadable: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != recorded or not sid.endswith(digest[:12]):
            raise IntegrityError(f"snapshot {sid} does not match its SHA-256 (recorded "
                                 f"{recorded[:12]}..., content {digest[:12]}...): it was "
                                 "changed after it was taken")
        with paused_gc():              # two million containers, no cycles (core.gcpause)
            try:
                content = json.loads(data)
            except ValueError as exc:
                raise OperationalError(f"stored snapshot {path} is not JSON: {exc}") from None
            return Snapshot(sid, digest, migrate(content), path)

    def metas(self) -> list[dict]:
        out = []
        for sid in self.ids():
            try:
                with open(os.path.join(self.dir, f"{sid}.meta.json"), encoding="utf-8") as fh:
                    out.append(json.load(fh))
            except (OSError, ValueError):
                out.append({"id": sid, "created": "?", "sha256": "?", "hosts": [],
                            "databases": [], "failed": [], "warnings": 0})
        return out

    def prune(self) -> None:
        from opskit.core.keep import expired
        for sid in expired(self.ids(), self.keep, self.keep_days):
            for suffix in (".json", ".json.sha256", ".meta.json"):
                try:
                    os.unlink(os.path.join(self.dir, sid + suffix))
                except FileNotFoundError:
                    pass
