"""A real PostgreSQL server for tests.

``postgres`` (session scope) runs ``initdb`` into a fresh temporary directory
and starts ``postgres`` on a free port of 127.0.0.1 (TCP, password required)
plus a Unix socket in a private directory (trust, for the harness itself).
It is stopped with ``pg_ctl stop -m fast`` and its files are removed at the
end of the session. If anything fails the fixture calls ``pytest.fail`` with
the server log tail: it never skips.

``initdb`` refuses to run as root, so when the tests run as root the cluster
belongs to an unprivileged OS user (``$OPSKIT_TEST_PG_OSUSER``, else the
``postgres`` system user, else ``opskit-test``, created on demand) and every
server-side command goes through ``runuser -u USER --``. As a normal user,
the cluster simply belongs to that user.

Binaries: ``$OPSKIT_TEST_PG_BINDIR``, else the newest
``/usr/lib/postgresql/*/bin`` (Debian), else ``pg_config --bindir``, else PATH.

Usage::

    def test_roles(postgres):
        postgres.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        assert postgres.psql("SELECT x FROM t") == "1"
        dsn = postgres.create_database("inventory")

The fixture sets no environment variables; code under test that runs in a
subprocess can take ``postgres.env`` (PGHOST, PGPORT, PGUSER, PGPASSWORD).
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import pytest

from tests.harness._util import log_tail

SUPERUSER = "opskit_super"
START_TIMEOUT = 60.0
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


class PsqlError(AssertionError):
    """psql exited non-zero; the message carries its stderr."""

    def __init__(self, message: str, returncode: int, stdout: str, stderr: str):
        super().__init__(message)
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quote_ident(name: str) -> str:
    """SQL-quote an identifier (role or database name)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """SQL-quote a string literal (for DDL such as PASSWORD, which cannot be parameterised)."""
    return "'" + value.replace("'", "''") + "'"


def find_bindir() -> str:
    """Directory holding initdb, postgres, pg_ctl, pg_isready and psql."""
    env = os.environ.get("OPSKIT_TEST_PG_BINDIR")
    if env:
        return env

    def version(path: str) -> tuple:
        tail = path.split("/")[-2]
        return tuple(int(p) for p in re.findall(r"\d+", tail)) or (0,)

    candidates = sorted((d for d in glob.glob("/usr/lib/postgresql/*/bin")
                         if os.path.exists(os.path.join(d, "initdb"))), key=version)
    if candidates:
        return candidates[-1]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and os.path.exists(os.path.join(out.stdout.strip(), "initdb")):
            return out.stdout.strip()
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise FileNotFoundError("PostgreSQL server binaries (initdb) not found; install the "
                            "'postgresql' package or set OPSKIT_TEST_PG_BINDIR (scripts/test "
                            "installs it)")


def _os_user() -> str | None:
    """The unprivileged OS user owning the cluster, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("OPSKIT_TEST_PG_OSUSER")
    for name in ([wanted] if wanted else ["postgres", "opskit-test"]):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    name = wanted or "opskit-test"
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    return name




def _clean_env() -> dict:
    """os.environ without libpq variables that could redirect a client."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


@dataclass
class PostgresServer:
    """A running test cluster. ``superuser``/``password`` log in over TCP."""

    host: str
    port: int
    superuser: str
    password: str
    socket_dir: str
    data_dir: str
    bindir: str
    log_path: str
    os_user: str | None = None           # owner of the cluster files (None: ourselves)
    version: str = ""
    _databases: list = field(default_factory=list, repr=False)

    # --- connection strings ------------------------------------------------------
    @property
    def dsn(self) -> str:
        """libpq URL of the 'postgres' database as the test superuser."""
        return self.dsn_for("postgres")

    def dsn_for(self, db: str, user: str | None = None, password: str | None = None) -> str:
        from urllib.parse import quote
        user = user or self.superuser
        password = self.password if password is None and user == self.superuser else password
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(db, safe='')}"

    @property
    def env(self) -> dict:
        """libpq env vars for a subprocess (merge into its env; never os.environ)."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.superuser,
                "PGPASSWORD": self.password, "PGDATABASE": "postgres", "PGSSLMODE": "disable",
                "PGCONNECT_TIMEOUT": "10"}

    # --- clients -----------------------------------------------------------------
    def psql(self, sql: str, db: str = "postgres", *, user: str | None = None,
             password: str | None = None, check: bool = True, timeout: float = 120,
             separator: str = "|") -> str:
        """Run ``sql`` (one or more statements) with psql over TCP and return
        its output: unaligned, tuples only, rows on lines, fields split by
        ``separator``, trailing newline stripped. Stops at the first error;
        with ``check`` a failure raises PsqlError (an AssertionError) carrying stderr."""
        user = user or self.superuser
        if password is None and user == self.superuser:
            password = self.password
        env = _clean_env()
        env.update({"PGCONNECT_TIMEOUT": "10", "PGSSLMODE": "disable", "PGAPPNAME": "opskit-tests"})
        if password is not None:
            env["PGPASSWORD"] = password
        cmd = [os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-w",
               "-v", "ON_ERROR_STOP=1", "-F", separator,
               "-h", self.host, "-p", str(self.port), "-U", user, "-d", db, "-f", "-"]
        proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, env=env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise PsqlError(f"psql -U {user} -d {db} failed (exit {proc.returncode}): "
                            f"{proc.stderr.strip()}\nSQL: {sql}",
                            proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout.rstrip("\n")

    def rows(self, sql: str, db: str = "postgres", **kwargs) -> list[tuple[str, ...]]:
        """``psql`` output as a list of tuples of strings (fields split on \\x1f)."""
        out = self.psql(sql, db, separator="\x1f", **kwargs)
        return [tuple(line.split("\x1f")) for line in out.splitlines()] if out else []

    def create_database(self, name: str, owner: str | None = None) -> str:
        """Create database ``name`` and return its DSN (as the superuser)."""
        if not _IDENT.match(name):
            raise ValueError(f"unsafe database name {name!r}")
        sql = f"CREATE DATABASE {quote_ident(name)}"
        if owner:
            sql += f" OWNER {quote_ident(owner)}"
        self.psql(sql)
        self._databases.append(name)
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        if name in self._databases:
            self._databases.remove(name)

    def create_role(self, name: str, password: str | None = None, *, login: bool = True,
                    superuser: bool = False) -> str:
        """Create role ``name`` (LOGIN by default) and return its name."""
        if not _IDENT.match(name):
            raise ValueError(f"unsafe role name {name!r}")
        sql = f"CREATE ROLE {quote_ident(name)}" + (" LOGIN" if login else " NOLOGIN")
        if superuser:
            sql += " SUPERUSER"
        if password is not None:
            sql += f" PASSWORD {quote_literal(password)}"
        self.psql(sql)
        return name

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def _run(user: str | None, cmd: list[str], cwd: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(_as_user(user, cmd), capture_output=True, text=True, cwd=cwd,
                          env=_clean_env(), timeout=timeout)


def _start(bindir: str, user: str | None, data: str, sockdir: str, log_path: str,
           base: str) -> tuple[subprocess.Popen, int, str | None]:
    """Start postgres; return (process, port, problem or None once it accepts connections)."""
    port = free_port()
    cmd = [os.path.join(bindir, "postgres"), "-D", data, "-k", sockdir, "-h", "127.0.0.1",
           "-p", str(port),
           "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
           "-c", "max_connections=100", "-c", "shared_buffers=32MB",
           "-c", "logging_collector=off", "-c", "log_min_messages=warning",
           "-c", "ssl=off", "-c", "max_wal_senders=0", "-c", "wal_level=minimal",
           "-c", "timezone=UTC"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(_as_user(user, cmd), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=base, env=_clean_env(),
                                start_new_session=True)
    isready = os.path.join(bindir, "pg_isready")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc, port, f"postgres exited with code {proc.returncode}"
        check = subprocess.run([isready, "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2"],
                               capture_output=True, env=_clean_env())
        if check.returncode == 0:
            return proc, port, None
        time.sleep(0.1)
    return proc, port, f"not accepting connections after {START_TIMEOUT:.0f}s"


def _stop(bindir: str, user: str | None, data: str, proc: subprocess.Popen | None, base: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        _run(user, [os.path.join(bindir, "pg_ctl"), "stop", "-D", data, "-m", "fast", "-w",
                    "-t", "30"], cwd=base, timeout=60)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (see module doc)."""
    # /tmp: a short path (socket names are limited to ~107 bytes) that the
    # unprivileged cluster owner can reach, whatever $TMPDIR says.
    base = tempfile.mkdtemp(prefix="opskit-pg-", dir="/tmp" if os.path.isdir("/tmp") else None)
    data, sockdir = os.path.join(base, "data"), os.path.join(base, "sock")
    log_path = os.path.join(base, "server.log")
    proc: subprocess.Popen | None = None
    bindir = ""
    user: str | None = None
    password = secrets.token_urlsafe(18)

    def fail(what: str, detail: str = "") -> None:
        text = f"PostgreSQL test server: {what}"
        if detail:
            text += f"\n{detail.rstrip()}"
        text += f"\n--- {log_path} (tail) ---\n{log_tail(log_path)}"
        pytest.fail(text, pytrace=False)

    try:
        try:
            bindir = find_bindir()
            user = _os_user()
        except (FileNotFoundError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            fail(f"cannot prepare: {exc}", detail.decode("utf-8", "replace")
                 if isinstance(detail, bytes) else str(detail))
        os.makedirs(sockdir, mode=0o700)
        pwfile = os.path.join(base, "pwfile")
        with open(pwfile, "w") as fh:
            fh.write(password + "\n")
        os.chmod(pwfile, 0o600)
        open(log_path, "a").close()
        if user:
            info = pwd.getpwnam(user)
            os.chmod(base, 0o700)
            for path in (base, sockdir, pwfile, log_path):
                os.chown(path, info.pw_uid, info.pw_gid)

        init = _run(user, [os.path.join(bindir, "initdb"), "-D", data, "-U", SUPERUSER,
                           f"--pwfile={pwfile}", "--auth-local=trust",
                           "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                           "--no-sync", "--no-instructions"], cwd=base)
        os.unlink(pwfile)
        if init.returncode != 0:
            fail(f"initdb failed (exit {init.returncode})", init.stdout + init.stderr)

        problem = "not started"
        for _attempt in range(3):      # the free port may be taken before postgres binds it
            proc, port, problem = _start(bindir, user, data, sockdir, log_path, base)
            if problem is None:
                break
            _stop(bindir, user, data, proc, base)
            if "could not bind" not in log_tail(log_path, 20) and "in use" not in log_tail(log_path, 20):
                break
        if problem is not None:
            fail(problem)

        version = subprocess.run([os.path.join(bindir, "postgres"), "--version"],
                                 capture_output=True, text=True).stdout.strip()
        server = PostgresServer(host="127.0.0.1", port=port, superuser=SUPERUSER,
                                password=password, socket_dir=sockdir, data_dir=data,
                                bindir=bindir, log_path=log_path, os_user=user, version=version)
        try:   # prove the password login over TCP works before handing it out
            if server.psql("SELECT current_user") != SUPERUSER:
                fail("password login as the test superuser returned an unexpected user")
        except (PsqlError, subprocess.TimeoutExpired) as exc:
            fail("password login over TCP failed", str(exc))
        yield server
    finally:
        if bindir:
            _stop(bindir, user, data, proc, base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres) -> str:
    """Name of a fresh database on ``postgres`` for this test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name)
    yield name
    postgres.drop_database(name)
