"""The repository layer: keys, config, index, snapshots and blob storage.

Engines (archiver, restorer, checker, ...) use only this class and never
touch backend names or encryption directly.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from struct import error as struct_error
from typing import Any, Callable, Iterator

from opskit.core.errors import IntegrityError, OperationalError, UsageError

from . import crypto
from .cores import available_cores
from .backends import Backend, BackendError, ObjectNotFound
from .index import MasterIndex, decode_index, encode_index
from .pack import (BLOB_DATA, BLOB_DELTA, BLOB_TREE, TRAILER_SIZE, BlobEntry, PackBuilder,
                   decrypt_payload, encrypt_blob, encrypt_payload, pack_kind, read_header)

FORMAT_VERSION = 1
# a delta is kept when <= 1/4 of the full blob's payload: with 1% of rows
# changed a delta is 0.3-3% of it, an unrelated base gives ~100%
DELTA_GAIN = 4
REPAIR_INDEX_HINT = ("rebuild the index from the packs with 'opskit backup repair index' "
                     "(docs/backup.md, 'When the repository is damaged')")


class RepositoryError(OperationalError):
    """The repository cannot be used as asked (missing, wrong passphrase, damaged)."""


class WrongPassphrase(RepositoryError):
    pass


class CorruptObject(RepositoryError):
    """An object failed authentication or parsing; names the object."""

    def __init__(self, name: str, problem: str, hint: str | None = None):
        super().__init__(f"{name}: {problem}", hint=hint)
        self.name = name
        self.problem = problem


class DamagedSnapshot(IntegrityError):
    """A snapshot file asked for (or possibly the newest) cannot be read: exit 1,
    never a silent fallback to another snapshot (#28 item 1)."""

    def __init__(self, sid: str, why: str):
        super().__init__(
            f"snapshot file snapshots/{sid} is damaged{why}",
            hint="run 'opskit backup check', then 'opskit backup repair snapshots' to drop it "
                 "(docs/backup.md, 'When the repository is damaged'); or name an intact "
                 "snapshot id")
        self.snapshot = sid


@dataclass
class RepoConfig:
    id: str
    version: int
    chunk_min: int
    chunk_avg: int
    chunk_max: int
    created: str

    def to_json(self) -> dict:
        return {"id": self.id, "version": self.version, "created": self.created,
                "chunker": {"name": "fastcdc", "min": self.chunk_min, "avg": self.chunk_avg,
                            "max": self.chunk_max}}

    @classmethod
    def from_json(cls, data: dict) -> "RepoConfig":
        ch = data["chunker"]
        return cls(data["id"], int(data["version"]), int(ch["min"]), int(ch["avg"]), int(ch["max"]),
                   data.get("created", ""))


def utcnow_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Repository:
    """An opened (unlocked) repository."""

    def __init__(self, backend: Backend, keys: crypto.MasterKeys, config: RepoConfig,
                 key_name: str | None = None):
        self.backend = backend
        self.keys = keys
        self.config = config
        self.key_name = key_name
        self.index = MasterIndex()
        self.compression_level = 1
        self.pack_size = 16 << 20
        self.index_loaded = False
        self._base_cache: tuple[bytes, bytes] | None = None   # (id, plaintext): delta_base

    # --- creating and opening ----------------------------------------------------
    @classmethod
    def init(cls, backend: Backend, passphrase: bytes, *, chunk_avg: int = 1 << 20,
             kdf_n: int = crypto.KDF_N) -> "Repository":
        """Create a new repository; refuses a location that already holds one."""
        if backend.exists("config"):
            raise RepositoryError(f"{backend.location}: a repository already exists here")
        if hasattr(backend, "create_layout"):
            backend.create_layout()
        # key slots without a config are leftovers of an init that was killed
        # half-way: no repository exists yet, so they protect nothing
        for name, _size in list(backend.list("keys/")):
            backend.delete(name)
        keys = crypto.MasterKeys.generate()
        config = RepoConfig(os.urandom(16).hex(), FORMAT_VERSION, chunk_avg // 2, chunk_avg,
                            chunk_avg * 4, utcnow_iso())
        slot = crypto.make_key_slot(keys, passphrase, n=kdf_n)
        key_name = crypto.object_id(slot)
        backend.put(f"keys/{key_name}", slot)
        repo = cls(backend, keys, config, key_name)
        # config last: its presence marks a complete repository
        backend.put("config", repo.seal_json("config", config.to_json()))
        return repo

    @classmethod
    def open(cls, backend: Backend, passphrase: bytes) -> "Repository":
        """Unlock with any key slot that fits ``passphrase``."""
        if not backend.exists("config"):
            raise RepositoryError(
                f"no repository at {backend.location}",
                hint=f"create one with: opskit backup init --repo {backend.location}")
        keys = key_name = None
        slots = list(backend.list("keys/"))
        if not slots:
            raise RepositoryError(f"{backend.location}: repository has no key slots")
        damaged = []
        config_error: CorruptObject | None = None
        config_raw = backend.get("config")
        for name, _size in slots:
            raw = backend.get(name)
            if crypto.object_id(raw) != name.split("/")[-1]:
                damaged.append(name)   # edited or corrupted: never trust it
                continue
            try:
                candidate = crypto.open_key_slot(raw, passphrase)
            except crypto.DecryptError:
                continue
            try:
                # a slot must open *this* repository's config (a stray slot from
                # another key set would otherwise lock us out)
                cls(backend, candidate, RepoConfig("", 0, 0, 0, 0, "")).open_json(
                    "config", config_raw, "config")
            except CorruptObject as exc:
                config_error = exc
                continue
            keys, key_name = candidate, name.split("/")[-1]
            break
        if keys is None:
            if config_error is not None:
                raise config_error      # the passphrase fits, the config does not decrypt
            if damaged:
                raise RepositoryError(
                    f"cannot unlock repository {backend.location}: key slot(s) "
                    + ", ".join(damaged) + " damaged (content does not match the name); "
                    "no intact slot accepts this passphrase")
            raise WrongPassphrase(f"wrong passphrase for repository {backend.location}")
        repo = cls(backend, keys, RepoConfig("", 0, 0, 0, 0, ""), key_name)
        data = repo.open_json("config", config_raw, "config")
        repo.config = RepoConfig.from_json(data)
        if repo.config.version != FORMAT_VERSION:
            raise RepositoryError(f"{backend.location}: repository format {repo.config.version} "
                                  f"is not supported by this opskit (knows {FORMAT_VERSION})")
        return repo

    # --- encrypted JSON files ------------------------------------------------------
    def seal_json(self, kind: str, obj: Any) -> bytes:
        raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        return crypto.encrypt_role(self.keys, kind, crypto.compress(raw, 3), b"opskit:" + kind.encode())

    def open_json(self, kind: str, stored: bytes, name: str) -> Any:
        try:
            return json.loads(crypto.decompress(crypto.decrypt_role(
                self.keys, kind, stored, b"opskit:" + kind.encode())))
        except (crypto.DecryptError, ValueError) as exc:
            raise CorruptObject(name, f"cannot be decrypted or parsed ({exc})") from None

    def save_file(self, folder: str, kind: str, obj: Any) -> str:
        """Store an encrypted JSON object in ``folder``; returns its id."""
        stored = self.seal_json(kind, obj)
        oid = crypto.object_id(stored)
        self.backend.put(f"{folder}/{oid}", stored)
        return oid

    def load_file(self, folder: str, kind: str, oid: str) -> Any:
        name = f"{folder}/{oid}"
        stored = self.backend.get(name)
        if crypto.object_id(stored) != oid:
            raise CorruptObject(name, "content does not match its name (damaged)")
        return self.open_json(kind, stored, name)

    # --- index ---------------------------------------------------------------------
    def load_index(self, *, repair: bool = True, progress: Callable[[str], None] | None = None
                   ) -> list[str]:
        """Read every index file; re-index packs no index names (crash leftovers).

        Returns the ids of packs that had to be re-indexed.
        """
        for name, _size in self.backend.list("index/"):
            try:
                plain = self.read_index_plaintext(name)
                try:
                    self.index.add_index_plaintext(plain)
                except (crypto.DecryptError, ValueError, KeyError, struct_error) as exc:
                    raise CorruptObject(name, f"cannot be parsed ({exc})") from None
            except CorruptObject as exc:
                exc.hint = exc.hint or REPAIR_INDEX_HINT
                raise
        self.index_loaded = True
        orphans = [(n, s) for n, s in self.backend.list("data/")
                   if n.split("/")[-1] not in self.index.packs]
        if not orphans or not repair:
            return [n.split("/")[-1] for n, _ in orphans]
        recovered: dict[str, list[BlobEntry]] = {}
        for name, size in orphans:
            pack_id = name.split("/")[-1]
            try:
                entries = self.read_pack_header(pack_id, size)
            except (CorruptObject, BackendError):
                continue  # unusable leftover; prune removes it
            recovered[pack_id] = entries
            self.index.add_pack(pack_id, entries)
        if recovered:
            self.write_index(recovered)
        return list(recovered)

    def read_index_plaintext(self, name: str) -> bytes:
        """Fetch, check and decrypt one index file; CorruptObject names it when damaged."""
        return open_index_object(self.keys, name, self.backend.get(name))

    def read_index_file(self, name: str) -> dict[str, list[BlobEntry]]:
        """Decrypt and parse one index file; CorruptObject names it when damaged."""
        return parse_index_object(self.keys, name, self.backend.get(name))

    def read_pack_header(self, pack_id: str, size: int | None = None) -> list[BlobEntry]:
        name = pack_name(pack_id)
        if size is None:
            size = self.backend.size(name)
        tail_len = min(size, 64 << 10)
        tail = self.backend.get(name, size - tail_len, tail_len)
        try:
            from .pack import header_span
            need = header_span(tail) if len(tail) >= TRAILER_SIZE else size + 1
            if need > len(tail) and need <= size:
                tail = self.backend.get(name, size - need, need)
            return read_header(self.keys, tail, size)
        except (crypto.DecryptError, ValueError, KeyError, Exception) as exc:
            if isinstance(exc, BackendError):
                raise
            raise CorruptObject(name, f"pack header unreadable ({exc})") from None

    def write_index(self, packs: dict[str, list[BlobEntry] | bytes]) -> str:
        """Store one index file naming ``packs`` (entries, or ``encode_entries``
        bytes); returns its id. The packs must exist already (format doc, Write order)."""
        stored = crypto.seal_compressed(self.keys.index_key, encode_index(packs), b"opskit:index", 3)
        oid = crypto.object_id(stored)
        self.backend.put(f"index/{oid}", stored)
        return oid

    # --- blobs -----------------------------------------------------------------------
    def _payload(self, bid: bytes) -> tuple[str, bytes]:
        """(pack name, decrypted payload) of a blob; CorruptObject when missing/damaged."""
        loc = self.index.lookup(bid)
        if loc is None:
            raise CorruptObject(f"blob {bid.hex()}", "not in the index (missing data)")
        name = pack_name(loc.pack)
        stored = self.backend.get(name, loc.offset, loc.length)
        entry = BlobEntry(loc.type, bid, loc.offset, loc.length, loc.raw_length)
        try:
            return name, decrypt_payload(self.keys, entry, stored)
        except crypto.DecryptError as exc:
            raise CorruptObject(name, f"blob {bid.hex()[:16]} damaged ({exc})") from None

    def read_blob(self, bid: bytes) -> bytes:
        """A blob's plaintext; a delta blob (codec 2) is rebuilt from its base."""
        name, payload = self._payload(bid)
        base_id = crypto.delta_base(payload)
        base = self.delta_base(bid, base_id) if base_id is not None else None
        try:
            return crypto.decompress(payload, base)
        except crypto.DecryptError as exc:
            raise CorruptObject(name, f"blob {bid.hex()[:16]} damaged ({exc})") from None

    def delta_base(self, bid: bytes, base_id: bytes) -> bytes:
        """Plaintext of the base of delta blob ``bid``, checked against its id.
        The last one is kept: a stream's deltas often share a base in a row.
        CorruptObject naming both blobs when the base is missing or damaged."""
        cached = self._base_cache
        if cached is not None and cached[0] == base_id:
            return cached[1]
        try:
            name, payload = self._payload(base_id)
            if crypto.delta_base(payload) is not None:
                raise CorruptObject(name, "is itself a delta (deltas never chain)")
            plain = crypto.decompress(payload)
        except (CorruptObject, crypto.DecryptError, BackendError) as exc:
            raise CorruptObject(f"blob {bid.hex()}", f"its delta base blob {base_id.hex()} "
                                f"cannot be read ({getattr(exc, 'problem', exc)})") from None
        if crypto.blob_id(self.keys.id_key, plain) != base_id:
            raise CorruptObject(f"blob {bid.hex()}", f"its delta base blob {base_id.hex()} "
                                "does not match its id (damaged)")
        self._base_cache = (base_id, plain)
        return plain

    def delta_base_of(self, bid: bytes) -> bytes | None:
        """The base id of a stored delta blob; None for a full blob."""
        return crypto.delta_base(self._payload(bid)[1])

    def full_version(self, bid: bytes) -> tuple[bytes, bytes]:
        """(id, plaintext) of the full blob a new delta may point at for
        ``bid``: ``bid`` itself, or its base when ``bid`` is a delta, so a
        delta never points at a delta (chain depth 1)."""
        name, payload = self._payload(bid)
        base_id = crypto.delta_base(payload)
        if base_id is not None:
            return base_id, self.delta_base(bid, base_id)
        try:
            return bid, crypto.decompress(payload)
        except crypto.DecryptError as exc:
            raise CorruptObject(name, f"blob {bid.hex()[:16]} damaged ({exc})") from None

    def load_tree(self, bid: bytes) -> dict:
        try:
            return json.loads(self.read_blob(bid))
        except ValueError as exc:
            raise CorruptObject(f"tree {bid.hex()}", f"not parseable ({exc})") from None

    def blob_writer(self, workers: int | None = None) -> "BlobWriter":
        """A deduplicating writer; ``workers=0`` encodes in the calling thread."""
        return BlobWriter(self, available_cores() if workers is None else workers)

    # --- snapshots -----------------------------------------------------------------
    def list_snapshot_ids(self) -> list[str]:
        return [n.split("/")[-1] for n, _ in self.backend.list("snapshots/")]

    def load_snapshot(self, sid: str) -> dict:
        snap = self.load_file("snapshots", "snapshot", sid)
        snap["id"] = sid
        return snap

    def snapshots(self) -> list[dict]:
        """All readable snapshots, oldest first. A damaged snapshot file is left
        out (and listed in ``damaged_snapshots``) so it cannot block backups or
        restores of the others; ``check`` reports it."""
        snaps = []
        self.damaged_snapshots: list[str] = []
        for sid in self.list_snapshot_ids():
            try:
                snaps.append(self.load_snapshot(sid))
            except CorruptObject:
                self.damaged_snapshots.append(sid)
        snaps.sort(key=lambda s: (s.get("time", ""), s["id"]))
        return snaps

    def save_snapshot(self, snap: dict) -> str:
        body = {k: v for k, v in snap.items() if k != "id"}
        return self.save_file("snapshots", "snapshot", body)

    def resolve_snapshot(self, ref: str, snapshots: list[dict] | None = None) -> dict:
        """Find a snapshot by 'latest' or a unique id prefix (>= 4 hex digits)."""
        snaps = self.snapshots() if snapshots is None else snapshots
        damaged = getattr(self, "damaged_snapshots", [])
        if ref == "latest" and damaged:
            # a damaged file has no readable time: it may be the newest, so
            # 'latest' must not quietly mean an older snapshot (#28 item 1)
            raise DamagedSnapshot(sorted(damaged)[0], " and may be the newest: 'latest' "
                                  "cannot be resolved" + (f" ({len(damaged)} damaged)"
                                                          if len(damaged) > 1 else ""))
        if not snaps:
            raise UsageError(f"repository {self.backend.location} has no snapshots yet")
        if ref == "latest":
            return snaps[-1]
        ref = ref.lower()
        if len(ref) < 4 or any(c not in "0123456789abcdef" for c in ref):
            raise UsageError(f"snapshot {ref!r}: expected 'latest' or at least 4 hex digits of an id")
        bad = [sid for sid in damaged if sid.startswith(ref)]
        if bad:
            raise DamagedSnapshot(bad[0], "")
        hits = [s for s in snaps if s["id"].startswith(ref)]
        if not hits:
            raise UsageError(f"snapshot {ref!r} not found (see: opskit backup snapshots)")
        if len(hits) > 1:
            raise UsageError(f"snapshot {ref!r} is ambiguous: matches "
                             + ", ".join(s["id"][:12] for s in hits))
        return hits[0]


def open_index_object(keys: crypto.MasterKeys, name: str, stored: bytes) -> bytes:
    """Check and decrypt the stored bytes of index file ``name`` (a full or a
    write-only key); CorruptObject names it when damaged."""
    if crypto.object_id(stored) != name.split("/")[-1]:
        raise CorruptObject(name, "content does not match its name (damaged)")
    try:
        return crypto.open_compressed(keys.index_key, stored, b"opskit:index")
    except (crypto.DecryptError, ValueError) as exc:
        raise CorruptObject(name, f"cannot be decrypted or parsed ({exc})") from None


def parse_index_object(keys: crypto.MasterKeys, name: str, stored: bytes
                       ) -> dict[str, list[BlobEntry]]:
    """``open_index_object`` and parse: {pack id: [BlobEntry, ...]}."""
    plain = open_index_object(keys, name, stored)
    try:
        return decode_index(plain)
    except (crypto.DecryptError, ValueError, KeyError, struct_error) as exc:
        raise CorruptObject(name, f"cannot be decrypted or parsed ({exc})") from None


def pack_name(pack_id: str) -> str:
    return f"data/{pack_id[:2]}/{pack_id}"


class BlobWriter:
    """Deduplicating, parallel compress+encrypt into packs.

    ``add`` returns at once; worker threads compress and encrypt (zstd, AES
    and BLAKE3 release the GIL, so both cores work). Memory is bounded by a
    semaphore on bytes in flight. ``finish`` flushes packs and writes one
    index file naming them (write order: packs, then index).
    """

    def __init__(self, repo: Repository, workers: int):
        self.repo = repo
        # workers=0: encode in the caller's thread. The archiver uses that for
        # trees, so it never has threads of its own when it forks its workers.
        self.pool = (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="opskit-pack")
                     if workers else None)
        self._inflight = threading.BoundedSemaphore(max(1, workers) * 4)
        self._lock = threading.Lock()
        self._add_lock = threading.Lock()
        self._builders = {BLOB_DATA: PackBuilder(BLOB_DATA), BLOB_TREE: PackBuilder(BLOB_TREE)}
        self._pending: set[bytes] = set()
        self.new_packs: dict[str, list[BlobEntry] | bytes] = {}   # bytes: index.encode_entries
        self.error: BaseException | None = None
        self.blobs_new = 0
        self.bytes_new_raw = 0
        self.bytes_stored = 0
        self.blobs_delta = 0
        self.delta_bases: dict[bytes, bytes] = {}    # new delta blob -> its base (this run)
        self._jobs: list = []

    def known(self, bid: bytes) -> bool:
        return bid in self.repo.index or bid in self._pending

    def new(self, bid: bytes) -> bool:
        """True when this writer stores ``bid`` (it was not in the repository)."""
        return bid in self._pending

    def add(self, blob_type: str, bid: bytes, plaintext: bytes) -> bool:
        """Queue a blob unless the repository already has it; True when new."""
        return self._queue(bid, plaintext, self._encode, blob_type, bid, plaintext)

    def add_delta(self, bid: bytes, plaintext: bytes, candidate: bytes) -> bool:
        """Queue a data blob to be stored as a delta against the full version
        of blob ``candidate`` (its previous version) when that is clearly
        smaller, else as a full blob; True when new. The base is read by the
        worker, so its plaintext is held only while the job runs."""
        return self._queue(bid, plaintext, self._encode_delta, bid, plaintext, candidate)

    def _queue(self, bid: bytes, plaintext: bytes, job: Callable, *args) -> bool:
        if self.error:
            raise self.error
        with self._add_lock:       # several dump threads may add at once (db/logical.py)
            if bid in self.repo.index or bid in self._pending:
                return False
            self._pending.add(bid)
            self.blobs_new += 1
            self.bytes_new_raw += len(plaintext)
        self._inflight.acquire()
        if self.pool is None:
            job(*args)
            if self.error:
                raise self.error
        else:
            future = self.pool.submit(job, *args)
            if job == self._encode_delta:     # settle() waits for these only
                self._jobs.append(future)
        return True

    def settle(self) -> None:
        """Wait until every queued delta candidate is encoded (``delta_bases`` complete)."""
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.result()
        if self.error:
            raise self.error

    def _encode(self, blob_type: str, bid: bytes, plaintext: bytes) -> None:
        try:
            self._store(blob_type, bid, encrypt_blob(self.repo.keys, blob_type, bid, plaintext,
                                                     self.repo.compression_level), len(plaintext))
        except BaseException as exc:  # surfaced by the next add()/finish()
            self.error = exc
        finally:
            self._inflight.release()

    def _encode_delta(self, bid: bytes, plaintext: bytes, candidate: bytes) -> None:
        try:
            payload = crypto.compress(plaintext, self.repo.compression_level)
            try:
                base_id, base = self.repo.full_version(candidate)
            except (RepositoryError, BackendError):
                base_id = None      # an unreadable old version: store in full, check reports it
            kind = BLOB_DATA
            if base_id is not None:
                delta = crypto.compress_delta(plaintext, base_id, base)
                del base
                # worth a base read on every restore only when clearly smaller
                if len(delta) * DELTA_GAIN <= len(payload):
                    payload, kind = delta, BLOB_DELTA
                    with self._lock:
                        self.delta_bases[bid] = base_id
                        self.blobs_delta += 1
            self._store(kind, bid, encrypt_payload(self.repo.keys, kind, bid, payload),
                        len(plaintext))
        except BaseException as exc:  # surfaced by the next add()/finish()
            self.error = exc
        finally:
            self._inflight.release()

    def _store(self, blob_type: str, bid: bytes, stored: bytes, raw_length: int) -> None:
        """Put an encrypted blob into its pack builder; write the pack when full."""
        full = None
        kind = pack_kind(blob_type)
        with self._lock:
            builder = self._builders[kind]
            builder.add(blob_type, bid, stored, raw_length)
            self.bytes_stored += len(stored)
            if builder.size >= self.repo.pack_size:
                full = builder
                self._builders[kind] = PackBuilder(kind)
        if full is not None:
            self._write_pack(full)

    def _write_pack(self, builder: PackBuilder) -> None:
        data = builder.finish(self.repo.keys)
        pack_id = crypto.object_id(data)
        self.repo.backend.put(pack_name(pack_id), data)
        with self._lock:
            self.new_packs[pack_id] = builder.entries
        self.repo.index.add_pack(pack_id, builder.entries)

    def finish(self) -> str | None:
        """Wait for workers, write the last packs and the index; returns the index id."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.error:
            raise self.error
        for kind in (BLOB_DATA, BLOB_TREE):
            builder = self._builders[kind]
            if builder.entries:
                self._write_pack(builder)
                self._builders[kind] = PackBuilder(kind)
        if not self.new_packs:
            return None
        return self.repo.write_index(self.new_packs)

    def abort(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
