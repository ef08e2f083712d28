"""The databases corrections run against: SQLite files and PostgreSQL (psycopg 3).

Two operations, both with parameterised SQL only:

* ``read_before_image`` -- at request time, in a READ ONLY transaction
  (SQLite ``mode=ro``): the rows the statement would touch, and an
  ``EXPLAIN`` of the statement itself so a typo is caught before anybody
  approves it.
* ``apply`` -- one transaction: lock (SQLite ``BEGIN IMMEDIATE``;
  PostgreSQL ``SELECT ... FOR UPDATE`` on the rows), re-read the
  before-image and refuse if it changed since approval, run the statement
  with ``RETURNING *`` (the after-image), refuse if the row count differs or
  the rows it changed are not the locked ones (``_other_rows``: by primary
  key, else by the locked row versions), commit. Any refusal or error rolls
  back (R-DAT-1, R-DAT-2).

The apply also inserts a commit marker (a row in ``opskit_correction_applied``
in the target database, keyed by the ledger's claim entry hash, holding the
after-image) in the same transaction: it exists if and only if the change
committed, so ``settle`` after a crash reads it instead of guessing from the
live rows (R-DAT-1).

On PostgreSQL every statement is sent alone over the extended query protocol
(see ``_Tx``) on a session with ``standard_conforming_strings=on``, so the
server reads the text exactly as pglast did in sqlcheck.py and can never run a
second statement hidden in it. SQLite's driver runs one statement per call.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from opskit.core.audit import canonical
from opskit.core.errors import OperationalError, UsageError
from opskit.core.optional import require

from . import preview as _preview
from .effects import (base_tables, cascades, check_visible, effects_digest, relation_names,
                      trigger_effects, trigger_tables, triggers_on)
from .rulesfile import Target, password_for
from .sqlcheck import Statement, check_resolved, params_of, to_pyformat


class TargetError(OperationalError):
    """The target database could not be reached or refused the statement."""


def jsonable(value: Any) -> Any:
    """One cell as a JSON value that keeps its meaning: decimals as exact
    strings, times as ISO-8601, bytes as ``\\x`` hex."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, _dt.datetime) and value.tzinfo is not None:
        # one spelling of an instant whatever the session's TimeZone (R-DAT-1: same digest)
        return value.astimezone(_dt.timezone.utc).isoformat()
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def rows_to_json(columns: list[str], rows) -> list[dict]:
    return [{c: jsonable(v) for c, v in zip(columns, row)} for row in rows]


def image_digest(rows: list[dict]) -> str:
    """SHA-256 of the rows as a multiset: order of the SELECT does not matter."""
    lines = sorted(canonical(r) for r in rows)
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


def _sqlite_params(params: dict) -> dict:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in params.items()}


@dataclass
class Image:
    columns: list[str]
    rows: list[dict]
    effects: list[dict] = field(default_factory=list)   # FK cascades (effects.Effect.to_dict)
    bases: list[str] = field(default_factory=list)       # through a view: its base relations
    trigger_tables: list[str] = field(default_factory=list)  # named by triggers on touched tables
    triggers: list[dict] = field(default_factory=list)   # touched tables with triggers (effects.triggers_on)
    preview: dict | None = None                          # what the statement writes (preview.py)
    names: dict[str, list[str]] = field(default_factory=dict)  # effects.relation_names of the above

    @property
    def digest(self) -> str:
        return image_digest(self.rows)


@dataclass
class ApplyOutcome:
    ok: bool
    row_count: int = 0
    after: list[dict] = field(default_factory=list)
    stage: str = ""          # where it stopped: connect, lock, before-image, rules, execute, row-count, rows, commit
    reason: str = ""
    before_now: list[dict] | None = None
    transient: bool = False  # a retry may succeed (lock timeout, lost connection); see is_transient
    triggers: list[dict] = field(default_factory=list)   # what triggers changed (effects.py)
    sqlstate: str = ""       # the database's error code, kept in the ledger entry (log shows it)


class Database:
    """A connection factory for one target."""

    def __init__(self, target: Target, lock_timeout: float = 10.0):
        self.target = target
        self.lock_timeout = lock_timeout

    # --- connections -------------------------------------------------------------
    def _sqlite(self, readonly: bool) -> sqlite3.Connection:
        path = self.target.url
        if not os.path.exists(path):
            raise TargetError(f"target {self.target.name}: SQLite database {path} not found")
        try:
            if readonly:
                from urllib.parse import quote
                conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True,
                                       timeout=self.lock_timeout, isolation_level=None)
            else:
                conn = sqlite3.connect(path, timeout=self.lock_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise TargetError(f"target {self.target.name}: cannot open {path}: {exc}") from None
        return conn

    def _postgres(self, readonly: bool):
        psycopg = require("psycopg", extra="postgres")
        conninfo_to_dict = require("psycopg.conninfo", extra="postgres").conninfo_to_dict
        kwargs: dict[str, Any] = {"connect_timeout": 10, "autocommit": False}
        pw = password_for(self.target)
        if pw is not None:
            kwargs["password"] = pw
        # the server must read backslashes in strings as pglast did (R-DAT-2): a startup
        # option beats any ALTER ROLE/DATABASE SET standard_conforming_strings = off
        options = conninfo_to_dict(self.target.url).get("options") or ""
        kwargs["options"] = (str(options) + " -c standard_conforming_strings=on").strip()
        try:
            conn = psycopg.connect(self.target.url, **kwargs)
        except psycopg.Error as exc:
            raise TargetError(f"target {self.target.name} ({self.target.safe_url}): cannot "
                              f"connect: {_pg_message(exc)}") from None
        if conn.info.parameter_status("standard_conforming_strings") != "on":
            conn.close()
            raise TargetError(f"target {self.target.name} ({self.target.safe_url}): the server keeps "
                              "standard_conforming_strings off; corrections need it on")
        conn.read_only = readonly
        if readonly:     # one snapshot: before-image, cascades and new values agree
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.prepare_threshold = 5     # prepare=True in _Tx.q needs it not None
        return conn

    # --- request time ------------------------------------------------------------
    def read_before_image(self, stmt: Statement, params: dict, rule_tables: list[str] = ()) -> Image:
        """Rows the statement would touch, read in a read-only transaction (SQLite
        ``mode=ro``; PostgreSQL ``BEGIN READ ONLY``) that only ever sees our statements,
        one at a time; also EXPLAINs the statement so the database vets its syntax and
        columns without running it. The image's ``names``: how the server resolves every
        table touched and each of ``rule_tables`` (the risk rules' table names)."""
        select = stmt.before_image_sql() or f"SELECT * FROM {stmt.target_sql} WHERE 1 = 0"
        tx = _Tx(self, readonly=True)
        try:
            try:
                tx.begin(preview=True)
                bases = base_tables(tx, stmt.table)     # first: our reason, not the server's
                self.vet_functions(stmt, params)        # before anything of the statement runs
                tx.q("EXPLAIN " + stmt.sql, params)
                columns, rows = tx.q(select, params)
                check_visible(tx, stmt)
                effects = [e.to_dict() for e in cascades(tx, stmt, params)]
                touched = (bases or [stmt.table])[-1:] + [e["table"] for e in effects]
                image = Image(columns, rows, effects, bases, trigger_tables(tx, touched),
                              triggers_on(tx, touched))
                image.names = relation_names(tx, [stmt.table] + bases + touched + image.trigger_tables
                                             + list(rule_tables))
            except UsageError:
                raise
            except Exception as exc:  # sqlite3.Error / psycopg.Error
                raise UsageError(f"target {self.target.name} rejects the statement: "
                                 f"{tx.message(exc)}") from None
            # last: a preview that fails is reported to the approver, not a refusal
            image.preview = self._new_values(tx, stmt, params, touched[0], _preview.AT_REQUEST)
            tx.rollback()
        finally:
            tx.conn.close()
        return image

    def vet_functions(self, stmt: Statement, params: dict) -> None:
        """PostgreSQL: refuse (SqlRefused) a statement that calls a function off the
        allow-list as the server resolves it (sqlcheck.check_resolved), in a read-write
        transaction of its own that is always rolled back; the statement is parsed there,
        never planned or run. TargetError when the target cannot be asked."""
        if self.target.kind == "sqlite":
            return
        tx = _Tx(self)
        try:
            try:
                tx.begin()
                check_resolved(tx.q, stmt, params)
            except UsageError:
                raise
            except Exception as exc:  # psycopg.Error
                if tx.transient(exc):
                    raise TargetError(f"target {self.target.name}: {tx.message(exc)}") from None
                temp = sqlstate_of(exc) == "42501" and "temporary" in tx.message(exc)
                raise UsageError(f"target {self.target.name} rejects the statement: "
                                 f"{tx.message(exc)}" + ("; opskit vets the functions a statement "
                                 "calls in a temporary function, so the correction role needs "
                                 "TEMPORARY on the database" if temp else "")) from None
        finally:
            tx.rollback()
            tx.conn.close()

    def preview(self, stmt: Statement, params: dict) -> dict | None:
        """For a request recorded without a preview: what it would write now, computed
        read-only (marked ``computed: show``); an unreachable target is an error entry."""
        try:
            tx = _Tx(self, readonly=True)
        except TargetError as exc:
            return {"computed": _preview.AT_SHOW, "rows": [], "pending": [], "error": exc.message}
        try:
            try:
                self.vet_functions(stmt, params)
                tx.begin(preview=True)
                table = (base_tables(tx, stmt.table) or [stmt.table])[-1]
            except Exception as exc:  # sqlite3.Error / psycopg.Error / SqlRefused
                return {"computed": _preview.AT_SHOW, "rows": [], "pending": [],
                        "error": getattr(exc, "message", None) or tx.message(exc)}
            return self._new_values(tx, stmt, params, table, _preview.AT_SHOW)
        finally:
            tx.rollback()
            tx.conn.close()

    @staticmethod
    def _new_values(tx: "_Tx", stmt: Statement, params: dict, key_table: str, when: str) -> dict | None:
        try:
            return _preview.compute(tx, stmt, params, key_table, when)
        except Exception as exc:  # sqlite3.Error / psycopg.Error: shown, not fatal
            return {"computed": when, "rows": [], "pending": [],
                    "error": f"the new values could not be computed: {tx.message(exc)}"}

    # --- apply -------------------------------------------------------------------
    def ensure_marker(self) -> None:
        """Create the commit-marker table if it is missing. Raises UsageError naming the
        table and the DDL when the role may not create it (nothing claimed yet). A
        transient error (target down, lock held) is left to the apply, which records it
        as such and leaves the request approved."""
        try:
            tx = _Tx(self)
        except TargetError:
            return
        try:
            try:
                tx.create_marker()
                tx.commit()
            except Exception as exc:  # sqlite3.Error / psycopg.Error
                tx.rollback()
                if tx.transient(exc) or self._created_meanwhile(tx):
                    return          # another apply created it at the same moment, or retry later
                raise UsageError(f"target {self.target.name}: cannot create the commit-marker table "
                                 f"{MARKER_TABLE} ({tx.message(exc)}); create it once as the schema "
                                 f"owner: {MARKER_DDL[tx.kind]}, and grant INSERT, SELECT on it to the "
                                 "correction role") from None
        finally:
            tx.conn.close()

    @staticmethod
    def _created_meanwhile(tx: "_Tx") -> bool:
        try:
            return tx.marker_exists()
        finally:
            tx.rollback()

    def settle(self, stmt: Statement, params: dict, approved_digest: str, expected_rows: int,
               marker: tuple[str, str], approved_effects: str | None = None, guard=None) -> ApplyOutcome:
        """An apply claimed as ``marker`` (request id, claim entry hash) whose outcome was
        never recorded: its commit marker says whether it committed (then the after-image
        it committed is returned); without one nothing committed, so apply it now."""
        try:
            tx = _Tx(self)
        except TargetError as exc:
            return ApplyOutcome(False, stage="connect", reason=exc.message, transient=True)
        try:
            try:
                found = tx.marker(marker[1]) if tx.marker_exists() else None
                tx.rollback()
            except Exception as exc:  # sqlite3.Error / psycopg.Error
                tx.rollback()
                return ApplyOutcome(False, stage="marker", reason=f"{tx.message(exc)}; nothing changed",
                                    transient=tx.transient(exc), sqlstate=sqlstate_of(exc))
        finally:
            tx.conn.close()
        if found is not None:
            stored = json.loads(found["after"])
            return ApplyOutcome(True, row_count=int(found["row_count"]), after=stored["after"],
                                triggers=stored["triggers"], stage=COMMITTED)
        out = self.apply(stmt, params, approved_digest, expected_rows, marker, approved_effects, guard)
        if out.ok:
            out.stage = APPLIED_NOW
        return out

    def apply(self, stmt: Statement, params: dict, approved_digest: str, expected_rows: int,
              marker: tuple[str, str] | None = None, approved_effects: str | None = None,
              guard=None) -> ApplyOutcome:
        """Run the statement in one transaction under the checks in the module doc;
        ``marker`` (request id, claim entry hash) is committed with it; the rows its
        foreign-key cascades change must be the approved ones (digest ``approved_effects``,
        none when None). ``guard(trigger_effects)`` returns a reason to refuse what the
        statement's triggers changed (their tables' rules), or None; before the statement
        runs, ``guard([], resolve)`` the same for the tables' rules with their names as
        the server resolves them now (``resolve``: effects.relation_names here)."""
        try:
            self.vet_functions(stmt, params)     # SqlRefused: nothing ran (R-DAT-2)
            tx = _Tx(self)
        except TargetError as exc:
            return ApplyOutcome(False, stage="connect", reason=exc.message, transient=True)
        stage = "lock"
        try:
            try:
                tx.begin()
                stage = "before-image"
                # the rows stay locked until commit: no one changes them under us
                locked = _lock_before(tx, stmt, params)
                now = locked.rows
                if image_digest(now) != approved_digest:
                    tx.rollback()
                    return ApplyOutcome(False, stage=stage, before_now=now,
                                        reason="the rows changed since the request was approved "
                                               "(before-image differs); nothing applied")
                stage = "cascade"
                effects, refused = _cascade_changed(tx, stmt, params, approved_effects)
                if refused is not None:
                    return refused
                stage = "rules"    # the tables' rules as the server resolves their names now
                refusal = guard([], partial(relation_names, tx)) if guard else None
                if refusal:
                    tx.rollback()
                    return ApplyOutcome(False, stage=stage, reason=f"{refusal}; nothing applied")
                stage = "execute"
                return _execute(tx, stmt, params, expected_rows, "commit", marker, (effects, guard),
                                locked)
            except Exception as exc:  # sqlite3.Error / psycopg.Error
                tx.rollback()
                return ApplyOutcome(False, stage=tx.stage or stage, reason=f"{tx.message(exc)}; rolled back",
                                    transient=tx.transient(exc), sqlstate=sqlstate_of(exc))
        finally:
            tx.conn.close()


def _pg_message(exc) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    text = primary or str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


def sqlstate_of(exc: BaseException) -> str:
    """The SQLSTATE of a PostgreSQL error ('' for SQLite and errors without one)."""
    return str(getattr(exc, "sqlstate", None) or "")


# SQLSTATEs after which the same apply may well succeed later: lock and statement
# timeouts, serialization failures and deadlocks, a server shutting down or full of
# connections, a lost connection (classes 08 and 40 as a whole).
_TRANSIENT = {"55P03", "57014", "57P01", "57P02", "57P03", "53300", "53400"}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an error a retry can get past (nothing wrong with the request)."""
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is None:
        psycopg = require("psycopg", extra="postgres")
        return isinstance(exc, psycopg.OperationalError)     # connection lost, no SQLSTATE
    return sqlstate in _TRANSIENT or sqlstate[:2] in ("08", "40")


# --- recovery of an apply interrupted between claim and outcome -----------------------

COMMITTED, APPLIED_NOW = "committed-before-crash", "applied-now"

MARKER_TABLE = "opskit_correction_applied"
MARKER_DDL = {
    "postgresql": f"CREATE TABLE {MARKER_TABLE} (entry_hash text PRIMARY KEY, request_id text NOT NULL, "
                  "applied_at timestamptz NOT NULL DEFAULT now(), row_count integer NOT NULL, "
                  "after text NOT NULL)",
    "sqlite": f"CREATE TABLE {MARKER_TABLE} (entry_hash TEXT PRIMARY KEY, request_id TEXT NOT NULL, "
              "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, row_count INTEGER NOT NULL, "
              "after TEXT NOT NULL)",
}


class _Tx:
    """One transaction on a target, same calls for SQLite and PostgreSQL (:named SQL).

    On PostgreSQL every statement goes alone through the extended query protocol
    (``prepare=True``: Parse/Bind/Execute even without parameters), which refuses a
    second statement, so text hidden behind a quoting trick can never run as its own
    statement -- not even a ``COMMIT`` that would leave a read-only transaction (R-DAT-2).
    """

    def __init__(self, db: "Database", readonly: bool = False):
        self.db = db
        self.kind = db.target.kind
        self.conn = db._sqlite(readonly) if self.kind == "sqlite" else db._postgres(readonly)
        self.stage = ""            # set to "commit" while COMMIT is on its way

    def q(self, sql: str, params: dict | None = None) -> tuple[list[str], list[dict]]:
        params = {k: v for k, v in (params or {}).items() if k in params_of(sql)}
        if self.kind == "sqlite":
            cur = self.conn.execute(sql, _sqlite_params(params))
            cols = [d[0] for d in cur.description] if cur.description else []
        else:
            cur = self.conn.cursor()
            cur.execute(to_pyformat(sql), params, prepare=True)
            cols = [d.name for d in cur.description] if cur.description else []
        return cols, (rows_to_json(cols, cur.fetchall()) if cols else [])

    def begin(self, preview: bool = False) -> None:
        """Start the transaction: SQLite takes the write lock (or, for a preview, a read
        snapshot); PostgreSQL bounds lock waits (or, for a preview, the whole statement)."""
        if self.kind == "sqlite":
            self.conn.execute("BEGIN" if preview else "BEGIN IMMEDIATE")
        else:
            name = "statement_timeout" if preview else "lock_timeout"
            ms = int(self.db.lock_timeout * 1000) * (3 if preview else 1)
            self.q(f"SELECT set_config('{name}', :ms, true)", {"ms": str(ms)})

    def marker_exists(self) -> bool:
        if self.kind == "sqlite":
            _c, rows = self.q("SELECT name FROM sqlite_master WHERE type = 'table' AND name = :t",
                              {"t": MARKER_TABLE})
        else:
            _c, rows = self.q("SELECT CAST(to_regclass(:t) AS text) AS name", {"t": MARKER_TABLE})
        return bool(rows and rows[0]["name"])

    def marker(self, entry_hash: str) -> dict | None:
        _c, rows = self.q(f"SELECT row_count, after FROM {MARKER_TABLE} WHERE entry_hash = :h",
                          {"h": entry_hash})
        return rows[0] if rows else None

    def create_marker(self) -> None:
        """The commit-marker table, if missing (``IF NOT EXISTS`` alone would need CREATE
        on the schema even when it exists)."""
        if not self.marker_exists():
            self.q("CREATE TABLE IF NOT EXISTS " + MARKER_DDL[self.kind][len("CREATE TABLE "):])

    def write_marker(self, marker: tuple[str, str], row_count: int, after: list[dict],
                     triggers: list[dict]) -> None:
        """The commit marker, in the apply's own transaction: it commits with the change."""
        self.create_marker()      # normally there already (ensure_marker); same transaction
        self.q(f"INSERT INTO {MARKER_TABLE} (entry_hash, request_id, row_count, after) "
               "VALUES (:h, :r, :n, :a)", {"h": marker[1], "r": marker[0], "n": row_count,
                                           "a": json.dumps({"after": after, "triggers": triggers},
                                                           sort_keys=True, ensure_ascii=False)})

    def lock_sql(self, select: str) -> str:
        return select if self.kind == "sqlite" else select + " FOR UPDATE"

    def message(self, exc: BaseException) -> str:
        return _pg_message(exc) if self.kind != "sqlite" else f"{type(exc).__name__}: {exc}"

    def transient(self, exc: BaseException) -> bool:
        return is_transient(exc)

    def primary_key(self, table: str) -> list[str]:
        if self.kind == "sqlite":
            schema, _, name = table.rpartition(".")
            prefix = f"{schema}." if schema else ""
            cur = self.conn.execute(f"PRAGMA {prefix}table_info({name})")
            cols = sorted((r[5], r[1]) for r in cur.fetchall() if r[5])
            return [c for _, c in cols]
        _c, rows = self.q("SELECT a.attname AS name FROM pg_index i JOIN pg_attribute a ON "
                          "a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE "
                          "i.indrelid = CAST(:t AS regclass) AND i.indisprimary ORDER BY a.attnum",
                          {"t": table})
        return [r["name"] for r in rows]

    def columns(self, table: str) -> list[dict]:
        """``{name, type, generated}`` of each column of ``table`` (type as SQL spells it)."""
        if self.kind == "sqlite":
            schema, _, name = table.rpartition(".")
            prefix = f"{schema}." if schema else ""
            cur = self.conn.execute(f"PRAGMA {prefix}table_xinfo({name})")
            return [{"name": r[1], "type": r[2], "generated": r[6] in (2, 3)} for r in cur.fetchall()]
        _c, rows = self.q("SELECT attname AS name, format_type(atttypid, atttypmod) AS type, "
                          "attgenerated <> '' AS generated FROM pg_attribute WHERE "
                          "attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped "
                          "ORDER BY attnum", {"t": table})
        return rows

    def rows_by_key(self, table: str, pk: list[str], keys: list[dict]) -> list[dict]:
        out: list[dict] = []
        for key in keys:
            where = " AND ".join(f"{_qi(c)} = :k{i}" for i, c in enumerate(pk))
            _c, rows = self.q(self.lock_sql(f"SELECT * FROM {table} WHERE {where}"),
                              {f"k{i}": key[c] for i, c in enumerate(pk)})
            out.extend(rows)
        return out

    def rollback(self) -> None:
        try:
            if self.kind == "sqlite":
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            else:
                self.conn.rollback()
        except Exception:  # noqa: BLE001 - best effort before close
            pass

    def commit(self) -> None:
        self.stage = "commit"
        if self.kind == "sqlite":
            if self.conn.in_transaction:        # outside BEGIN each statement commits itself
                self.conn.execute("COMMIT")
        else:
            self.conn.commit()
        self.stage = ""


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _rows_text(rows: list[dict], limit: int = 5) -> str:
    import json
    shown = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in rows[:limit]]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return "[" + ", ".join(shown) + "]" + more if rows else "no rows"


def _matches(expected: dict, row: dict) -> bool:
    """Row equals expected on every column expected gives a value for."""
    return all(row.get(c) == v for c, v in expected.items() if v is not None)


class _Neither(Exception):
    def __init__(self, reason: str, rows: list[dict]):
        super().__init__(reason)
        self.reason, self.rows = reason, rows


def _recover(db: "Database", stmt: Statement, params: dict, before: list[dict], approved_digest: str,
             expected_rows: int) -> ApplyOutcome:
    """Settle an apply that was claimed but never recorded: inside one target transaction
    with the rows locked, decide from the live rows whether the statement was committed
    (rows equal the statement's effect on the approved before-image) or not (rows equal
    the before-image: then apply it now); anything else is refused, naming the rows."""
    try:
        tx = _Tx(db)
    except TargetError as exc:
        return ApplyOutcome(False, stage="connect", reason=exc.message)
    stage = "lock"
    try:
        try:
            tx.begin()
            stage = "recover"
            table = stmt.table
            select = stmt.before_image_sql()
            if stmt.operation != "INSERT":
                locked = _lock_before(tx, stmt, params)
                now = locked.rows
                if image_digest(now) == approved_digest:
                    return _execute(tx, stmt, params, expected_rows, APPLIED_NOW, locked=locked)
                pk = tx.primary_key(stmt.table)
                if not pk:
                    raise _Neither(f"table {stmt.table} has no primary key, so the rows the statement "
                                   "changed cannot be told apart", now)
                keyed = tx.rows_by_key(table, pk, before)
                if stmt.operation == "DELETE":
                    if not keyed and not now:
                        tx.rollback()
                        return ApplyOutcome(True, row_count=expected_rows, after=[], stage=COMMITTED)
                    raise _Neither("the approved rows are neither all present and unchanged nor all "
                                   "deleted", keyed or now)
                # UPDATE: put the before-image back in a savepoint, run the statement there to
                # learn its effect, undo both, and compare that effect with the live rows
                tx.q("SAVEPOINT opskit_recover")
                for i, row in enumerate(before):
                    sets = ", ".join(f"{_qi(c)} = :v{j}" for j, c in enumerate(row))
                    where = " AND ".join(f"{_qi(c)} = :k{j}" for j, c in enumerate(pk))
                    values = {f"v{j}": v for j, v in enumerate(row.values())}
                    values.update({f"k{j}": row[c] for j, c in enumerate(pk)})
                    tx.q(f"UPDATE {table} SET {sets} WHERE {where}", values)
                _c, restored = tx.q(select, params)
                effect: list[dict] | None = None
                if image_digest(restored) == approved_digest:
                    _c, effect = tx.q(stmt.sql + " RETURNING *", params)
                tx.q("ROLLBACK TO SAVEPOINT opskit_recover")
                if effect is None:
                    raise _Neither("the approved before-image cannot be reconstructed from the live "
                                   "rows to compute the statement's effect", keyed)
                if len(effect) == expected_rows and image_digest(effect) == image_digest(keyed):
                    tx.rollback()
                    return ApplyOutcome(True, row_count=expected_rows, after=keyed, stage=COMMITTED)
                raise _Neither("the rows match neither the approved before-image nor the statement's "
                               f"effect on it (expected {_rows_text(effect)})", keyed)
            # INSERT: what it would insert, learned in a scratch copy of the table
            pk = tx.primary_key(stmt.table)
            if not pk:
                raise _Neither(f"table {stmt.table} has no primary key, so an inserted row cannot "
                               "be found again", [])
            probe = "opskit_recover_probe"
            if tx.kind == "sqlite":
                tx.q(f"CREATE TEMP TABLE {probe} AS SELECT * FROM {table} WHERE 0")
            else:
                tx.q(f"CREATE TEMP TABLE {probe} ON COMMIT DROP AS SELECT * FROM {table} WITH NO DATA")
            probe_sql = stmt.on_table(probe)
            _c, would = tx.q(probe_sql + " RETURNING *", params)
            tx.q(f"DROP TABLE {probe}")
            if any(row.get(c) is None for row in would for c in pk):
                raise _Neither("the INSERT does not give the primary key, so the inserted row cannot "
                               "be found again", [])
            found = tx.rows_by_key(table, pk, would)
            if not found:
                return _execute(tx, stmt, params, expected_rows, APPLIED_NOW)
            if len(found) == len(would) and all(
                    any(_matches(w, f) for f in found) for w in would):
                tx.rollback()
                return ApplyOutcome(True, row_count=expected_rows, after=found, stage=COMMITTED)
            raise _Neither("rows with the inserted key exist but differ from what the statement "
                           f"inserts ({_rows_text(would)})", found)
        except _Neither as exc:
            tx.rollback()
            return ApplyOutcome(False, stage="recover", before_now=exc.rows,
                                reason=f"cannot settle the interrupted apply: {exc.reason}; rows now: "
                                       f"{_rows_text(exc.rows)}; nothing changed")
        except Exception as exc:  # sqlite3.Error / psycopg.Error
            tx.rollback()
            return ApplyOutcome(False, stage=tx.stage or stage, reason=f"{tx.message(exc)}; rolled back",
                                transient=tx.transient(exc), sqlstate=sqlstate_of(exc))
    finally:
        tx.conn.close()


def _cascade_changed(tx: _Tx, stmt: Statement, params: dict,
                     approved: str | None) -> tuple[list[dict], ApplyOutcome | None]:
    """Inside the apply, with the rows locked: refuse (rolled back) when a table the
    statement reaches now hides rows by RLS, or its cascades would change other rows
    than the approved ones (a refund added since approval needs its own sign-off)."""
    try:
        check_visible(tx, stmt)
    except UsageError as exc:
        tx.rollback()
        return [], ApplyOutcome(False, stage="cascade", reason=f"{exc.message}; nothing applied")
    now = [e.to_dict() for e in cascades(tx, stmt, params, lock=True)]
    if effects_digest(now) == (approved or effects_digest([])):
        return now, None
    tx.rollback()
    return now, ApplyOutcome(False, stage="cascade", before_now=[r for e in now for r in e["rows"]],
                        reason="the rows the statement's foreign-key cascades change differ from the "
                               f"approved ones (now: {_effects_text(now)}); nothing applied")


def _effects_text(effects: list[dict]) -> str:
    return ", ".join(f"{len(e['rows'])} row(s) of {e['table']} ({e['via']})" for e in effects) or "none"


def _execute(tx: _Tx, stmt: Statement, params: dict, expected_rows: int, done: str,
             marker: tuple[str, str] | None = None, checks: tuple = ([], None),
             locked: "_Locked | None" = None) -> ApplyOutcome:
    """Run the statement (with ``RETURNING *``, the after-image) in the open, locked
    transaction; commit only if it touched exactly the approved number of rows, those
    rows are the ``locked`` before-image's own (``_other_rows``), and ``checks``
    (cascades, guard) accepts what its triggers changed."""
    _c, after = tx.q(stmt.sql + " RETURNING *", params)
    if len(after) != expected_rows:
        tx.rollback()
        return ApplyOutcome(False, row_count=len(after), stage="row-count",
                            reason=f"statement touched {len(after)} row(s), {expected_rows} approved; "
                                   "rolled back")
    other = _other_rows(tx, stmt, locked, after) if locked is not None else None
    if other:
        tx.rollback()
        return ApplyOutcome(False, row_count=len(after), stage="rows",
                            reason=f"the statement changed other rows than the approved ones: {other}; "
                                   "rolled back, nothing changed")
    after = [] if stmt.operation == "DELETE" else after
    effects, guard = checks
    side = trigger_effects(tx, stmt, expected_rows, effects, MARKER_TABLE)
    refusal = guard(side, partial(relation_names, tx)) if guard is not None and side else None
    if refusal:
        tx.rollback()
        return ApplyOutcome(False, row_count=len(after), stage="triggers", triggers=side,
                            reason=f"{refusal}; rolled back")
    if marker is not None:
        tx.write_marker(marker, expected_rows, after, side)
    tx.commit()
    return ApplyOutcome(True, row_count=expected_rows, after=after, stage=done, triggers=side)


# --- which rows the statement changed: the approved ones, not others (R-DAT-1) ----------------
#
# The statement re-evaluates its own WHERE when it runs, and a WHERE can tell the locked
# rows from the others (their xmax is set), so the same count of other rows may change.
# Apply therefore compares what the statement itself reports (RETURNING) with the rows
# it locked: by primary key where the rows carry it and the statement keeps it; else, on
# a PostgreSQL table, by the physical row version (tableoid, ctid) locked, which must be
# gone afterwards (updated or deleted by this transaction); a DELETE's returned rows must
# also equal the before-image.

ROW_ID = "?opskit_row"      # column alias of the locked rows' tableoid:ctid (not in any image)


@dataclass
class _Locked:
    """The before-image rows apply locked, and how to tell them from other rows."""

    rows: list[dict]
    table: str = ""                      # the table (through a view: its base table)
    key: list[str] = field(default_factory=list)   # its primary key, when rows carry and keep it
    ids: list[str] | None = None         # PostgreSQL table: each locked row's tableoid:ctid


def _lock_before(tx: _Tx, stmt: Statement, params: dict) -> _Locked:
    """Lock and read the before-image (none for INSERT) with what identifies its rows."""
    if stmt.operation == "INSERT":
        return _Locked([])
    if tx.kind == "sqlite":
        table, physical = stmt.table, False
    else:
        bases = base_tables(tx, stmt.table)
        table, physical = (bases or [stmt.table])[-1], not bases
    pk = tx.primary_key(table)
    names = {c["name"] for c in tx.columns(stmt.table)}
    key = pk if pk and set(pk) <= names and not set(pk) & set(stmt.assigned) else []
    if not physical:
        _c, rows = tx.q(tx.lock_sql(stmt.before_image_sql()), params)
        return _Locked(rows, table, key)
    _c, rows = tx.q(tx.lock_sql(f"SELECT CAST(tableoid AS text) || ':' || CAST(ctid AS text) AS "
                                f"{_qi(ROW_ID)}, * FROM {stmt.target_sql} WHERE {stmt.where}"), params)
    ids = [r.pop(ROW_ID) for r in rows]
    return _Locked(rows, table, key, ids)


def _keys(rows: list[dict], key: list[str]) -> list[str]:
    return sorted(json.dumps({c: r.get(c) for c in key}, sort_keys=True, ensure_ascii=False)
                  for r in rows)


def _other_rows(tx: _Tx, stmt: Statement, locked: _Locked, after: list[dict]) -> str | None:
    """None when the rows the statement changed (``after``, from its RETURNING) are the
    locked before-image's rows; else a line naming the approved and the changed ones."""
    if stmt.operation == "INSERT":
        return None
    if locked.key:
        approved, changed = _keys(locked.rows, locked.key), _keys(after, locked.key)
        if approved != changed:
            return (f"approved {locked.table} row(s) with key {', '.join(approved)}; the statement "
                    f"{'deleted' if stmt.operation == 'DELETE' else 'updated'} {', '.join(changed) or 'none'}")
        return None
    if stmt.operation == "DELETE" and image_digest(after) != image_digest(locked.rows):
        return f"approved {_rows_text(locked.rows)}; the statement deleted {_rows_text(after)}"
    if locked.ids is None:
        if stmt.operation == "DELETE" or tx.kind == "sqlite":
            return None    # a DELETE's rows are compared above; SQLite: one writer, no row marks
        return (f"{stmt.table} shows no primary key of {locked.table} that the statement keeps, so the "
                "rows it updated cannot be told apart from the approved ones; correct the table "
                "directly, by its primary key")
    tids = "{" + ",".join('"' + i.split(":", 1)[1] + '"' for i in locked.ids) + "}"
    _c, left = tx.q(f"SELECT * FROM {stmt.target_sql} WHERE ctid = ANY(CAST(:t AS tid[])) AND "
                    "CAST(tableoid AS text) || ':' || CAST(ctid AS text) = ANY(CAST(:i AS text[]))",
                    {"t": tids, "i": "{" + ",".join(f'"{i}"' for i in locked.ids) + "}"})
    if left:
        return (f"approved {_rows_text(locked.rows)}; of those it left {_rows_text(left)} unchanged and "
                f"changed {_rows_text(after)} instead")
    return None


def recover(db: "Database", stmt: Statement, params: dict, before: list[dict], approved_digest: str,
            expected_rows: int) -> ApplyOutcome:
    try:
        db.vet_functions(stmt, params)           # SqlRefused: nothing ran (R-DAT-2)
    except TargetError as exc:
        return ApplyOutcome(False, stage="connect", reason=exc.message)
    return _recover(db, stmt, params, before, approved_digest, expected_rows)
