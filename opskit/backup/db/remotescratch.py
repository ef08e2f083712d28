"""A drill's scratch PostgreSQL cluster on a drill host, over SSH.

The same life as ``ScratchCluster`` (scratch.py) on another machine, so a
restore drill proves the backup on the host a real recovery would use and
never loads the database host: ``mktemp -d`` under /tmp there, ``initdb``
with a random superuser password (scram-sha-256 for every connection), the
server listening on the drill host's loopback only and reached through an
SSH tunnel (hosts/tunnel.py), so libpq, pg_restore and the checks run here
unchanged. As root there the cluster belongs to ``backup.pg.drill_os_user``
(``runuser``). Stopped and removed (``rm -rf`` of its folder) whatever
happens; the password lives in a 0600 file here and there only while needed.
"""
from __future__ import annotations

import os
import random
import secrets
import shlex
import tempfile

from opskit.core.errors import OpskitError

from .pgtools import DatabaseError, last_line
from .scratch import SUPERUSER
from .settings import DatabaseTarget


class RemoteScratchCluster:
    """``with RemoteScratchCluster(host, major, os_user) as c: c.create(); c.start()``."""

    def __init__(self, host, major: int, os_user: str | None, *, bindir: str | None = None,
                 settings: dict | None = None, superuser: str = SUPERUSER):
        self.host = host
        self.major = major
        self.wanted_user = os_user
        self.os_user: str | None = None
        self.bindir = bindir or f"/usr/lib/postgresql/{major}/bin"
        self.settings = settings or {}
        self.superuser = superuser
        self.base = ""
        self.port = 0
        self._password = secrets.token_urlsafe(24)
        self._pwfile = ""                 # here, for libpq
        self._forward = None
        self._started = False
        self._restored = False
        self.cleanup_problem = ""         # set when the cluster could not be removed

    @property
    def data(self) -> str:
        return f"{self.base}/data"

    @property
    def log_path(self) -> str:
        return f"{self.base}/server.log"

    def _where(self) -> str:
        return f"drill host {self.host.describe()}"

    def _cmd(self, program: str, *args: str) -> list[str]:
        cmd = [f"{self.bindir}/{program}", *args]
        return ["runuser", "-u", self.os_user, "--", *cmd] if self.os_user else cmd

    def _run(self, program: str, *args: str, timeout: float = 300):
        res = self.host.run(self._cmd(program, *args), timeout=timeout)
        if res.rc != 0:
            raise DatabaseError(f"{self._where()}: {program} failed: "
                                f"{last_line((res.stderr or res.stdout).decode('utf-8', 'replace'))}")
        return res

    def create(self, initdb: bool = True) -> None:
        """A fresh folder there, and initdb into it unless a restored data
        directory goes there (``initdb=False``: ``unpack`` and ``configure``)."""
        if not self.host.exists(f"{self.bindir}/initdb"):
            raise DatabaseError(f"{self._where()}: no PostgreSQL {self.major} server programs "
                                f"in {self.bindir}",
                                hint=f"install postgresql-{self.major} on the drill host")
        root = self.host.run(["id", "-u"], check=True).text.strip() == "0"
        self.os_user = self.wanted_user if root else None
        self.base = self.host.run(["mktemp", "-d", "/tmp/opskit-drill-pg-XXXXXXXXXX"],
                                  check=True).text.strip()
        self.host.run(["mkdir", "-m", "700", "--", self.data], check=True)
        self._restored = not initdb
        if not initdb:
            self._chown()
            return
        pw = f"{self.base}/pw"
        self.host.write_file(pw, (self._password + "\n").encode(), mode=0o600)
        self._chown()
        try:
            self.host.run(["rmdir", "--", self.data], check=True)   # initdb makes it
            self._run("initdb", "-D", self.data, "-U", self.superuser, f"--pwfile={pw}",
                      "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync",
                      "--no-instructions")
        finally:
            self.host.run(["rm", "-f", "--", pw])

    def _chown(self) -> None:
        if self.os_user:
            self.host.run(["chown", "-R", "--", f"{self.os_user}:", self.base], check=True)

    def put_files(self, folder: str, files) -> int:
        """``files`` ((name, bytes) pairs: archived WAL) into ``folder`` there; how many."""
        self.host.run(["mkdir", "-m", "700", "-p", "--", folder], check=True)
        count = 0
        for name, data in files:
            self.host.write_file(f"{folder}/{name}", data, mode=0o600)
            count += 1
        self._chown()
        return count

    def unpack(self, blocks) -> None:
        """A base backup's tar stream into the data directory, by GNU tar there
        running as the cluster's user (it refuses '..' and strips a leading '/')."""
        cmd = ["tar", "-x", "-f", "-", "-C", self.data, "--no-same-owner",
               "--no-same-permissions"]
        if self.os_user:
            cmd = ["runuser", "-u", self.os_user, "--", *cmd]
        res = self.host.run_fed(cmd, blocks, timeout=6 * 3600)
        if res.rc != 0:
            raise DatabaseError(f"{self._where()}: unpacking the base backup failed: "
                                f"{last_line(res.stderr.decode('utf-8', 'replace'))}")

    def configure(self, recovery: dict[str, str], quote) -> None:
        """Recovery settings appended to postgresql.auto.conf, recovery.signal;
        only the drill's own socket trusted, loopback TCP by password; an
        empty postgresql.conf where the source kept its own elsewhere. Every
        file is replaced by rename (write_file), never written through a symlink."""
        auto = f"{self.data}/postgresql.auto.conf"
        text = b""
        if self.host.exists(auto):
            if self.host.stat(auto, follow_symlinks=False).is_link:
                raise DatabaseError(f"{self._where()}: {auto}: the snapshot has a symlink "
                                    "here; refused, nothing read or written through it")
            text = self.host.read_file(auto)
        text += b"\n# added by opskit backup db drill\n" + "".join(
            f"{k} = {quote(v)}\n" for k, v in recovery.items()).encode()
        files = {auto: text, f"{self.data}/recovery.signal": b"",
                 f"{self.data}/pg_hba.conf": b"local all all trust\n"
                                              b"host all all 127.0.0.1/32 scram-sha-256\n"}
        conf = f"{self.data}/postgresql.conf"      # kept only as a file of its own
        if not self.host.exists(conf) or self.host.stat(conf, follow_symlinks=False).is_link:
            files[conf] = b""               # write_file renames over a link, never through
        for path, data in files.items():
            self.host.write_file(path, data, mode=0o600)
        self.host.run(["rm", "-f", "--", f"{self.data}/standby.signal",
                       f"{self.data}/postmaster.pid"], check=True)
        self._chown()
        self.host.run(["chmod", "700", "--", self.data], check=True)

    def _set_password(self) -> None:
        """A restored cluster keeps the source's passwords: give its superuser the
        drill's own, through the trusted socket there (SQL on stdin, not argv)."""
        role = '"' + self.superuser.replace('"', '""') + '"'
        res = self.host.run(self._cmd("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                                      self.base, "-p", str(self.port), "-U", self.superuser,
                                      "-d", "postgres", "-f", "-"),
                            input=f"ALTER ROLE {role} PASSWORD '{self._password}';\n".encode())
        if res.rc != 0:
            raise DatabaseError(f"{self._where()}: cannot set the drill's password on the "
                                f"restored cluster: {last_line(res.stderr.decode('utf-8', 'replace'))}")

    def start(self) -> None:
        """Start on a free loopback port there and open the tunnel to it."""
        last = ""
        for _attempt in range(4):         # a random port may be taken: try another
            self.port = random.randint(20000, 60000)
            opts = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                    "unix_socket_directories": self.base, "fsync": "off",
                    "synchronous_commit": "off", "full_page_writes": "off",
                    "logging_collector": "off", "shared_buffers": "64MB",
                    "max_wal_senders": "0", "wal_level": "minimal", "archive_mode": "off",
                    **self.settings}
            flags = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in opts.items())
            res = self.host.run(self._cmd("pg_ctl", "start", "-D", self.data, "-l",
                                          self.log_path, "-w", "-t", "600", "-o", flags),
                                timeout=660)
            if res.rc == 0:
                self._started = True
                break
            last = self.log_tail()
            if "could not bind" not in last and "in use" not in last:
                raise DatabaseError(f"{self._where()}: the drill's scratch cluster did not "
                                    f"start: {last or 'no log'}")
        else:
            raise DatabaseError(f"{self._where()}: no free port for the drill's scratch "
                                f"cluster: {last}")
        if self._restored:
            self._set_password()
        self._forward = self.host.forward(self.port)
        fd, self._pwfile = tempfile.mkstemp(prefix="opskit-drill-pw-")
        with os.fdopen(fd, "w") as fh:            # mkstemp: 0600
            fh.write(self._password + "\n")

    def target(self, dbname: str) -> DatabaseTarget:
        """The scratch cluster through the tunnel, as its superuser."""
        return DatabaseTarget("scratch", host="127.0.0.1", port=self._forward.port,
                              user=self.superuser, dbname=dbname, password_file=self._pwfile,
                              sslmode="disable")

    def log_tail(self, lines: int = 5) -> str:
        res = self.host.run(["tail", "-n", str(lines), "--", self.log_path])
        text = res.text
        return " | ".join(ln for ln in text.splitlines() if ln.strip())

    def remove(self) -> None:
        """Close the tunnel, stop the server and delete every file of the cluster."""
        if self._forward is not None:
            self._forward.close()
            self._forward = None
        if self._pwfile:
            os.unlink(self._pwfile)
            self._pwfile = ""
        if self._started:
            self.host.run(self._cmd("pg_ctl", "stop", "-D", self.data, "-m", "immediate",
                                    "-w", "-t", "60"), timeout=90)
            self._started = False
        if self.base:
            self.host.run(["rm", "-rf", "--", self.base], timeout=600)

    def __enter__(self) -> "RemoteScratchCluster":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.remove()
        except OpskitError as err:     # the host went away: the drill says so, not a traceback
            self.cleanup_problem = f"{self.host.name}:{self.base or '(none)'} not removed: " \
                                   f"{err.message}"
