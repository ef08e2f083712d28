"""Off-site replication (R-BAK-3): copy the local repository's objects to a site.

Objects are immutable and named by the BLAKE3 of their bytes, so replication
needs no key: it lists both sides and sends what the site lacks. Nothing is
decrypted; a replication host can run it without the passphrase.

Safe while a backup runs. The backup writes packs, then the index naming
them, then the snapshot. We *list* in the opposite order (snapshots, index,
packs): every snapshot we saw already had its index and packs written, so
they are in the later listings. We *send* in write order: keys and config,
packs, index, snapshots, each phase finished before the next starts, so the
site never holds a snapshot whose index or packs are missing, even if the
run is interrupted. Objects appear only complete (temp name + rename
locally), so a pack being written is either not listed or whole.

Verification after each upload: the bytes read locally are hashed (their
BLAKE3 must equal the object's name, else the local object is damaged and
is not sent); the upload carries a Content-MD5 the S3 server checks against
what it received, and the ETag it answers (the MD5 of what it stored) must
equal ours; where a store's ETag is not a plain MD5, and on SFTP, the
object's size on the site is compared with what was sent (a HEAD / stat). ``verify="read"`` reads every object back and
re-hashes it instead (costs a download). ``check_site`` always re-hashes
remote objects.

A local pack or index file that is damaged is not sent; then no index file or
snapshot is sent either (without the key the replicator cannot tell which of
them need it): they are "held back", the run exits 1, and the site keeps its
last consistent state until the local repository is repaired.

Resumable and idempotent: an interrupted run leaves only whole objects on
the site (S3 PUTs are atomic, SFTP renames a temp file); the rerun sends
what is still missing. Objects ``check_site`` found damaged are recorded in
the site state and re-sent by the next run.

The WAL archive (``wal/<cluster>/<segment>``, opskit.backup.db.wal) is the
exception to content-named objects: its names are PostgreSQL's. A WAL object
is sent when the site lacks the name; BLAKE3 of the bytes sent and the
object's keyed id (its head) are recorded in the site state
(``wal_digests``). One already on the site counts as the same when its size
matches and the local head still equals the recorded one; otherwise both
copies are read and compared. A different object under the same name is never
overwritten: it is reported as a conflict (two clusters archiving under one
name, or a site written by someone else), exit 1.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from opskit.core.errors import OperationalError, OpskitError, UsageError
from opskit.core.state import StateLayout

from . import crypto
from .backends import Backend, BackendError, ObjectNotFound, open_backend
from .checker import FindingsReport
from .repository import CorruptObject, pack_name, parse_index_object

FOLDERS = ("keys/", "data/", "index/", "snapshots/", "wal/")
WAL = "wal/"
WAL_MAGIC = b"OPW1"          # opskit.backup.db.wal.MAGIC and HEAD (kept here: db sits above)
WAL_HEAD = 36


class ReplicationError(OperationalError):
    """Replication to a site failed (exit 3); the message names the site."""


# --- sites from the config ---------------------------------------------------------------
@dataclass
class Site:
    name: str
    url: str
    settings: dict
    workers: int = 8
    rto_minutes: int | None = None
    rpo_hours: float | None = None


def configured_sites(config) -> dict[str, Site]:
    """Sites from ``sites:`` in the config; template entries (names starting with
    '<', as in the shipped example) are left out."""
    out = {}
    for name, entry in (config.get("sites") or {}).items():
        if str(name).startswith("<"):
            continue
        entry = dict(entry or {})
        url = entry.get("url")
        if not url:
            raise config.error(f"sites.{name}.url", "a site needs a url "
                               "(s3://BUCKET/PREFIX or sftp://USER@HOST:PORT/PATH)")
        if "://" not in url or url.split("://", 1)[0] not in ("s3", "sftp", "file"):
            raise config.error(f"sites.{name}.url", f"expected s3://, sftp:// or file://, got {url!r}")
        settings = {k: v for k, v in entry.items() if v is not None}
        settings["name"] = str(name)
        settings.setdefault("known_hosts", config.get("ssh.known_hosts"))
        settings["host_key_policy"] = config.get("ssh.host_key_policy")
        settings["connect_timeout"] = config.get("ssh.connect_timeout")
        for key in ("key_file", "known_hosts", "secret_access_key_file"):
            if settings.get(key):
                settings[key] = config.relative_path(settings[key])
        out[str(name)] = Site(str(name), url, settings, int(entry.get("workers") or 8),
                              entry.get("rto_minutes"), entry.get("rpo_hours"))
    return out


def get_site(config, name: str) -> Site:
    sites = configured_sites(config)
    if name not in sites:
        known = ", ".join(sorted(sites)) or "none configured"
        raise UsageError(f"unknown site {name!r} (sites: {known})",
                         hint="add it under 'sites:' in the config (docs/replication.md)")
    return sites[name]


def open_site(site: Site) -> Backend:
    if site.url.startswith("file://"):
        return open_backend(site.url)
    return open_backend(site.url, site.settings)


def site_label(site: Site) -> str:
    return f"site '{site.name}' ({site.url})"


# --- per-site state ----------------------------------------------------------------------
def _state_path(state_dir: str, site: str) -> str:
    folder = StateLayout(state_dir).replication
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return os.path.join(folder, f"{site}.json")


def state_file(state_dir: str, site: str) -> str:
    """The file recording ``site``'s replication state (last attempt, last error)."""
    return _state_path(state_dir, site)


def load_state(state_dir: str, site: str) -> dict:
    try:
        with open(_state_path(state_dir, site), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def save_state(state_dir: str, site: str, state: dict) -> None:
    path = _state_path(state_dir, site)
    tmp = f"{path}.tmp-{os.getpid()}"
    # 0600 like everything else under the state dir (#28 item 10): it names the
    # site's objects and when they were verified
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)        # a leftover tmp file keeps its old mode otherwise
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- listing -----------------------------------------------------------------------------
def list_all(backend: Backend,
             folders=("snapshots/", "index/", "data/", "keys/", WAL)) -> dict[str, int]:
    """name -> size of every repository object (locks excluded), listed in the
    order that is safe against a concurrent backup: snapshots, index, packs
    (the WAL archive is independent of them)."""
    out: dict[str, int] = {}
    for folder in folders:
        for name, size in backend.list(folder):
            out[name] = size
    try:
        out["config"] = backend.size("config")
    except ObjectNotFound:
        pass
    return out


def _expected_id(name: str) -> str | None:
    """The content id an object's name promises (None for ``config`` and WAL files)."""
    return None if name == "config" or name.startswith(WAL) else name.rsplit("/", 1)[-1]


def phase_of(name: str) -> int:
    if name == "config" or name.startswith("keys/"):
        return 0
    if name.startswith(("data/", WAL)):
        # WAL files need nothing else on the site; sent early, they shorten the RPO
        return 1
    if name.startswith("index/"):
        return 2
    return 3


PHASES = ("keys and config", "packs", "index", "snapshots")


# --- replication ---------------------------------------------------------------------------
@dataclass
class ReplicationResult:
    site: str
    url: str
    sent_objects: int = 0
    sent_bytes: int = 0
    already_there: int = 0
    resent_damaged: int = 0
    total_objects: int = 0          # on the site after the run
    total_bytes: int = 0
    snapshots: int = 0              # snapshots on the site after the run
    source_damaged: list = field(default_factory=list)
    held_back: list = field(default_factory=list)   # index/snapshots kept back (#28 item 5)
    vanished: list = field(default_factory=list)
    wal_sent: int = 0
    conflicts: list = field(default_factory=list)   # {"object", "problem"}: WAL not replaced
    duration_s: float = 0.0
    sent_by_phase: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class Replicator:
    def __init__(self, source: Backend, dest: Backend, site: Site, *, workers: int | None = None,
                 verify: str = "size", damaged: set[str] | None = None,
                 progress: Any = None, known_on_site: set[str] | None = None,
                 wal_digests: dict[str, str] | None = None):
        if verify not in ("size", "read"):
            raise UsageError(f"verify must be 'size' or 'read', got {verify!r}")
        self.source, self.dest, self.site = source, dest, site
        self.workers = max(1, workers or site.workers)
        self.verify = verify
        self.damaged = set(damaged or ())
        self.progress = progress
        self.known_on_site = set(known_on_site or ())
        self.wal_digests = dict(wal_digests or {})     # WAL name -> BLAKE3 of what was sent
        self.conflicts: list[dict] = []
        self._lock = threading.Lock()
        self._prefetched: dict[str, Any] = {}

    def _wrap(self, exc: BaseException) -> ReplicationError:
        """One line naming the site (backend messages already name it)."""
        text = str(exc)
        if f"site '{self.site.name}'" not in text:
            text = f"{site_label(self.site)}: {text}"
        return ReplicationError(f"replication failed: {text}")

    def plan(self, src: dict[str, int] | None = None
             ) -> tuple[dict[str, int], dict[str, int], list[str]]:
        """(source objects, site objects, names to send in order)."""
        src = list_all(self.source) if src is None else src
        try:
            dst = list_all(self.dest)
        except BackendError as exc:
            raise self._wrap(exc) from None
        send = [n for n, size in src.items()
                if not n.startswith(WAL) and (n not in dst or dst[n] != size or n in self.damaged)]
        try:
            send += [n for n, size in src.items() if n.startswith(WAL)
                     and (n not in dst or self._wal_needs_send(n, size, dst[n]))]
        except BackendError as exc:
            raise self._wrap(exc) from None
        send.sort(key=lambda n: (phase_of(n), n))
        return src, dst, send

    def _wal_needs_send(self, name: str, size: int, site_size: int) -> bool:
        """A WAL file present on the site: False when it is ours (recorded digest and
        size, or the same bytes); True only to repair a copy check_site found
        damaged; a different file is a conflict, never overwritten."""
        recorded, recorded_head = (self.wal_digests.get(name) or [None, None])[:2]
        try:
            # the head holds the keyed id of the plaintext: a 36-byte read tells
            # whether the local file is still the one sent
            head = self.source.get(name, 0, WAL_HEAD)[4:].hex()
            if recorded and recorded_head == head and site_size == size \
                    and name not in self.damaged:
                return False
            data = self.source.get(name)
        except ObjectNotFound:
            return False                   # removed by WAL retention meanwhile
        local = crypto.object_id(data)
        if name in self.damaged and recorded == local:
            return True                    # our own copy, damaged on the site: re-send
        try:
            remote = crypto.object_id(self.dest.get(name))
        except ObjectNotFound:
            return True
        if remote == local:
            self.wal_digests[name] = [local, head]
            return False
        self.conflicts.append({"object": name, "problem": "the site holds a different file "
                               "under this name; not replaced (another cluster archiving "
                               "under the same name?)"})
        return False

    def run(self) -> ReplicationResult:
        started = time.monotonic()
        src = list_all(self.source)
        prefetch = self._start_prefetch(src)
        try:
            return self._run(started, src)
        finally:
            self._prefetched.clear()
            prefetch.shutdown(wait=True, cancel_futures=True)

    def _start_prefetch(self, src: dict[str, int]) -> ThreadPoolExecutor:
        """Read and hash the first objects the site probably lacks (not there at the
        last run) while the site's client starts and lists: importing and setting up
        boto3 takes a quarter second that the first uploads need not wait for."""
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="opskit-read")
        guess = sorted((n for n in src if n not in self.known_on_site),
                       key=lambda n: (phase_of(n), n))[:self.workers]
        self._prefetched = {n: pool.submit(self._load, n) for n in guess}
        return pool

    def _load(self, name: str) -> tuple[bytes | None, bool, Any]:
        """(bytes or None when the object vanished, content matches its name,
        whatever the destination wants computed before its upload)."""
        try:
            data = self.source.get(name)
        except ObjectNotFound:
            return None, False, None
        expected = _expected_id(name)
        if expected is not None and crypto.object_id(data) != expected:
            return data, False, None
        if name.startswith(WAL) and data[:4] != WAL_MAGIC:
            return data, False, None      # not a WAL archive object: damaged locally
        prepare = getattr(self.dest, "prepare_put", None)
        return data, True, prepare(data) if prepare else None

    def _run(self, started: float, src: dict[str, int]) -> ReplicationResult:
        if hasattr(self.dest, "check_bucket"):
            try:
                self.dest.check_bucket()
            except BackendError as exc:
                raise self._wrap(exc) from None
        src, dst, send = self.plan(src)
        wanted = set(send)
        for name in [n for n in self._prefetched if n not in wanted]:
            self._prefetched.pop(name).cancel()     # guessed wrong: on the site already
        result = ReplicationResult(self.site.name, self.site.url)
        result.conflicts = list(self.conflicts)
        result.already_there = len(src) - len(send) - len(result.conflicts)
        result.resent_damaged = sum(1 for n in send if n in self.damaged and n in dst)
        if self.progress is not None and hasattr(self.progress, "total"):
            self.progress.total(len(send), sum(src[n] for n in send))
        on_site = dict(dst)
        for phase in range(len(PHASES)):
            names = [n for n in send if phase_of(n) == phase]
            if not names:
                continue
            if phase >= 2 and result.vanished:
                # a pack we listed disappeared (a prune ran meanwhile): the index we
                # listed may name it, so do not send index or snapshots this time
                raise ReplicationError(
                    f"replication to site '{self.site.name}' stopped: {len(result.vanished)} "
                    "object(s) vanished from the local repository while copying (a prune "
                    "running?); packs sent so far are kept, run replicate again",)
            if any(0 < phase_of(n) < phase for n in result.source_damaged):
                # a damaged pack (or index) was not sent, and an index or snapshot may
                # need it: without the key we cannot tell which, so none of them goes;
                # the site stays at its last consistent state (#28 item 5)
                result.held_back.extend(names)
                continue
            self._run_phase(names, src, result, on_site)
            result.sent_by_phase[PHASES[phase]] = len(names)
        result.total_objects = len(on_site)
        result.total_bytes = sum(on_site.values())
        result.snapshots = sum(1 for n in on_site if n.startswith("snapshots/"))
        result.duration_s = round(time.monotonic() - started, 3)
        self.on_site = on_site
        return result

    def _run_phase(self, names: list[str], src: dict, result: ReplicationResult,
                   on_site: dict) -> None:
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="opskit-repl")
        try:
            futures = [pool.submit(self._copy, n, src[n], result, on_site) for n in names]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for f in pending:
                f.cancel()
            for f in futures:
                if f.done() and not f.cancelled() and f.exception() is not None:
                    exc = f.exception()
                    if isinstance(exc, ReplicationError):
                        raise exc
                    if isinstance(exc, BackendError):
                        raise self._wrap(exc) from None
                    raise exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _copy(self, name: str, size: int, result: ReplicationResult, on_site: dict) -> None:
        ahead = self._prefetched.pop(name, None)
        data, intact, prepared = ahead.result() if ahead is not None else self._load(name)
        if data is None and name.startswith(WAL):
            return                        # WAL retention removed it: nothing depends on it
        if data is None or not intact:
            with self._lock:
                (result.vanished if data is None else result.source_damaged).append(name)
            return
        put_verified = getattr(self.dest, "put_verified", None)
        if put_verified is None:
            proven = self.dest.put(name, data)
        elif prepared is not None:
            proven = put_verified(name, data, prepared)
        else:
            proven = put_verified(name, data)
        if self.verify == "read":
            back = self.dest.get(name)
            ok = crypto.object_id(back) == crypto.object_id(data)
        else:
            # an S3 ETag that equals the MD5 we sent already proves the content
            ok = bool(proven) or self.dest.size(name) == len(data)
        if not ok:
            raise ReplicationError(f"replication to site '{self.site.name}' failed: {name} "
                                   "does not match what was sent after upload")
        with self._lock:
            result.sent_objects += 1
            result.sent_bytes += len(data)
            on_site[name] = len(data)
            if name.startswith(WAL):
                result.wal_sent += 1
                self.wal_digests[name] = [crypto.object_id(data), data[4:WAL_HEAD].hex()]
        if self.progress is not None:
            self.progress.sent(name, len(data))


def replicate(source: Backend, site: Site, state_dir: str, *, dest: Backend | None = None,
              verify: str = "size", progress=None, workers: int | None = None) -> ReplicationResult:
    """Replicate ``source`` to ``site``, recording the outcome in the state dir."""
    state = load_state(state_dir, site.name)
    dest = dest or open_site(site)
    state["url"] = site.url
    state["last_attempt"] = _now()
    try:
        rep = Replicator(source, dest, site, verify=verify, damaged=set(state.get("damaged", [])),
                         progress=progress, workers=workers,
                         known_on_site=set(state.get("site_names") or ()),
                         wal_digests=state.get("wal_digests"))
        result = rep.run()
    except OpskitError as exc:
        state["last_error"] = str(exc)
        save_state(state_dir, site.name, state)
        raise
    finally:
        dest.close()
    state.update({
        "last_replicated": _now(), "last_error": None,
        "objects": result.total_objects, "bytes": result.total_bytes,
        "snapshot_ids": sorted(n.split("/")[-1] for n in rep.on_site if n.startswith("snapshots/")),
        "site_names": sorted(rep.on_site),
        # digests of WAL files no longer on the site (WAL retention) are dropped
        "wal_digests": {n: d for n, d in sorted(rep.wal_digests.items()) if n in rep.on_site},
        # objects check_site found damaged were in this run's send list: sent again,
        # unless held back behind a damaged local pack
        "damaged": sorted(set(state.get("damaged", [])) & set(result.held_back)),
        "last_result": {"sent_objects": result.sent_objects, "sent_bytes": result.sent_bytes,
                        "resent_damaged": result.resent_damaged,
                        "duration_s": result.duration_s},
    })
    save_state(state_dir, site.name, state)
    return result


# --- verifying a site -------------------------------------------------------------------------
def _index_packs_missing(keys: crypto.MasterKeys, name: str, data: bytes,
                         remote: dict[str, int]) -> str | None:
    """What is wrong with index file ``name`` on the site: undecryptable, or naming
    packs the site does not hold (a restore from the site would fail); else None."""
    try:
        packs = parse_index_object(keys, name, data)
    except CorruptObject as exc:
        return exc.problem
    missing = sorted(pack_name(p) for p in packs if pack_name(p) not in remote)
    if not missing:
        return None
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return (f"names {len(missing)} pack(s) not on the site: " + ", ".join(missing[:3]) + more
            + " (replicate again; if the pack is damaged locally, see docs/backup.md)")


@dataclass
class SiteCheckReport(FindingsReport):
    site: str
    url: str
    errors: list = field(default_factory=list)      # {"object", "problem"}
    objects: int = 0
    objects_read: int = 0
    bytes_read: int = 0
    packs: int = 0
    packs_read: int = 0
    not_yet_replicated: int = 0
    only_on_site: int = 0
    index_checked: bool = False      # index -> pack presence verified (needs a key)
    wal_files: int = 0
    wal_chains: list = field(default_factory=list)  # ChainReport per cluster (opskit.backup.db)


def _local_id(source: Backend, name: str) -> str | None:
    """BLAKE3 of the local copy of ``name``; None when it is gone (WAL retention)."""
    try:
        return crypto.object_id(source.get(name))
    except ObjectNotFound:
        return None


def check_site(source: Backend, site: Site, state_dir: str, *, dest: Backend | None = None,
               read_data_fraction: float = 0.0, seed: int | None = None,
               workers: int | None = None, keys: crypto.MasterKeys | None = None
               ) -> SiteCheckReport:
    """Verify the copy itself: every key, config, index and snapshot object on the
    site is read and re-hashed (BLAKE3 must equal its name); a
    ``read_data_fraction`` of the packs too (all at 1.0); every pack's size is
    compared with the local one. Objects replicated before and now missing on
    the site are named. With ``keys`` (any key slot of the repository), every
    index file on the site is decrypted and each pack it names must be on the
    site too. Damaged or missing objects are recorded in the state, so the next
    ``replicate`` sends them again."""
    dest = dest or open_site(site)
    state = load_state(state_dir, site.name)
    report = SiteCheckReport(site.name, site.url, index_checked=keys is not None)
    try:
        remote = list_all(dest)
        local = list_all(source)
        report.objects = len(remote)
        # WAL files are bulk data like packs: re-hashed with --read-data(-subset)
        packs = sorted(n for n in remote if n.startswith(("data/", WAL)))
        report.packs = len(packs)
        report.wal_files = sum(1 for n in remote if n.startswith(WAL))
        digests = state.get("wal_digests") or {}
        rng = random.Random(seed)
        if read_data_fraction >= 1.0:
            chosen = set(packs)
        elif read_data_fraction > 0:
            chosen = set(rng.sample(packs, max(1, round(len(packs) * read_data_fraction)))) \
                if packs else set()
        else:
            chosen = set()
        to_read = [n for n in remote if not n.startswith(("data/", WAL))] + sorted(chosen)
        lock = threading.Lock()

        def verify(name: str) -> None:
            try:
                data = dest.get(name)
            except ObjectNotFound:
                with lock:
                    report.errors.append({"object": name, "problem": "listed but cannot be read"})
                return
            expected = _expected_id(name) or (digests.get(name) or [None])[0]
            if expected is None and name in local:
                expected = _local_id(source, name)
            bad = expected is not None and crypto.object_id(data) != expected
            with lock:
                report.objects_read += 1
                report.bytes_read += len(data)
                if name in chosen:
                    report.packs_read += 1
                if bad:
                    report.errors.append({"object": name,
                                          "problem": "content does not match its name (damaged)"})
            if not bad and keys is not None and name.startswith("index/"):
                problem = _index_packs_missing(keys, name, data, remote)
                if problem:
                    with lock:
                        report.errors.append({"object": name, "problem": problem})

        with ThreadPoolExecutor(max_workers=max(1, workers or site.workers)) as pool:
            list(pool.map(verify, to_read))
        for name, size in remote.items():
            if name in local and local[name] != size:
                if not any(e["object"] == name for e in report.errors):
                    report.errors.append({"object": name, "problem":
                                          f"size {size} on the site, {local[name]} locally"})
        prior = set(state.get("site_names") or ())
        for name in local:
            if name not in remote:
                if name in prior:
                    report.errors.append({"object": name, "problem": "missing on the site "
                                          "(was replicated; deleted behind opskit's back?)"})
                else:
                    report.not_yet_replicated += 1
        report.only_on_site = sum(1 for n in remote if n not in local)
        report.errors.sort(key=lambda e: e["object"])
    finally:
        dest.close()
    state["last_verified"] = _now()
    state["last_check_ok"] = report.ok
    state["damaged"] = sorted({e["object"] for e in report.errors})
    save_state(state_dir, site.name, state)
    return report
