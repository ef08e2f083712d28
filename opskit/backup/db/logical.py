"""Logical PostgreSQL backups (``backup db run``): snapshot kind ``pg-logical``.

One REPEATABLE READ transaction exports its snapshot; pg_dump dumps the
schema (pre- and post-data sections, custom format, uncompressed so our
chunker deduplicates it) in that same snapshot, and every table's rows are
streamed with ``COPY ... TO STDOUT`` by ``jobs`` tables at a time, each in
its own session that imports the exported snapshot (``SET TRANSACTION
SNAPSHOT``), so schema and data are one consistent point in time while the
workload keeps writing. A table streams through a ``psql`` process: its
rows never pass through Python one by one (3x faster than psycopg's
per-row COPY on a 1M-row table); our side reads the pipe in big blocks into
the chunker and the pack workers. Each table is its own file node, in a
stable order whatever finished first, so an unchanged table is the same
blobs day after day (deduplicated). While a table streams, its rows are
counted and hashed (BLAKE3 of the COPY text): drills compare those with
the restored copy (R-BAK-5).

Snapshot tree::

    /pg/<entry>/globals.sql        pg_dumpall --globals-only (roles, tablespaces)
    /pg/<entry>/schema.dump        pg_dump -Fc --section=pre-data --section=post-data
    /pg/<entry>/sequences.sql      setval() of every sequence
    /pg/<entry>/data/<schema>.<table>.copy

The snapshot's ``database`` field carries the manifest (tables, rows,
checksums, server version, encoding).
"""
from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field

import blake3

from opskit.core.optional import require

from ..repository import Repository
from ..cores import available_cores
from .pgtools import (SESSION_SETTINGS, DatabaseError, Tools, apply_session_settings, connect,
                      find_tools, last_line, major_of, pg_message)
from .deltas import PreviousStreams
from .settings import DatabaseTarget
from .streams import IterReader, TreeBuilder, save_snapshot, store_command, store_stream

KIND = "pg-logical"

TABLES_SQL = """
SELECT n.nspname, c.relname, c.relpages FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype = 'e')
ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C\""""

SEQUENCES_SQL = """
SELECT pg_catalog.format('SELECT pg_catalog.setval(%L, %s, true);',
                         pg_catalog.quote_ident(schemaname) || '.' ||
                         pg_catalog.quote_ident(sequencename), last_value)
FROM pg_catalog.pg_sequences WHERE last_value IS NOT NULL
ORDER BY schemaname COLLATE "C", sequencename COLLATE "C\""""

SERVER_SQL = """
SELECT current_setting('server_version_num')::int, current_setting('server_version'),
       pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, current_database()
FROM pg_catalog.pg_database d WHERE d.datname = current_database()"""


def file_name(schema: str, table: str) -> str:
    """A tree-safe file name for a table ('/' and '%' escaped)."""
    esc = lambda s: s.replace("%", "%25").replace("/", "%2F")  # noqa: E731
    return f"{esc(schema)}.{esc(table)}.copy"


class RowTap:
    """Counts rows (COPY text: one line per row) and hashes the stream."""

    def __init__(self) -> None:
        self.rows = 0
        self.size = 0
        self.hash = blake3.blake3()

    def __call__(self, block: memoryview) -> None:
        self.rows += block.tobytes().count(b"\n")
        self.size += len(block)
        self.hash.update(block)

    @property
    def checksum(self) -> str:
        return "blake3:" + self.hash.hexdigest()


def default_jobs() -> int:
    """Tables dumped at once unless configured: min(4, cores)."""
    return max(1, min(4, available_cores()))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_command(psql: str, conninfo: str, snapshot: str, schema: str, table: str) -> list[str]:
    """psql streaming one table's COPY text to stdout, in a REPEATABLE READ
    transaction that imports ``snapshot`` (and the fixed session settings)."""
    if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):
        raise DatabaseError(f"unexpected exported snapshot name {snapshot!r}")
    stmts = ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
             f"SET TRANSACTION SNAPSHOT '{snapshot}'", *SESSION_SETTINGS,
             f"COPY {_ident(schema)}.{_ident(table)} TO STDOUT", "COMMIT"]
    return [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo,
            *(x for stmt in stmts for x in ("-c", stmt))]


def copy_out(conn, schema: str, table: str):
    """Blocks of ``COPY schema.table TO STDOUT`` (text format, fixed settings)."""
    sql = require("psycopg.sql", extra="postgres")
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(schema, table))) as cp:
            yield from cp


@dataclass
class LogicalStats:
    tables: int = 0
    rows: int = 0
    bytes: int = 0
    blobs_new: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    blobs_delta: int = 0
    duration_s: float = 0.0
    warnings: list = field(default_factory=list)


class LogicalBackup:
    """One database into an open repository (the caller holds a shared lock)."""

    def __init__(self, repo: Repository, target: DatabaseTarget, *, bindir: str | None = None,
                 jobs: int | None = None):
        self.repo = repo
        self.target = target
        self.bindir = bindir
        self.jobs = max(1, jobs or target.jobs or default_jobs())
        self.stats = LogicalStats()

    def _program(self, tools: Tools, name: str, args: list[str], store_as: str,
                 builder: TreeBuilder, writer) -> None:
        """Run a PostgreSQL program and stream its stdout into the tree as ``store_as``."""
        env = {**os.environ, **self.target.env()}
        ids, size, code, err = store_command(self.repo, writer, [tools.path(name), *args],
                                             env=env)
        if code != 0:
            raise DatabaseError(f"database {self.target.name} ({self.target.describe()}): "
                                f"{name} failed: {last_line(err)}")
        builder.add_file(store_as, ids, size)
        self.stats.bytes += size

    def _globals(self, tools, base, builder, writer) -> None:
        conninfo = self.target.conninfo()
        try:
            self._program(tools, "pg_dumpall", ["--globals-only", "-d", conninfo],
                          f"{base}/globals.sql", builder, writer)
        except DatabaseError as exc:
            if "permission denied" not in str(exc):
                raise
            # not a superuser: roles without their password hashes is still worth having
            self.stats.warnings.append("globals dumped without role passwords (the backup "
                                       "role cannot read pg_authid)")
            self._program(tools, "pg_dumpall", ["--globals-only", "--no-role-passwords", "-d",
                                                conninfo], f"{base}/globals.sql", builder, writer)

    def _dump_one(self, psql: str, snapshot: str, schema: str, table: str,
                  writer) -> tuple[dict, list[str]]:
        """One table's rows into ``writer``: (manifest entry, blob ids)."""
        tap = RowTap()
        cmd = copy_command(psql, self.target.conninfo(), snapshot, schema, table)
        previous = self.previous.chunks(self._table_path(schema, table))
        ids, size, code, err = store_command(self.repo, writer, cmd, tap=tap, previous=previous,
                                             env={**os.environ, **self.target.env()})
        if code != 0:
            raise DatabaseError(f"database {self.target.name} ({self.target.describe()}): "
                                f"table {schema}.{table}: {last_line(err)}")
        return ({"schema": schema, "table": table, "file": file_name(schema, table),
                 "rows": tap.rows, "bytes": size, "checksum": tap.checksum}, ids)

    def _dump_tables(self, tools: Tools, snapshot: str, listed: list[tuple],
                     writer) -> list[tuple[dict, list[str]]]:
        """Every listed (schema, table, pages) dumped ``jobs`` at a time, biggest
        first (the long ones start early); results in the listed order. The
        first failure stops the tables not started yet and is raised."""
        psql = tools.path("psql")
        order = sorted(range(len(listed)), key=lambda i: -int(listed[i][2] or 0))
        results: list = [None] * len(listed)
        errors: list[BaseException] = []
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if errors or not order:
                        return
                    i = order.pop(0)
                try:
                    results[i] = self._dump_one(psql, snapshot, *listed[i][:2], writer)
                except BaseException as exc:       # re-raised in the calling thread
                    with lock:
                        errors.append(exc)
                    return

        threads = [threading.Thread(target=work, name=f"opskit-dump-{n}", daemon=True)
                   for n in range(min(self.jobs, len(listed)))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        return results

    def _table_path(self, schema: str, table: str) -> str:
        return f"/pg/{self.target.name}/data/{file_name(schema, table)}"

    def run(self, *, tags: list[str] | None = None) -> tuple[str, dict]:
        """Back up the database; returns (snapshot id, snapshot)."""
        start = time.monotonic()
        psycopg = require("psycopg", extra="postgres")
        if not self.repo.index_loaded:
            self.repo.load_index()
        conn = connect(self.target, autocommit=False)
        writer = self.repo.blob_writer()
        base = f"/pg/{self.target.name}"
        # tables changed a little everywhere are stored as deltas against this
        self.previous = PreviousStreams.load(self.repo, writer, KIND, base,
                                             enabled=self.target.delta)
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            apply_session_settings(conn)
            snapshot_name = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0]
            version_num, version, encoding, collate, ctype, dbname = \
                conn.execute(SERVER_SQL).fetchone()
            tools = find_tools(major_of(version_num), self.bindir)
            builder = TreeBuilder(self.repo, writer)
            self._globals(tools, base, builder, writer)
            self._program(tools, "pg_dump", ["-Fc", "-Z0", "--snapshot", snapshot_name,
                                             "--section=pre-data", "--section=post-data",
                                             "-d", self.target.conninfo()],
                          f"{base}/schema.dump", builder, writer)
            listed = conn.execute(TABLES_SQL).fetchall()
            tables = []
            # in the listed order, whatever finished first: unchanged trees dedup
            for t, ids in self._dump_tables(tools, snapshot_name, listed, writer):
                builder.add_file(self._table_path(t["schema"], t["table"]), ids, t["bytes"])
                tables.append(t)
                self.stats.rows += t["rows"]
                self.stats.bytes += t["bytes"]
            sequences = "".join(r[0] + "\n" for r in conn.execute(SEQUENCES_SQL).fetchall())
            ids, size = store_stream(self.repo, writer, IterReader([sequences.encode()]))
            builder.add_file(f"{base}/sequences.sql", ids, size)
            conn.rollback()
            writer.settle()         # every delta decided: the nodes can name their bases
            root = builder.finish(self.previous.bases)
        except psycopg.Error as exc:
            writer.abort()
            raise DatabaseError(f"database {self.target.name} ({self.target.describe()}): "
                                f"{pg_message(exc)}") from None
        except BaseException:
            writer.abort()
            raise
        finally:
            conn.close()
        st = self.stats
        st.tables = len(tables)
        st.blobs_new, st.bytes_added, st.bytes_stored, st.blobs_delta = \
            writer.blobs_new, writer.bytes_new_raw, writer.bytes_stored, writer.blobs_delta
        st.duration_s = round(time.monotonic() - start, 3)
        manifest = {"name": self.target.name, "dbname": dbname, "server_version": version,
                    "server_version_num": version_num, "encoding": encoding,
                    "collate": collate, "ctype": ctype, "tables": tables,
                    "snapshot": snapshot_name, "warnings": st.warnings}
        stats = {"files": len(tables) + 3, "dirs": 0, "bytes": st.bytes, "rows": st.rows,
                 "blobs_new": st.blobs_new, "bytes_added": st.bytes_added,
                 "bytes_stored": st.bytes_stored, "blobs_delta": st.blobs_delta, "errors": 0,
                 "duration_s": st.duration_s}
        return save_snapshot(self.repo, writer, root, kind=KIND, paths=[base],
                             tags=list(tags or []), stats=stats, extra={"database": manifest})


def backup_command_stream(repo: Repository, command: list[str], name: str, *,
                          tags: list[str] | None = None) -> tuple[str, dict]:
    """``--stdin-from-command``: another engine's dump tool, its stdout stored as
    ``/stdin/<name>`` (kind ``command-stream``); a non-zero exit stores nothing."""
    start = time.monotonic()
    if not repo.index_loaded:
        repo.load_index()
    writer = repo.blob_writer()
    try:
        ids, size, code, err = store_command(repo, writer, command)
    except OSError as exc:
        raise DatabaseError(f"--stdin-from-command: cannot run {command[0]}: "
                            f"{exc.strerror or exc}") from None
    if code != 0:
        writer.abort()
        raise DatabaseError(f"--stdin-from-command: {os.path.basename(command[0])} exited "
                            f"{code}: {last_line(err)} (nothing stored)")
    builder = TreeBuilder(repo, writer)
    builder.add_file(f"/stdin/{name}", ids, size)
    root = builder.finish()
    stats = {"files": 1, "dirs": 0, "bytes": size, "blobs_new": writer.blobs_new,
             "bytes_added": writer.bytes_new_raw, "bytes_stored": writer.bytes_stored,
             "errors": 0, "duration_s": round(time.monotonic() - start, 3)}
    return save_snapshot(repo, writer, root, kind="command-stream", paths=[f"/stdin/{name}"],
                         tags=list(tags or []), stats=stats,
                         extra={"command": {"name": name, "argv0": os.path.basename(command[0])}})
