"""A real PostgreSQL server that archives its WAL with ``opskit backup wal-push``.

``pg_archiving`` (function scope) runs initdb with 1 MiB WAL segments and
starts postgres with ``wal_level=replica``, ``archive_mode=on`` and an
``archive_command`` calling ``<base>/archive.sh %p``, which runs
``python -m opskit --config <base>/opskit.yaml backup wal-push "$1"`` with
the environment in ``<base>/archive.env`` (tests append failpoints there;
it is re-read on every push). The repository, the config and the
passphrase file are made in ``<base>`` too. The shared ``postgres`` fixture
(wal_level=minimal) is left alone.

initdb refuses root and the interpreter running the tests may live where
an unprivileged user cannot reach (``/root/.pyenv``), so as root the
servers run in a user namespace that maps the cluster owner (``postgres``,
or ``opskit-test``) onto root: postgres sees an ordinary user, while the
archive_command it starts keeps root's file access outside. As a normal
user they simply run as that user.

``pg.start_restored(datadir)`` starts another server on a restored data
directory (on a Unix socket, no archiving) and stops it at the end.
"""
from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import pytest

from tests.harness.backup import PASSPHRASE, engine_repo
from tests.harness._util import log_tail
from tests.harness.cli import CliRun, run_opskit
from tests.harness.postgres import SUPERUSER, PostgresServer, _clean_env, _os_user, find_bindir, \
    free_port

SEGMENT_MB = 1


def _userns(cmd: list[str], owner: str | None) -> list[str]:
    if owner is None:
        return cmd
    info = pwd.getpwnam(owner)
    return ["unshare", "--user", f"--map-user={info.pw_uid}", f"--map-group={info.pw_gid}",
            *cmd]


def _server_env(base: str) -> dict:
    env = _clean_env()
    env.update({"OPSKIT_HOME": os.path.join(base, "state"), "HOME": base,
                "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "LC_ALL": "C"})
    env.pop("OPSKIT_PASSPHRASE", None)
    env.pop("OPSKIT_FAILPOINT", None)
    return env


def _wait_ready(bindir: str, proc: subprocess.Popen, host: str, port: int,
                timeout: float = 60) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"postgres exited with code {proc.returncode}"
        check = subprocess.run([os.path.join(bindir, "pg_isready"), "-q", "-h", host, "-p",
                                str(port), "-t", "2"], capture_output=True, env=_clean_env())
        if check.returncode == 0:
            return None
        time.sleep(0.1)
    return f"not accepting connections after {timeout:.0f}s"


def _stop(bindir: str, owner: str | None, data: str, proc: subprocess.Popen | None,
          env: dict) -> None:
    if proc is None or proc.poll() is not None:
        return
    subprocess.run(_userns([os.path.join(bindir, "pg_ctl"), "stop", "-D", data, "-m", "fast",
                            "-w", "-t", "30"], owner), capture_output=True, env=env, timeout=60)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


@dataclass
class ArchivingPostgres:
    """The archiving server plus everything wal-push needs (module doc)."""

    server: PostgresServer
    base: str
    repo: str
    config: str
    bindir: str
    owner: str | None
    env: dict
    _proc: subprocess.Popen | None = None
    _restored: list = field(default_factory=list)

    @property
    def env_file(self) -> str:
        return os.path.join(self.base, "archive.env")

    def psql(self, sql: str, db: str = "postgres") -> str:
        return self.server.psql(sql, db)

    def use_base_source(self, source: str) -> None:
        """Set ``backup.pg.base_source`` in the config (datadir, pg_basebackup, auto)."""
        with open(self.config) as fh:
            text = fh.read()
        text = re.sub(r"\n    base_source: \w+", "", text)
        with open(self.config, "w") as fh:
            fh.write(text.replace("    checkpoint: fast\n",
                                  f"    checkpoint: fast\n    base_source: {source}\n"))

    def set_archive_env(self, **extra: str) -> None:
        """Extra variables for the following wal-push runs (failpoints)."""
        with open(self.env_file, "w") as fh:
            for key, value in {**self.env, **extra}.items():
                fh.write(f"export {key}='{value}'\n")

    def opskit(self, *args: str, timeout: float = 300) -> CliRun:
        """``opskit --config <base>/opskit.yaml backup ARGS`` (passphrase from the config)."""
        run = run_opskit("--config", self.config, "backup", *args, timeout=timeout,
                         env={"OPSKIT_HOME": self.env["OPSKIT_HOME"], "OPSKIT_PASSPHRASE": ""})
        assert "Traceback" not in run.output, run.output
        return run

    def switch_and_wait(self, timeout: float = 90) -> str:
        """Close the current segment and wait until the archiver stored it; its name."""
        name = self.psql("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + timeout
        nudge = time.monotonic() + 2
        while time.monotonic() < deadline:
            last = self.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
            if last and last[:24] >= name:
                return name
            if time.monotonic() > nudge:
                # after three failed archive_commands in a row the archiver sleeps up to
                # 60 s; a reload's SIGHUP wakes it, as that much time passing would
                self.psql("SELECT pg_reload_conf()")
                nudge = time.monotonic() + 2
            time.sleep(0.2)
        raise AssertionError(f"segment {name} not archived within {timeout}s; server log:\n"
                             f"{self.server.log_tail(30)}")

    def insert_and_archive(self, count: int, table: str = "t") -> list[str]:
        """``count`` times: one row into ``table`` (x int), then its segment
        closed and archived; the segment names."""
        names = []
        for i in range(count):
            self.psql(f"INSERT INTO {table} VALUES ({i})")
            names.append(self.switch_and_wait())
        return names

    def before_and_after(self, table: str = "claims") -> str:
        """Row (1, 'before'), a second, the time now (ISO, UTC), a second, row
        (2, 'after'), segment archived: the time between the two commits."""
        self.psql(f"INSERT INTO {table} VALUES (1, 'before')")
        time.sleep(1.0)
        between = self.psql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        time.sleep(1.0)
        self.psql(f"INSERT INTO {table} VALUES (2, 'after')")
        self.switch_and_wait()
        return between

    def start_restored(self, datadir: str) -> PostgresServer:
        """Start a server on a restored data directory (Unix socket only, no archiving)."""
        sock = tempfile.mkdtemp(prefix="opskit-pitr-sock-", dir="/tmp")
        log = os.path.join(sock, "server.log")
        port = free_port()
        cmd = [os.path.join(self.bindir, "postgres"), "-D", datadir, "-k", sock, "-p", str(port),
               "-c", "listen_addresses=", "-c", "archive_mode=off", "-c", "fsync=off",
               "-c", "logging_collector=off", "-c", "max_wal_senders=4",
               "-c", "wal_level=replica", "-c", "timezone=UTC", "-c", "shared_buffers=16MB"]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(_userns(cmd, self.owner), stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=self.env,
                                    start_new_session=True)
        self._restored.append((datadir, proc, sock))
        problem = _wait_ready(self.bindir, proc, sock, port, timeout=120)
        if problem:
            raise AssertionError(f"restored server: {problem}\n{log_tail(log, 30)}")
        return PostgresServer(host=sock, port=port, superuser=SUPERUSER, password="",
                              socket_dir=sock, data_dir=datadir, bindir=self.bindir,
                              log_path=log, os_user=self.owner)

    def close(self) -> None:
        for datadir, proc, sock in self._restored:
            _stop(self.bindir, self.owner, datadir, proc, self.env)
            shutil.rmtree(sock, ignore_errors=True)
        _stop(self.bindir, self.owner, self.server.data_dir, self._proc, self.env)


def wait_out_of_recovery(srv: PostgresServer, timeout: float = 120) -> None:
    """Wait until a restored server has finished recovery (AssertionError with its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.psql("SELECT pg_is_in_recovery()") == "f":
            return
        time.sleep(0.2)
    raise AssertionError(f"restored server still in recovery\n{srv.log_tail(30)}")


def _write_files(base: str, bindir: str, port: int, password: str) -> tuple[str, str]:
    repo = os.path.join(base, "repo")
    engine_repo(repo)
    for name, text in (("pass", PASSPHRASE + "\n"), ("pg.pw", password + "\n")):
        path = os.path.join(base, name)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o600)
    config = os.path.join(base, "opskit.yaml")
    with open(config, "w") as fh:
        fh.write(f"backup:\n  repo: {repo}\n  passphrase_file: {base}/pass\n"
                 f"  chunk_avg_kib: 64\n  pack_size_mib: 1\n"
                 f"  databases:\n    main:\n      host: 127.0.0.1\n      port: {port}\n"
                 f"      user: {SUPERUSER}\n      dbname: postgres\n"
                 f"      password_file: {base}/pg.pw\n      sslmode: disable\n"
                 f"  pg:\n    cluster: main\n    checkpoint: fast\n    bindir: {bindir}\n")
    script = os.path.join(base, "archive.sh")
    with open(script, "w") as fh:
        # A wal-push killed by a signal is reported and turned into exit 1: PostgreSQL
        # treats exit > 125 as fatal for its archiver and restarts it at most every
        # 10 s, which would only make the kill tests slow; exit 1 is retried in 1 s.
        fh.write(f"#!/bin/sh\n. {base}/archive.env\n{sys.executable} -m opskit --config "
                 f"{config} backup wal-push \"$1\"\nstatus=$?\n"
                 "if [ $status -gt 125 ]; then\n"
                 "  echo \"archive.sh: wal-push killed (exit $status)\" >&2; exit 1\nfi\n"
                 "exit $status\n")
    os.chmod(script, 0o755)
    return repo, config


@pytest.fixture
def pg_archiving():
    """A PostgreSQL server archiving into an opskit repository (module doc)."""
    base = tempfile.mkdtemp(prefix="opskit-pitr-", dir="/tmp")
    bindir = find_bindir()
    owner = _os_user()
    data, log = os.path.join(base, "data"), os.path.join(base, "server.log")
    password = secrets.token_urlsafe(18)
    env = _server_env(base)
    port = free_port()
    repo, config = _write_files(base, bindir, port, password)
    pg = ArchivingPostgres(PostgresServer("127.0.0.1", port, SUPERUSER, password, base, data,
                                          bindir, log, owner), base, repo, config, bindir,
                           owner, env)
    pg.set_archive_env()
    try:
        pwfile = os.path.join(base, "pg.pw")
        init = subprocess.run(_userns([os.path.join(bindir, "initdb"), "-D", data, "-U",
                                       SUPERUSER, f"--pwfile={pwfile}", "--auth-local=trust",
                                       "--auth-host=scram-sha-256", "--encoding=UTF8",
                                       "--locale=C", "--no-sync", "--no-instructions",
                                       f"--wal-segsize={SEGMENT_MB}"], owner),
                              capture_output=True, text=True, env=env, timeout=120)
        if init.returncode != 0:
            pytest.fail(f"initdb failed: {init.stdout}{init.stderr}", pytrace=False)
        cmd = [os.path.join(bindir, "postgres"), "-D", data, "-k", base, "-h", "127.0.0.1",
               "-p", str(port), "-c", "fsync=off", "-c", "wal_level=replica",
               "-c", "archive_mode=on", "-c", f"archive_command={base}/archive.sh %p",
               "-c", "max_wal_senders=4", "-c", "logging_collector=off", "-c", "ssl=off",
               "-c", "shared_buffers=16MB", "-c", "timezone=UTC", "-c", "max_connections=30"]
        with open(log, "ab") as fh:
            pg._proc = subprocess.Popen(_userns(cmd, owner), stdout=fh, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, cwd=base,
                                        start_new_session=True)
        problem = _wait_ready(bindir, pg._proc, "127.0.0.1", port)
        if problem:
            pytest.fail(f"archiving PostgreSQL: {problem}\n{log_tail(log, 30)}", pytrace=False)
        yield pg
    finally:
        pg.close()
        shutil.rmtree(base, ignore_errors=True)
