"""A throw-away local PostgreSQL cluster for drills: initdb, start on a free
port (Unix socket in a private directory, trust for its owner only), stop
and remove. initdb refuses root, so as root the cluster belongs to
``backup.pg.drill_os_user`` and its programs run through ``runuser``.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

from .pgtools import DatabaseError, Tools, last_line
from .settings import DatabaseTarget

SUPERUSER = "opskit_drill"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScratchCluster:
    """``with ScratchCluster(tools, os_user) as c: c.target(db)``; always removed."""

    def __init__(self, tools: Tools, os_user: str | None, *, settings: dict | None = None,
                 superuser: str = SUPERUSER):
        self.tools = tools
        self.superuser = superuser
        self.os_user = os_user if os.geteuid() == 0 else None
        self.settings = settings or {}
        self.base = ""
        self.port = 0
        self._proc: subprocess.Popen | None = None

    @property
    def data(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def sockdir(self) -> str:
        return os.path.join(self.base, "sock")

    @property
    def log_path(self) -> str:
        return os.path.join(self.base, "server.log")

    def _cmd(self, program: str, *args: str) -> list[str]:
        cmd = [self.tools.path(program), *args]
        return ["runuser", "-u", self.os_user, "--", *cmd] if self.os_user else cmd

    def _run(self, program: str, *args: str, timeout: float = 300) -> None:
        proc = subprocess.run(self._cmd(program, *args), capture_output=True, cwd=self.base,
                              timeout=timeout, env=_clean_env())
        if proc.returncode != 0:
            raise DatabaseError(f"drill scratch cluster: {program} failed: "
                                f"{last_line(proc.stderr or proc.stdout)}")

    def create(self, initdb: bool = True) -> None:
        """A fresh temp dir, and initdb into it unless a restored data directory
        goes there (``initdb=False``)."""
        self.base = tempfile.mkdtemp(prefix="opskit-drill-pg-", dir="/tmp")
        os.makedirs(self.sockdir, mode=0o700)
        open(self.log_path, "a").close()
        if self.os_user:
            try:
                info = pwd.getpwnam(self.os_user)
            except KeyError:
                raise DatabaseError(f"drill scratch cluster: OS user {self.os_user} does not "
                                    "exist", hint="create it or set backup.pg.drill_os_user")
            for path in (self.base, self.sockdir, self.log_path):
                os.chown(path, info.pw_uid, info.pw_gid)
        if initdb:
            self._run("initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust",
                      "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")

    def start(self) -> None:
        """Start on a free port; waits until it accepts connections."""
        last = ""
        for _attempt in range(3):     # a free port can be taken before postgres binds it
            self.port = free_port()
            opts = {"listen_addresses": "", "unix_socket_directories": self.sockdir,
                    "port": str(self.port), "fsync": "off", "synchronous_commit": "off",
                    "full_page_writes": "off", "logging_collector": "off",
                    "shared_buffers": "64MB", "max_wal_senders": "0", "wal_level": "minimal",
                    "archive_mode": "off", **self.settings}
            args = ["-D", self.data] + [x for k, v in opts.items() for x in ("-c", f"{k}={v}")]
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(self._cmd("postgres", *args), stdout=log,
                                              stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, cwd=self.base,
                                              env=_clean_env(), start_new_session=True)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and self._proc.poll() is None:
                if os.path.exists(os.path.join(self.sockdir, f".s.PGSQL.{self.port}")) and \
                        self._ready():
                    return
                time.sleep(0.1)
            last = self.log_tail()
            self.stop()
            if "could not bind" not in last and "in use" not in last:
                break
        raise DatabaseError(f"drill scratch cluster did not start: {last or 'no log'}")

    def _ready(self) -> bool:
        check = subprocess.run([self.tools.path("pg_isready"), "-q", "-h", self.sockdir,
                                "-p", str(self.port), "-t", "2"], capture_output=True,
                               env=_clean_env())
        return check.returncode == 0

    def target(self, dbname: str) -> DatabaseTarget:
        return DatabaseTarget("scratch", host=self.sockdir, port=self.port, user=self.superuser,
                              dbname=dbname)

    def log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                text = fh.read()[-8192:].decode("utf-8", "replace")
        except OSError:
            return ""
        return " | ".join(ln for ln in text.splitlines()[-lines:] if ln.strip())

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            subprocess.run(self._cmd("pg_ctl", "stop", "-D", self.data, "-m", "immediate",
                                     "-w", "-t", "60"), capture_output=True, cwd=self.base,
                           timeout=90, env=_clean_env())
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, 9)
            except ProcessLookupError:
                pass
            self._proc.wait(timeout=10)

    def remove(self) -> None:
        """Stop the server and delete every file of the cluster."""
        self.stop()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "ScratchCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def _clean_env() -> dict:
    """Our environment without libpq variables that could point elsewhere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}
