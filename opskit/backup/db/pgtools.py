"""PostgreSQL programs and connections: the right major version, clear errors.

pg_dump refuses servers newer than itself and an old pg_restore cannot read
a newer archive, so every program is taken from one directory whose major
version is at least the server's: ``backup.pg.bindir``, else Debian's
``/usr/lib/postgresql/<major>/bin``, else PATH. Connection failures become
one line naming the database (wrong password, unreachable server); nothing
secret ever reaches a message.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from opskit.core.errors import OperationalError
from opskit.core.optional import require

from .settings import DatabaseTarget

SESSION_SETTINGS = (
    # COPY text output depends on these; fixed so a table dumps the same bytes
    # at backup time and in a drill (checksums compare), whatever the server says
    "SET DateStyle = ISO", "SET IntervalStyle = postgres", "SET extra_float_digits = 3",
    "SET bytea_output = hex", "SET TimeZone = 'UTC'", "SET client_encoding = 'UTF8'",
    "SET synchronize_seqscans = off", "SET statement_timeout = 0",
)


class DatabaseError(OperationalError):
    """A database could not be reached or a PostgreSQL program failed (exit 3)."""


def pg_message(exc) -> str:
    """First line of a psycopg error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(target: DatabaseTarget, *, dbname: str | None = None, autocommit: bool = True):
    """A psycopg connection to ``target``; DatabaseError naming it when that fails."""
    psycopg = require("psycopg", extra="postgres")
    kwargs = {"connect_timeout": 10, "autocommit": autocommit, "application_name": "opskit-backup"}
    pw = target.password()
    if pw is not None:
        kwargs["password"] = pw
    try:
        return psycopg.connect(target.conninfo(dbname), **kwargs)
    except psycopg.Error as exc:
        raise DatabaseError(f"database {target.name} ({target.describe()}): cannot connect: "
                            f"{pg_message(exc)}") from None


def apply_session_settings(conn) -> None:
    for stmt in SESSION_SETTINGS:
        conn.execute(stmt)


def major_of(version_num: int) -> int:
    return version_num // 10000


@dataclass
class Tools:
    """The directory of PostgreSQL programs matching one server."""

    bindir: str | None      # None: PATH
    major: int

    def path(self, program: str) -> str:
        if self.bindir:
            return os.path.join(self.bindir, program)
        found = shutil.which(program)
        if not found:
            raise DatabaseError(f"{program} not found on PATH",
                                hint="install the PostgreSQL client programs or set "
                                     "backup.pg.bindir")
        return found


def _version(program: str) -> int | None:
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\s(\d+)(?:\.\d+)?", out.stdout)
    return int(m.group(1)) if out.returncode == 0 and m else None


def find_tools(server_major: int, configured: str | None = None,
               program: str = "pg_dump") -> Tools:
    """Programs whose major version is at least ``server_major``; DatabaseError
    naming what was found otherwise."""
    candidates: list[str | None] = []
    if configured:
        candidates.append(configured)
    else:
        debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda d: int(re.sub(r"\D", "", d.split("/")[-2]) or 0))
        exact = f"/usr/lib/postgresql/{server_major}/bin"
        candidates += ([exact] if exact in debian else []) + \
            [d for d in debian if d != exact] + [None]
    seen = []
    for bindir in candidates:
        exe = os.path.join(bindir, program) if bindir else shutil.which(program)
        if not exe or not os.path.exists(exe):
            continue
        major = _version(exe)
        seen.append(f"{exe} ({major})")
        if major is not None and major >= server_major:
            return Tools(bindir or os.path.dirname(exe), major)
    raise DatabaseError(
        f"no {program} of major version {server_major} or newer (the server's)"
        + (f"; found {', '.join(seen)}" if seen else ""),
        hint=f"install postgresql-client-{server_major} or set backup.pg.bindir")


def run_checked(cmd: list[str], env: dict, what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program; DatabaseError with its last stderr line on failure."""
    full_env = dict(os.environ)
    full_env.update(env)
    proc = subprocess.run(cmd, env=full_env, capture_output=True, **kwargs)
    if proc.returncode != 0:
        raise DatabaseError(f"{what}: {os.path.basename(cmd[0])} failed: "
                            f"{last_line(proc.stderr)}")
    return proc


def last_line(stderr: bytes | str | None) -> str:
    """The most telling line of a program's stderr (its last 'error' line)."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()]
    return (errors or lines or ["(no message)"])[-1][:400]
