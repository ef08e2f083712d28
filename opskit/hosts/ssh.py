"""SSHHost: a remote machine reached with paramiko.

Security rules (ARCHITECTURE.md, "Secrets"):
  * key authentication only: no passwords, no prompts; the SSH agent only
    when ``allow_agent`` is set; without ``key_filename`` the default
    ``~/.ssh/id_*`` keys are tried, as ssh does;
  * the host key is checked against ``known_hosts``. An unknown key is
    rejected (policy 'reject', the default) with its SHA256 fingerprint and
    how to trust it; with 'accept-new' a brand-new key is recorded. A key
    that differs from the recorded one is always rejected.

Commands are built with ``shlex.quote`` per argv element and run by the
remote user's login shell (POSIX sh assumed). ``env`` is passed as
``env -- NAME=VALUE ... argv`` on the remote command line, which other users
of that host may briefly see in the process list: pass secrets on stdin.
On timeout the channel is closed and sshd is asked to SIGKILL the command's
process group (the SSH 'signal' request). OpenSSH honours that only for
non-root logins (root sessions run without privilege separation); as root a
command that neither reads nor writes may outlive its timeout.

``run_batch`` sends all its commands to one ``sh -s`` (one round trip; see
opskit.hosts.batch). Files go over SFTP; writes are atomic (temp file, then
posix-rename); ``realpath`` asks the SFTP server.
The connection opens lazily on first use, is reused, and ``close()`` ends it.
"""
from __future__ import annotations

import getpass
import os
import posixpath
import re
import secrets
import select
import shlex
import socket
import stat as _stat
import threading
import time

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from . import knownhosts
from .base import (FileStat, Host, HostAuthFailed, HostError, HostKeyRejected, HostTimeout,
                   HostUnreachable, RunResult, file_error, format_argv)
from .batch import run_in_one_shell

POLICIES = ("reject", "accept-new")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHUNK = 32768
EOF_GRACE = 1.0   # seconds to wait for output EOF after the exit status


def _wait_readable(fd: int, seconds: float) -> None:
    """Sleep until ``fd`` is readable or ``seconds`` pass. poll, not select:
    select() fails on a descriptor number above 1023, which a long-lived
    process (the scheduler, a fan-out to many hosts) can reach."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll(max(0, int(seconds * 1000)))


def _next_block(feed) -> memoryview | None:
    """The next non-empty block of ``feed``; None at its end."""
    for block in feed:
        if block:
            return memoryview(block)
    return None


class _Deadline(Exception):
    def __init__(self, stdout: bytes, stderr: bytes):
        super().__init__("deadline")
        self.stdout, self.stderr = stdout, stderr


def _local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return os.environ.get("USER") or str(os.geteuid())


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only when known_hosts has *no* entry for the host."""

    def __init__(self, host: "SSHHost"):
        self.host = host

    def missing_host_key(self, client, hostname, key):
        self.host._unknown_host_key(hostname, key)


class SSHHost(Host):
    """A host reached over SSH. See the module docstring for the security rules."""

    def __init__(self, name: str, address: str, port: int = 22, user: str | None = None,
                 key_filename: str | None = None, known_hosts: str | None = None,
                 host_key_policy: str = "reject", connect_timeout: float = 10.0,
                 command_timeout: float = 120.0, allow_agent: bool = False):
        if host_key_policy not in POLICIES:
            raise ValueError(f"host_key_policy must be one of {POLICIES}, not {host_key_policy!r}")
        self.name = name
        self.hostname = address
        self.port = int(port)
        self.user = user or _local_user()
        self.key_filename = os.path.expanduser(key_filename) if key_filename else None
        self.known_hosts = os.path.expanduser(known_hosts or "~/.ssh/known_hosts")
        self.host_key_policy = host_key_policy
        self.connect_timeout = float(connect_timeout)
        self.command_timeout = float(command_timeout)
        self.allow_agent = allow_agent
        self.recorded_key: str | None = None   # fingerprint recorded by accept-new
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()

    @property
    def address(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    @property
    def key_name(self) -> str:
        """How known_hosts names this host (``addr`` or ``[addr]:port``)."""
        return knownhosts.host_key_name(self.hostname, self.port)

    # --- connection ---------------------------------------------------------------
    def _unknown_host_key(self, name: str, key: paramiko.PKey) -> None:
        fp = knownhosts.fingerprint(key)
        known = knownhosts.lookup(self.known_hosts, name)   # re-read: may have changed
        if known:
            if known.get(key.get_name()) == key:
                return
            raise self._changed_key(key, next(iter(known.values())))
        if self.host_key_policy == "accept-new":
            try:
                knownhosts.append(self.known_hosts, name, key)
            except HostKeyRejected:          # another process recorded a different key
                raise self._changed_key(key, next(iter(
                    knownhosts.lookup(self.known_hosts, name).values()))) from None
            except OSError as exc:
                raise HostError(f"{self.describe()}: cannot record the host key in "
                                f"{self.known_hosts}: {exc.strerror or exc}",
                                host=self.name) from None
            self.recorded_key = fp
            return
        kind = key.get_name().replace("ssh-", "").replace("ecdsa-sha2-nistp256", "ecdsa")
        raise HostKeyRejected(
            f"{self.describe()}: host key not trusted: the {key.get_name()} key offered, "
            f"{fp}, is not in {self.known_hosts}; check it on the host, then run "
            f"'opskit hosts trust {self.name}'",
            host=self.name, fingerprint=fp,
            hint=f"on the host's console: ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub; "
                 f"'opskit hosts trust {self.name} --fingerprint {fp}' records the key only if "
                 "it matches (ssh.host_key_policy: accept-new trusts new hosts on first use)")

    def _changed_key(self, offered: paramiko.PKey, recorded: paramiko.PKey) -> HostKeyRejected:
        fp = knownhosts.fingerprint(offered)
        return HostKeyRejected(
            f"{self.describe()}: HOST KEY CHANGED: {self.known_hosts} records "
            f"{knownhosts.fingerprint(recorded)} but the host offered {offered.get_name()} key "
            f"{fp}; someone may be intercepting the connection",
            host=self.name, fingerprint=fp, changed=True,
            hint=f"if the change is expected (host reinstalled), verify the new fingerprint, run "
                 f"ssh-keygen -R '{self.key_name}' -f {self.known_hosts}, then "
                 f"'opskit hosts trust {self.name}'")

    def _check_key_file(self) -> None:
        if not self.key_filename:
            return
        try:
            st = os.stat(self.key_filename)
        except OSError as exc:
            raise HostAuthFailed(f"{self.describe()}: key file {self.key_filename}: "
                                 f"{exc.strerror}", host=self.name) from None
        if st.st_mode & 0o077:
            raise HostAuthFailed(
                f"{self.describe()}: key file {self.key_filename} is readable by others "
                f"(mode {_stat.S_IMODE(st.st_mode):04o}); refusing to use it",
                host=self.name, hint=f"chmod 600 {self.key_filename}")

    def _connect(self) -> paramiko.SSHClient:
        self._check_key_file()
        client = paramiko.SSHClient()
        try:
            if os.path.exists(self.known_hosts):
                client.load_system_host_keys(self.known_hosts)
        except OSError as exc:
            raise HostError(f"{self.describe()}: cannot read {self.known_hosts}: {exc.strerror}",
                            host=self.name) from None
        client.set_missing_host_key_policy(_KnownHostsPolicy(self))
        timeout = self.connect_timeout
        try:
            client.connect(self.hostname, port=self.port, username=self.user,
                           key_filename=self.key_filename, password=None,
                           allow_agent=self.allow_agent, look_for_keys=self.key_filename is None,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           channel_timeout=timeout)
        except BaseException as exc:
            client.close()
            raise self._connect_error(exc) from None
        try:  # small request/response messages: do not wait for Nagle
            client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        return client

    def _connect_error(self, exc: BaseException) -> BaseException:
        where = self.describe()
        if isinstance(exc, HostError):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return self._changed_key(exc.key, exc.expected_key)
        if isinstance(exc, paramiko.PasswordRequiredException):
            return HostAuthFailed(f"{where}: key file {self.key_filename or '~/.ssh/id_*'} is "
                                  "encrypted; opskit never prompts", host=self.name,
                                  hint="load it into ssh-agent and set allow_agent: true")
        if isinstance(exc, paramiko.AuthenticationException):
            return HostAuthFailed(f"{where}: authentication as '{self.user}' failed "
                                  f"({exc or 'key refused'})", host=self.name,
                                  hint="check the key and the user's authorized_keys")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return HostUnreachable(f"{where}: timed out connecting after {self.connect_timeout:g}s",
                                   host=self.name)
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            reasons = {e.strerror or str(e) for e in exc.errors.values()}
            return HostUnreachable(f"{where}: cannot connect: {'; '.join(sorted(reasons))}",
                                   host=self.name)
        if isinstance(exc, socket.gaierror):
            return HostUnreachable(f"{where}: unknown host name: {exc.strerror}", host=self.name)
        if isinstance(exc, OSError):
            return HostUnreachable(f"{where}: cannot connect: {exc.strerror or exc}",
                                   host=self.name)
        text = str(exc).lower()
        if isinstance(exc, paramiko.SSHException) and ("authentication" in text
                                                        or "private key" in text):
            return HostAuthFailed(f"{where}: no usable key for '{self.user}': {exc}",
                                  host=self.name,
                                  hint="set 'key:' in the inventory (a private key file, mode "
                                       "0600) or allow_agent: true")
        if isinstance(exc, (paramiko.SSHException, EOFError)):
            return HostUnreachable(f"{where}: SSH handshake failed: "
                                   f"{exc or type(exc).__name__}", host=self.name)
        return exc

    def _client_(self) -> paramiko.SSHClient:
        with self._lock:
            client = self._client
            transport = client.get_transport() if client else None
            if client is None or transport is None or not transport.is_active():
                self.close()
                self._client = self._connect()
            return self._client

    def connect(self) -> "SSHHost":
        """Open the connection now (it otherwise opens on first use)."""
        self._client_()
        return self

    def _sftp_(self) -> paramiko.SFTPClient:
        with self._lock:
            client = self._client_()
            if self._sftp is None:
                try:
                    self._sftp = client.open_sftp()
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise HostError(f"{self.describe()}: SFTP unavailable: {exc}",
                                    host=self.name) from None
                self._sftp.get_channel().settimeout(self.command_timeout)
            return self._sftp

    def forward(self, remote_port: int):
        """127.0.0.1:``remote_port`` on this host through the SSH connection (tunnel.py)."""
        from .tunnel import LocalForward
        return LocalForward(self._client_().get_transport(), remote_port, what=self.name)

    def close(self) -> None:
        with self._lock:
            sftp, client = self._sftp, self._client
            self._sftp = self._client = None
        for thing in (sftp, client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass

    # --- commands -----------------------------------------------------------------
    def command_line(self, argv: list[str], env: dict | None = None) -> str:
        """The remote command string for ``argv`` (each element shell-quoted)."""
        words = [shlex.quote(os.fspath(a)) for a in argv]
        if env:
            for key in env:
                if not _ENV_NAME.match(str(key)):
                    raise ValueError(f"invalid environment variable name {key!r}")
            assigns = [shlex.quote(f"{k}={v}") for k, v in env.items()]
            words = ["env", "--", *assigns, *words]
        return " ".join(words)

    def run(self, argv, *, timeout=None, input=None, check=False, env=None) -> RunResult:
        argv = [os.fspath(a) for a in argv]
        if not argv:
            raise ValueError("run() needs a non-empty argv list")
        timeout = self.command_timeout if timeout is None else float(timeout)
        command = self.command_line(argv, env)
        started = time.monotonic()
        client = self._client_()
        try:
            chan = client.get_transport().open_session(timeout=self.connect_timeout)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostUnreachable(f"{self.describe()}: cannot start "
                                  f"'{format_argv(argv)}': {exc}", host=self.name) from None
        try:
            rc, out, err = self._pump(chan, input, started + timeout)
        except _Deadline as late:
            self._kill(chan)
            raise HostTimeout(f"{self.describe()}: command '{format_argv(argv)}' timed out "
                              f"after {timeout:g}s and was killed", host=self.name,
                              stdout=late.stdout, stderr=late.stderr) from None
        finally:
            chan.close()
        result = RunResult(self.name, argv, rc, out, err, time.monotonic() - started)
        return result.check() if check else result

    def run_batch(self, commands, *, timeout=None) -> list[RunResult]:
        return run_in_one_shell(self, commands, timeout)

    def run_fed(self, argv, blocks, *, timeout=None) -> RunResult:
        """Run ``argv`` with ``blocks`` (an iterable of bytes, read as they are
        sent: a stream of any size) on its stdin. An exception from ``blocks``
        kills the command and is raised as is."""
        argv = [os.fspath(a) for a in argv]
        timeout = self.command_timeout if timeout is None else float(timeout)
        started = time.monotonic()
        try:
            chan = self._client_().get_transport().open_session(timeout=self.connect_timeout)
            chan.exec_command(self.command_line(argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostUnreachable(f"{self.describe()}: cannot start "
                                  f"'{format_argv(argv)}': {exc}", host=self.name) from None
        try:
            rc, out, err = self._pump(chan, iter(blocks), started + timeout)
        except _Deadline as late:
            self._kill(chan)
            raise HostTimeout(f"{self.describe()}: command '{format_argv(argv)}' timed out "
                              f"after {timeout:g}s and was killed", host=self.name,
                              stdout=late.stdout, stderr=late.stderr) from None
        except BaseException:
            self._kill(chan)
            raise
        finally:
            chan.close()
        return RunResult(self.name, argv, rc, out, err, time.monotonic() - started)

    def _pump(self, chan: paramiko.Channel, data, deadline: float):
        """Feed stdin and drain stdout/stderr until the command is done or ``deadline``.

        Done means: exit status received and output at EOF. A background child
        that keeps stdout open would hold EOF back forever (plain ssh hangs
        there); after the exit status we wait at most EOF_GRACE seconds."""
        out, err = bytearray(), bytearray()
        feed = data if data is not None and not isinstance(data, (bytes, bytearray)) else None
        pending = memoryview(data) if data and feed is None else None
        if feed is not None:
            pending = _next_block(feed)
        if pending is None:
            chan.shutdown_write()
        # send() waits at most this long for window space (it wakes as soon as
        # the remote reads); recv() is only called when data is ready.
        chan.settimeout(0.05)
        fileno = chan.fileno()
        exited_at = None
        while True:
            if pending is not None:
                try:
                    pending = pending[chan.send(pending[:_CHUNK]):]
                except socket.timeout:
                    pass
                except OSError:          # the command closed its stdin / exited
                    pending, feed = memoryview(b""), None
                if not pending and feed is not None:
                    pending = _next_block(feed)
                if not pending:
                    chan.shutdown_write()
                    pending = None
            while chan.recv_ready():
                out += chan.recv(_CHUNK)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(_CHUNK)
            now = time.monotonic()
            if chan.exit_status_ready():
                exited_at = exited_at or now
                drained = not chan.recv_ready() and not chan.recv_stderr_ready()
                if drained and (chan.eof_received or chan.closed or now - exited_at > EOF_GRACE):
                    break
            elif chan.closed:
                break
            if now >= deadline:
                raise _Deadline(bytes(out), bytes(err))
            if pending is None:
                _wait_readable(fileno, min(deadline - now, 0.2))
        rc = chan.recv_exit_status() if chan.exit_status_ready() else -1
        return rc, bytes(out), bytes(err)

    @staticmethod
    def _kill(chan: paramiko.Channel) -> None:
        """Ask sshd to SIGKILL the command's process group (RFC 4254 6.9)."""
        try:
            msg = Message()
            msg.add_byte(cMSG_CHANNEL_REQUEST)
            msg.add_int(chan.remote_chanid)
            msg.add_string("signal")
            msg.add_boolean(False)
            msg.add_string("KILL")
            chan.transport._send_user_message(msg)
        except Exception:
            pass

    # --- files --------------------------------------------------------------------
    def _file_op(self, path: str, func):
        sftp = self._sftp_()
        try:
            return func(sftp)
        except OSError as exc:
            if isinstance(exc, socket.timeout):
                raise HostTimeout(f"{self.describe()}: {path}: SFTP timed out", host=self.name)
            raise file_error(self.name, path, exc, where=self.describe()) from None
        except (paramiko.SSHException, EOFError) as exc:
            self.close()
            raise HostError(f"{self.describe()}: {path}: SFTP failed: {exc}",
                            host=self.name) from None

    def read_file(self, path: str) -> bytes:
        def read(sftp):
            with sftp.open(path, "rb") as fh:
                fh.prefetch()
                return fh.read()
        return self._file_op(path, read)

    def write_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        directory, base = posixpath.split(path)
        tmp = posixpath.join(directory, f".{base}.opskit-tmp-{secrets.token_hex(6)}")

        def write(sftp):
            perms = mode
            if perms is None:
                try:
                    perms = _stat.S_IMODE(sftp.stat(path).st_mode)
                except FileNotFoundError:
                    perms = 0o600
            fh = sftp.open(tmp, "wbx")
            try:
                with fh:
                    fh.chmod(0o600)          # private while the data goes in
                    fh.write(data)
                    fh.flush()
                    fh.chmod(perms)
                sftp.posix_rename(tmp, path)
            except BaseException:
                try:
                    sftp.remove(tmp)
                except Exception:
                    pass
                raise
        self._file_op(path, write)

    def realpath(self, path: str) -> str:
        def resolve(sftp):
            real = sftp.normalize(path)
            sftp.stat(real)      # servers may resolve a missing last component: it must exist
            return real
        return self._file_op(path, resolve)

    def listdir(self, path: str) -> list[str]:
        return self._file_op(path, lambda sftp: sorted(sftp.listdir(path)))

    def stat(self, path: str, *, follow_symlinks: bool = True) -> FileStat:
        def do_stat(sftp):
            attrs = sftp.lstat(path)
            is_link = _stat.S_ISLNK(attrs.st_mode or 0)
            if follow_symlinks and is_link:
                attrs = sftp.stat(path)
            mode = attrs.st_mode or 0
            return FileStat(path=path, mode=mode, size=attrs.st_size or 0,
                            mtime=float(attrs.st_mtime or 0), uid=attrs.st_uid,
                            gid=attrs.st_gid, is_dir=_stat.S_ISDIR(mode), is_link=is_link)
        return self._file_op(path, do_stat)
