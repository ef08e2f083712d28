"""The databases corrections run against: SQLite files and PostgreSQL (psycopg 3).

Two operations, both with parameterised SQL only:

* ``read_before_image`` -- at request time, in a READ ONLY transaction
  (SQLite ``mode=ro``): the rows the statement would touch, and an
  ``EXPLAIN`` of the statement itself so a typo is caught before anybody
  approves it.
* ``apply`` -- one transaction: lock (SQLite ``BEGIN IMMEDIATE``;
  PostgreSQL ``SELECT ... FOR UPDATE`` on the rows), re-read the
  before-image and refuse if it changed since approval, run the statement
  with ``RETURNING *`` (the after-image), refuse if the row count differs,
  commit. Any refusal or error rolls back (R-DAT-1, R-DAT-2).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opskit.core.audit import canonical
from opskit.core.errors import OperationalError, UsageError

from .registry import Target, password_for
from .sqlcheck import Statement, to_pyformat


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

    @property
    def digest(self) -> str:
        return image_digest(self.rows)


@dataclass
class ApplyOutcome:
    ok: bool
    row_count: int = 0
    after: list[dict] = field(default_factory=list)
    stage: str = ""          # where it stopped: connect, lock, before-image, execute, row-count, commit
    reason: str = ""
    before_now: list[dict] | None = None


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
        import psycopg
        kwargs: dict[str, Any] = {"connect_timeout": 10, "autocommit": False}
        pw = password_for(self.target)
        if pw is not None:
            kwargs["password"] = pw
        try:
            conn = psycopg.connect(self.target.url, **kwargs)
        except psycopg.Error as exc:
            raise TargetError(f"target {self.target.name} ({self.target.safe_url}): cannot "
                              f"connect: {_pg_message(exc)}") from None
        conn.read_only = readonly
        return conn

    # --- request time ------------------------------------------------------------
    def read_before_image(self, stmt: Statement, params: dict) -> Image:
        """Rows the statement would touch, read in a read-only transaction; also
        EXPLAINs the statement so the database vets its syntax and columns."""
        select = stmt.before_image_sql() or f"SELECT * FROM {stmt.target_sql} WHERE 1 = 0"
        select_params = {k: v for k, v in params.items() if f":{k}" in select}
        if self.target.kind == "sqlite":
            conn = self._sqlite(readonly=True)
            try:
                conn.execute("BEGIN")
                try:
                    conn.execute("EXPLAIN " + stmt.sql, _sqlite_params(params)).fetchall()
                    cur = conn.execute(select, _sqlite_params(select_params))
                    columns = [d[0] for d in cur.description]
                    rows = rows_to_json(columns, cur.fetchall())
                except sqlite3.Error as exc:
                    raise UsageError(f"target {self.target.name} rejects the statement: {exc}") from None
                conn.execute("ROLLBACK")
            finally:
                conn.close()
            return Image(columns, rows)
        import psycopg
        conn = self._postgres(readonly=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('statement_timeout', %s, true)",
                            (str(int(self.lock_timeout * 1000) * 3),))
                try:
                    cur.execute("EXPLAIN " + to_pyformat(stmt.sql), params)
                    cur.fetchall()
                    cur.execute(to_pyformat(select), select_params)
                    columns = [d.name for d in cur.description]
                    rows = rows_to_json(columns, cur.fetchall())
                except psycopg.Error as exc:
                    raise UsageError(f"target {self.target.name} rejects the statement: "
                                     f"{_pg_message(exc)}") from None
            conn.rollback()
        finally:
            conn.close()
        return Image(columns, rows)

    # --- apply -------------------------------------------------------------------
    def apply(self, stmt: Statement, params: dict, approved_digest: str, expected_rows: int) -> ApplyOutcome:
        """Run the statement in one transaction under the checks in the module doc."""
        if self.target.kind == "sqlite":
            return self._apply_sqlite(stmt, params, approved_digest, expected_rows)
        return self._apply_postgres(stmt, params, approved_digest, expected_rows)

    def _apply_sqlite(self, stmt, params, approved_digest, expected_rows) -> ApplyOutcome:
        try:
            conn = self._sqlite(readonly=False)
        except TargetError as exc:
            return ApplyOutcome(False, stage="connect", reason=exc.message)
        p = _sqlite_params(params)
        stage = "lock"
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")      # the write lock: nobody changes rows under us
                stage = "before-image"
                select = stmt.before_image_sql()
                now: list[dict] = []
                if select:
                    cur = conn.execute(select, {k: v for k, v in p.items() if f":{k}" in select})
                    now = rows_to_json([d[0] for d in cur.description], cur.fetchall())
                if image_digest(now) != approved_digest:
                    conn.execute("ROLLBACK")
                    return ApplyOutcome(False, stage=stage, before_now=now,
                                        reason="the rows changed since the request was approved "
                                               "(before-image differs); nothing applied")
                stage = "execute"
                cur = conn.execute(stmt.sql + " RETURNING *", p)
                columns = [d[0] for d in cur.description]
                after = rows_to_json(columns, cur.fetchall())
                if len(after) != expected_rows:
                    conn.execute("ROLLBACK")
                    return ApplyOutcome(False, row_count=len(after), stage="row-count",
                                        reason=f"statement touched {len(after)} row(s), "
                                               f"{expected_rows} approved; rolled back")
                stage = "commit"
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return ApplyOutcome(False, stage=stage, reason=f"{type(exc).__name__}: {exc}; rolled back")
        finally:
            conn.close()
        if stmt.operation == "DELETE":
            after = []
        return ApplyOutcome(True, row_count=expected_rows, after=after, stage="commit")

    def _apply_postgres(self, stmt, params, approved_digest, expected_rows) -> ApplyOutcome:
        import psycopg
        try:
            conn = self._postgres(readonly=False)
        except TargetError as exc:
            return ApplyOutcome(False, stage="connect", reason=exc.message)
        stage = "lock"
        try:
            try:
                with conn.cursor() as cur:
                    ms = str(int(self.lock_timeout * 1000))
                    cur.execute("SELECT set_config('lock_timeout', %s, true)", (ms,))
                    stage = "before-image"
                    select = stmt.before_image_sql()
                    now: list[dict] = []
                    if select:
                        # FOR UPDATE locks the rows until commit: no one changes them under us
                        cur.execute(to_pyformat(select + " FOR UPDATE"),
                                    {k: v for k, v in params.items() if f":{k}" in select})
                        now = rows_to_json([d.name for d in cur.description], cur.fetchall())
                    if image_digest(now) != approved_digest:
                        conn.rollback()
                        return ApplyOutcome(False, stage=stage, before_now=now,
                                            reason="the rows changed since the request was approved "
                                                   "(before-image differs); nothing applied")
                    stage = "execute"
                    cur.execute(to_pyformat(stmt.sql + " RETURNING *"), params)
                    columns = [d.name for d in cur.description]
                    after = rows_to_json(columns, cur.fetchall())
                    if len(after) != expected_rows:
                        conn.rollback()
                        return ApplyOutcome(False, row_count=len(after), stage="row-count",
                                            reason=f"statement touched {len(after)} row(s), "
                                                   f"{expected_rows} approved; rolled back")
                    stage = "commit"
                conn.commit()
            except psycopg.Error as exc:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
                return ApplyOutcome(False, stage=stage, reason=f"{_pg_message(exc)}; rolled back")
        finally:
            conn.close()
        if stmt.operation == "DELETE":
            after = []
        return ApplyOutcome(True, row_count=expected_rows, after=after, stage="commit")


def _pg_message(exc) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    text = primary or str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text
