"""Restore a ``pg-logical`` snapshot into a database (``backup db restore --target-dsn``).

Order: schema pre-data (pg_restore from the stored archive, streamed from
the repository into its stdin), every table's rows (COPY FROM STDIN, in the
backup's order), sequences, then post-data (indexes, constraints,
triggers), as pg_restore itself does. Every blob is checked against its
keyed id on the way; a damaged pack stops the restore with its name.
A target database that already holds tables is refused unless ``force``,
which drops and recreates it first.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from opskit.core.errors import UsageError
from opskit.core.optional import require

from ..repository import Repository
from .pgtools import (DatabaseError, apply_session_settings, connect, find_tools, last_line,
                      major_of, pg_message)
from .settings import DatabaseTarget
from .streams import find_files, read_content

USER_RELATIONS_SQL = """
SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"""


@dataclass
class RestoreReport:
    snapshot: str
    database: str
    target: str
    tables: int = 0
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    recreated: bool = False
    warnings: list = field(default_factory=list)


def manifest_of(snap: dict) -> dict:
    """The database manifest of a ``pg-logical`` snapshot; UsageError for other kinds."""
    if snap.get("kind") != "pg-logical" or "database" not in snap:
        raise UsageError(f"snapshot {snap['id'][:8]} is not a logical database backup "
                         f"(kind {snap.get('kind', 'files')})")
    return snap["database"]


class LogicalRestore:
    """One snapshot into the database ``target`` names."""

    def __init__(self, repo: Repository, snap: dict, target: DatabaseTarget, *,
                 bindir: str | None = None, force: bool = False, no_owner: bool = False,
                 with_globals: bool = False):
        self.repo = repo
        self.snap = snap
        self.manifest = manifest_of(snap)
        self.target = target
        self.bindir = bindir
        self.force = force
        self.no_owner = no_owner
        self.with_globals = with_globals

    def run(self) -> RestoreReport:
        start = time.monotonic()
        base = f"/pg/{self.manifest['name']}"
        files = find_files(self.repo, self.snap)
        report = RestoreReport(self.snap["id"], self.manifest["dbname"], self.target.describe())
        conn = connect(self.target)
        try:
            server = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0]
            count = conn.execute(USER_RELATIONS_SQL).fetchone()[0]
        finally:
            conn.close()
        tools = find_tools(max(major_of(server), major_of(self.manifest["server_version_num"])),
                           self.bindir, program="pg_restore")
        if count:
            if not self.force:
                raise UsageError(f"target database {self.target.describe()} is not empty "
                                 f"({count} relations): refusing to restore over it",
                                 hint="restore into an empty database, or add --force to drop "
                                      "and recreate it")
            self._recreate()
            report.recreated = True
        if self.with_globals:
            self._psql_globals(tools, files[f"{base}/globals.sql"])
        schema = files[f"{base}/schema.dump"]
        self._pg_restore(tools, schema, "pre-data")
        conn = connect(self.target)
        try:
            apply_session_settings(conn)
            for t in self.manifest["tables"]:
                report.rows += self._copy_in(conn, t, files[f"{base}/data/{t['file']}"])
                report.tables += 1
                report.bytes += int(t["bytes"])
            seq = b"".join(read_content(self.repo, files[f"{base}/sequences.sql"]))
            if seq.strip():
                conn.execute(seq.decode("utf-8"))
        except Exception as exc:
            psycopg = require("psycopg", extra="postgres")
            if isinstance(exc, psycopg.Error):
                raise DatabaseError(f"restore into {self.target.describe()}: "
                                    f"{pg_message(exc)}") from None
            raise
        finally:
            conn.close()
        self._pg_restore(tools, schema, "post-data")
        report.seconds = round(time.monotonic() - start, 3)
        return report

    def _copy_in(self, conn, table: dict, node: dict) -> int:
        sql = require("psycopg.sql", extra="postgres")
        rows = 0
        with conn.transaction(), conn.cursor() as cur:
            stmt = sql.SQL("COPY {} FROM STDIN").format(
                sql.Identifier(table["schema"], table["table"]))
            with cur.copy(stmt) as cp:
                for block in read_content(self.repo, node):
                    rows += block.count(b"\n")
                    cp.write(block)
        return rows

    def _pg_restore(self, tools, node: dict, section: str) -> None:
        args = [tools.path("pg_restore"), "--exit-on-error", f"--section={section}",
                "-d", self.target.conninfo()]
        if self.no_owner:
            args += ["--no-owner", "--no-privileges"]
        self._feed(args, node, f"pg_restore --section={section}")

    def _psql_globals(self, tools, node: dict) -> None:
        # roles that exist already make psql complain and go on: that is wanted
        args = [tools.path("psql"), "-X", "-q", "-d", self.target.conninfo(dbname="postgres"),
                "-f", "-"]
        self._feed(args, node, "psql (globals)", check=False)

    def _feed(self, args: list[str], node: dict, what: str, check: bool = True) -> None:
        """Stream a stored file into a program's stdin; DatabaseError when it fails."""
        env = {**os.environ, **self.target.env()}
        errfile = tempfile.TemporaryFile()     # messages only; a pipe could fill and block us
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=errfile, env=env)
        broken = False
        try:
            for block in read_content(self.repo, node):
                try:
                    proc.stdin.write(block)
                except BrokenPipeError:
                    broken = True
                    break
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                broken = True
        proc.wait()
        errfile.seek(0)
        err = errfile.read()
        errfile.close()
        if check and (proc.returncode != 0 or broken):
            raise DatabaseError(f"restore into {self.target.describe()}: {what} failed: "
                                f"{last_line(err)}")

    def _recreate(self) -> None:
        """--force: drop the target database and create it empty (template0, the
        backup's encoding and locale)."""
        sql = require("psycopg.sql", extra="postgres")
        name = self.target.database
        admin = connect(self.target, dbname="postgres")
        try:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} "
                                  "LC_COLLATE {} LC_CTYPE {}").format(
                sql.Identifier(name), sql.Literal(self.manifest["encoding"]),
                sql.Literal(self.manifest["collate"]), sql.Literal(self.manifest["ctype"])))
        except Exception as exc:
            raise DatabaseError(f"--force: cannot recreate database {name} on "
                                f"{self.target.describe()}: {pg_message(exc)}") from None
        finally:
            admin.close()
