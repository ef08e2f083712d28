"""The correction ledger: hash-chained, Ed25519-signed entries in SQLite or PostgreSQL.

An entry is stored as one line of text::

    {"hash":"<sha256 hex>","sig":"<base64 ed25519>","signed":{"actor":"alice","body":{...},
     "key":"<base64 ed25519 public key>","kind":"request","prev":"<sha256 hex>",
     "request":"CR-1","seq":1,"time":"2026-11-01T08:00:00.123Z","v":1}}

* ``signed`` is canonical JSON (``opskit.core.audit.canonical``: sorted keys,
  no spaces, UTF-8); ``hash`` is the SHA-256 of exactly those bytes, so
  verification slices instead of re-serialising.
* ``seq``    1, 2, 3 ... with no gaps; the real order (R-AUD-3).
* ``prev``   SHA-256 of the previous entry's whole stored line (covering its
             signature); 64 zeros for seq 1.
* ``sig``    Ed25519 signature, by ``key``, over ``SIG_CONTEXT + hash`` (opskit.core.signing).
* ``kind``   request | approve | reject | withdraw | apply-started | applied | apply-failed |
             apply-aborted.

Code works on the *flat* view (signed fields + ``hash`` + ``sig``, see
``decode``/``encode``).

This is the audit log's chain (docs/audit-log.md) plus a signature on every
entry: editing an entry breaks its hash; recomputing the hash breaks its
signature; deleting, inserting or reordering breaks ``seq``/``prev``; and an
entry signed by a key nobody declared is named as forged. Rewriting history
now needs the private key of everyone who signed after the change.

Writers take the database's own lock (SQLite ``BEGIN IMMEDIATE``;
PostgreSQL a transaction-level advisory lock, so the writer role needs only
INSERT and SELECT on a table another role owns) for the whole
read-head/decide/insert step, so the state check for a transition (e.g.
"approved and not yet claimed") and the entry that makes it happen are one
atomic step: two executors racing on one request cannot both claim it.
``seq`` being the primary key is the second line of defence.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from opskit.core.audit import GENESIS, canonical, utc_now
from opskit.core.errors import LockHeldError, OperationalError, Refused, UsageError  # noqa: F401 (Refused re-exported)

from opskit.core.optional import require
from opskit.core.signing import Signer

FORMAT = "opskit-corrections-ledger"
VERSION = 1
TABLE = "opskit_correction_ledger"
KINDS = ("request", "approve", "reject", "withdraw", "apply-started", "applied", "apply-failed",
         "apply-aborted")

_DDL_SQLITE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq     INTEGER PRIMARY KEY,
    request TEXT NOT NULL,
    kind    TEXT NOT NULL,
    entry   TEXT NOT NULL
)"""
_DDL_PG = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq     BIGINT PRIMARY KEY,
    request TEXT NOT NULL,
    kind    TEXT NOT NULL,
    entry   TEXT NOT NULL
)"""
_INDEX = f"CREATE INDEX IF NOT EXISTS {TABLE}_request ON {TABLE} (request)"
_CREATE_LOCK = 0x6F70736B6974          # "opskit": advisory lock keys in the ledger database
_APPEND_LOCK = 0x6F70736B6974 + 1


SIGNED_FIELDS = ("v", "seq", "time", "kind", "request", "actor", "key", "body", "prev")


def entry_hash(entry: dict) -> str:
    """SHA-256 of the canonical JSON of the signed fields of a (flat) entry."""
    return hashlib.sha256(canonical({k: entry[k] for k in SIGNED_FIELDS if k in entry})).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _prefix(h: str, sig: str) -> str:
    return '{"hash":"' + h + '","sig":"' + sig + '","signed":'


def encode(entry: dict) -> str:
    """Stored text of a flat entry: ``{"hash":H,"sig":S,"signed":<canonical signed fields>}``.
    ``hash`` is the SHA-256 of exactly the bytes after ``"signed":``, so verifying
    needs no re-serialisation (100 000 entries in seconds)."""
    signed = canonical({k: entry[k] for k in SIGNED_FIELDS if k in entry}).decode("utf-8")
    return _prefix(entry["hash"], entry["sig"]) + signed + "}"


def decode(text: str) -> dict:
    """The flat view (signed fields + hash + sig) of a stored entry text."""
    obj = json.loads(text)
    if not isinstance(obj, dict) or not isinstance(obj.get("signed"), dict):
        raise ValueError("not a stored ledger entry")
    return dict(obj["signed"], hash=obj.get("hash"), sig=obj.get("sig"))


def split(text: str) -> tuple[dict, str, str, str]:
    """(signed fields, hash, sig, signed text) of a stored entry; ValueError when the
    text is not in stored form."""
    obj = json.loads(text)
    if not isinstance(obj, dict) or set(obj) != {"hash", "sig", "signed"}:
        raise ValueError("not an object with exactly hash, sig and signed")
    h, sig, signed = obj["hash"], obj["sig"], obj["signed"]
    if not isinstance(h, str) or not isinstance(sig, str) or not isinstance(signed, dict):
        raise ValueError("hash, sig or signed has the wrong type")
    prefix = _prefix(h, sig)
    if not text.startswith(prefix) or not text.endswith("}"):
        raise ValueError("not in stored form (re-serialised?)")
    return signed, h, sig, text[len(prefix):-1]


def build_entry(*, seq: int, prev: str, kind: str, request: str, actor: str, body: dict,
                signer: Signer, time: str | None = None) -> tuple[dict, str]:
    """A signed entry (flat view) and its stored text."""
    entry = {"v": VERSION, "seq": seq, "time": time or utc_now(), "kind": kind, "request": request,
             "actor": actor, "key": signer.public_b64, "body": body, "prev": prev}
    signed = canonical(entry)
    entry["hash"] = hashlib.sha256(signed).hexdigest()
    entry["sig"] = signer.sign(entry["hash"].encode("ascii"))
    return entry, _prefix(entry["hash"], entry["sig"]) + signed.decode("utf-8") + "}"


@dataclass
class Stored:
    seq: int
    text: str

    def entry(self) -> dict:
        return decode(self.text)


class Ledger:
    """Common interface: ``append`` (atomic decide-and-write), ``entries``, ``for_request``."""

    url: str

    def append(self, request: str | None, decide: Callable[[list[dict], int], dict],
               signer: Signer) -> dict:
        """Under the ledger lock: read ``request``'s entries (None: a new request), call
        ``decide(entries, next_seq)`` which returns ``{kind, actor, body[, request]}`` or
        raises Refused, then sign and insert the entry. Returns the entry."""
        raise NotImplementedError

    def texts(self) -> Iterator[Stored]:
        raise NotImplementedError

    def entries(self) -> Iterator[dict]:
        for stored in self.texts():
            yield stored.entry()

    def for_request(self, request: str) -> list[dict]:
        raise NotImplementedError

    def head(self) -> tuple[int, str] | None:
        raise NotImplementedError

    def rows_from(self, seq: int) -> list[tuple[int, str, str, str]]:
        """(seq, request, kind, entry) of every stored row from ``seq`` on, as stored: the
        ``seq``/``request``/``kind`` columns are NOT signed, only ``entry`` is."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _make(decide, request, rows: list[str], seq: int, prev: str, signer: Signer) -> tuple[dict, str]:
    entries = [decode(t) for t in rows]
    spec = decide(entries, seq)
    return build_entry(seq=seq, prev=prev, kind=spec["kind"],
                       request=spec.get("request") or request, actor=spec["actor"],
                       body=spec["body"], signer=signer)


class SqliteLedger(Ledger):
    def __init__(self, path: str, lock_timeout: float = 10.0, create: bool = True):
        self.url = os.path.abspath(path)
        self.lock_timeout = lock_timeout
        if not os.path.exists(self.url):
            if not create:
                raise UsageError(f"ledger {self.url} does not exist")
            os.makedirs(os.path.dirname(self.url), mode=0o700, exist_ok=True)
            fd = os.open(self.url, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
            os.close(fd)
        try:
            self.conn = sqlite3.connect(self.url, timeout=lock_timeout, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute(_DDL_SQLITE)
            self.conn.execute(_INDEX)
        except sqlite3.Error as exc:
            raise OperationalError(f"cannot open the ledger {self.url}: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    def append(self, request, decide, signer):
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise LockHeldError(f"ledger {self.url} is locked by another writer: {exc}") from None
        try:
            row = c.execute(f"SELECT seq, entry FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, text_hash(row[1])) if row else (1, GENESIS)
            rows = [] if request is None else [r[0] for r in c.execute(
                f"SELECT entry FROM {TABLE} WHERE request = ? ORDER BY seq", (request,))]
            entry, text = _make(decide, request, rows, seq, prev, signer)
            c.execute(f"INSERT INTO {TABLE} (seq, request, kind, entry) VALUES (?, ?, ?, ?)",
                      (entry["seq"], entry["request"], entry["kind"], text))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return entry

    def texts(self) -> Iterator[Stored]:
        cur = self.conn.execute(f"SELECT seq, entry FROM {TABLE} ORDER BY seq")
        while True:
            batch = cur.fetchmany(5000)
            if not batch:
                break
            for seq, text in batch:
                yield Stored(seq, text)

    def for_request(self, request: str) -> list[dict]:
        return [decode(r[0]) for r in self.conn.execute(
            f"SELECT entry FROM {TABLE} WHERE request = ? ORDER BY seq", (request,))]

    def head(self):
        row = self.conn.execute(f"SELECT seq, entry FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], decode(row[1])["hash"]) if row else None

    def rows_from(self, seq: int) -> list[tuple[int, str, str, str]]:
        return [tuple(r) for r in self.conn.execute(
            f"SELECT seq, request, kind, entry FROM {TABLE} WHERE seq >= ? ORDER BY seq", (seq,))]

    def insert_raw(self, rows: Iterable[tuple[int, str, str, str]]) -> None:
        """Bulk-load already signed entries (benchmarks, imports); no checks."""
        self.conn.execute("BEGIN")
        self.conn.executemany(f"INSERT INTO {TABLE} (seq, request, kind, entry) VALUES (?, ?, ?, ?)",
                              rows)
        self.conn.execute("COMMIT")


class PostgresLedger(Ledger):
    def __init__(self, url: str, lock_timeout: float = 10.0):
        psycopg = require("psycopg", extra="postgres")
        self.url = url
        self.lock_timeout = lock_timeout
        try:
            self.conn = psycopg.connect(url, connect_timeout=10, autocommit=False)
            with self.conn.cursor() as cur:
                # one creator at a time: CREATE TABLE IF NOT EXISTS races on the catalog
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
                if not cur.fetchone()[0]:
                    # only when missing: an append-only writer (INSERT, SELECT on a table
                    # another role owns) may neither create nor index (docs/corrections.md)
                    cur.execute(_DDL_PG)
                    cur.execute(_INDEX)
            self.conn.commit()
        except psycopg.Error as exc:
            from .rulesfile import redact_url
            raise OperationalError(f"cannot open the ledger {redact_url(url)}: "
                                   f"{str(exc).strip().splitlines()[0]}") from None

    def close(self) -> None:
        self.conn.close()

    def append(self, request, decide, signer):
        psycopg = require("psycopg", extra="postgres")
        c = self.conn
        try:
            with c.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, true)",
                            (str(int(self.lock_timeout * 1000)),))
                try:
                    # readers go on; writers queue here, so decide() sees the final state. An
                    # advisory lock, not LOCK TABLE: that needs UPDATE/DELETE/TRUNCATE rights
                    # the append-only writer must not have; seq (primary key) backs it up
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))
                except psycopg.errors.LockNotAvailable:
                    raise LockHeldError("the ledger is locked by another writer "
                                        f"(waited {self.lock_timeout:g}s)") from None
                cur.execute(f"SELECT seq, entry FROM {TABLE} ORDER BY seq DESC LIMIT 1")
                row = cur.fetchone()
                seq, prev = (row[0] + 1, text_hash(row[1])) if row else (1, GENESIS)
                rows = []
                if request is not None:
                    cur.execute(f"SELECT entry FROM {TABLE} WHERE request = %s ORDER BY seq",
                                (request,))
                    rows = [r[0] for r in cur.fetchall()]
                entry, text = _make(decide, request, rows, seq, prev, signer)
                cur.execute(f"INSERT INTO {TABLE} (seq, request, kind, entry) VALUES (%s, %s, %s, %s)",
                            (entry["seq"], entry["request"], entry["kind"], text))
            c.commit()
        except BaseException:
            c.rollback()
            raise
        return entry

    def texts(self) -> Iterator[Stored]:
        c = self.conn
        with c.cursor(name="ledger_scan") as cur:
            cur.itersize = 5000
            cur.execute(f"SELECT seq, entry FROM {TABLE} ORDER BY seq")
            for seq, text in cur:
                yield Stored(seq, text)
        c.rollback()

    def for_request(self, request: str) -> list[dict]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT entry FROM {TABLE} WHERE request = %s ORDER BY seq", (request,))
            out = [decode(r[0]) for r in cur.fetchall()]
        self.conn.rollback()
        return out

    def head(self):
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT seq, entry FROM {TABLE} ORDER BY seq DESC LIMIT 1")
            row = cur.fetchone()
        self.conn.rollback()
        return (row[0], decode(row[1])["hash"]) if row else None

    def rows_from(self, seq: int) -> list[tuple[int, str, str, str]]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT seq, request, kind, entry FROM {TABLE} WHERE seq >= %s ORDER BY seq",
                        (seq,))
            out = [tuple(r) for r in cur.fetchall()]
        self.conn.rollback()
        return out


class ExportLedger(Ledger):
    """A read-only ledger loaded from an export file (json, csv or html) for offline verify."""

    def __init__(self, path: str):
        self.url = os.path.abspath(path)
        self._rows = load_export(path)

    def texts(self) -> Iterator[Stored]:
        for i, text in enumerate(self._rows, 1):
            yield Stored(i, text)

    def for_request(self, request: str) -> list[dict]:
        return [e for e in self.entries() if e.get("request") == request]

    def head(self):
        return None

    def append(self, request, decide, signer):
        raise UsageError("an exported ledger is read-only")


def open_ledger(location: str, lock_timeout: float = 10.0, create: bool = True) -> Ledger:
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresLedger(location, lock_timeout)
    return SqliteLedger(location, lock_timeout, create=create)


# --- export --------------------------------------------------------------------------

EXPORT_MARK = "opskit-corrections-ledger-export"


def load_export(path: str) -> list[str]:
    """Stored entry texts from a json, csv or html export (or a JSON-lines dump)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"export {path} not found") from None
    except UnicodeDecodeError:
        raise UsageError(f"export {path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read export {path}: {exc.strerror}") from None
    stripped = data.lstrip()
    if stripped.startswith("<"):
        start = data.find('<script type="application/json" id="ledger">')
        end = data.find("</script>", start)
        if start < 0 or end < 0:
            raise UsageError(f"{path}: HTML without the embedded ledger data")
        body = data[start + len('<script type="application/json" id="ledger">'):end]
        try:
            payload = json.loads(body)      # written with <, > and & as \u escapes
        except ValueError:
            raise UsageError(f"{path}: embedded ledger data is not valid JSON") from None
        return _entries_of(payload, path)
    if stripped.startswith("{") and '"format"' in stripped[:200]:
        try:
            payload = json.loads(data)
        except ValueError as exc:
            raise UsageError(f"{path}: not valid JSON ({exc})") from None
        return _entries_of(payload, path)
    if stripped.startswith("{"):
        return [line for line in data.splitlines() if line.strip()]
    import csv
    import io
    reader = csv.DictReader(io.StringIO(data, newline=""))
    if not reader.fieldnames or "entry" not in reader.fieldnames:
        raise UsageError(f"{path}: not a ledger export (json, csv with an 'entry' column, or html)")
    return [row["entry"] for row in reader]


def _entries_of(payload: Any, path: str) -> list[str]:
    if not isinstance(payload, dict) or payload.get("format") != EXPORT_MARK:
        raise UsageError(f"{path}: not an opskit corrections ledger export")
    entries = payload.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise UsageError(f"{path}: 'entries' must be a list of entry strings")
    return entries
