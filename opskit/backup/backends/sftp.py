"""A repository (or an off-site copy) on an SSH server: ``sftp://user@host:port/path``.

The path after the host is absolute (``sftp://backup@dr1:2222/srv/opskit``).
Authentication is by key (``key_file``; else the usual ~/.ssh keys and the
agent). The server's host key is verified against ``known_hosts`` exactly as
``opskit hosts`` does (opskit.hosts.knownhosts): an unknown key is rejected
unless ``host_key_policy`` is ``accept-new``; a changed key is always
rejected.

``put`` writes ``tmp-*`` beside the target, then ``posix_rename`` over it,
so readers never see a partial object; readers ignore ``tmp-*``.

Fork safety: one SSH transport per process (keyed on ``os.getpid()``), made
lazily, and one SFTP channel per thread on it, so parallel uploads do not
serialise on a single channel and a forked child never touches its
parent's connection.
"""
from __future__ import annotations

import errno
import os
import posixpath
import socket
import stat as statmod
import threading
import urllib.parse
from typing import Iterator

import paramiko

from opskit.core.errors import ConfigError
from opskit.hosts import knownhosts

from .base import Backend, BackendError, ObjectNotFound


class HostKeyError(BackendError):
    """The server's host key is unknown or has changed."""


def parse_sftp_url(url: str) -> tuple[str | None, str, int, str]:
    """``sftp://user@host:port/path`` -> (user, host, port, "/path")."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "sftp" or not parts.hostname:
        raise ConfigError(f"{url!r}: expected sftp://[USER@]HOST[:PORT]/PATH")
    try:
        port = parts.port or 22
    except ValueError:
        raise ConfigError(f"{url!r}: the port is not a number") from None
    path = urllib.parse.unquote(parts.path) or "/"
    if path == "/":
        raise ConfigError(f"{url!r}: give a directory path after the host")
    return (urllib.parse.unquote(parts.username) if parts.username else None,
            parts.hostname, port, path.rstrip("/"))


class _Policy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only when known_hosts has no key for the host."""

    def __init__(self, backend: "SFTPBackend"):
        self.backend = backend

    def missing_host_key(self, client, hostname, key):
        b = self.backend
        fp = knownhosts.fingerprint(key)
        if b.host_key_policy == "accept-new":
            try:
                knownhosts.append(b.known_hosts, hostname, key)
                return
            except Exception as exc:  # noqa: BLE001 - a changed key or unwritable file
                raise HostKeyError(f"{b.location}: host key {fp} not accepted: {exc}") from None
        raise HostKeyError(
            f"{b.location}: unknown host key {key.get_name()} {fp} for {hostname} "
            f"(not in {b.known_hosts}); verify it, then run: opskit hosts trust {b.host} "
            f"or add it to {b.known_hosts}")


class SFTPBackend(Backend):
    def __init__(self, url: str, settings: dict | None = None):
        settings = dict(settings or {})
        self.url = url
        self.user, self.host, self.port, self.root = parse_sftp_url(url)
        self.site = settings.get("name")
        self.location = f"site '{self.site}' ({url})" if self.site else url
        key_file = settings.get("key_file") or os.environ.get("OPSKIT_SFTP_KEY_FILE")
        self.key_file = os.path.expanduser(key_file) if key_file else None
        known = (settings.get("known_hosts") or os.environ.get("OPSKIT_SFTP_KNOWN_HOSTS")
                 or "~/.ssh/known_hosts")
        self.known_hosts = os.path.expanduser(known)
        self.host_key_policy = settings.get("host_key_policy") or "reject"
        self.timeout = float(settings.get("connect_timeout") or 10)
        if self.key_file and not os.path.exists(self.key_file):
            raise ConfigError(f"{self.location}: key_file {self.key_file} does not exist")
        self._pid = None
        self._client: paramiko.SSHClient | None = None
        self._conn_lock = threading.Lock()
        self._local = threading.local()
        self._all_sftp: list = []
        self._made_dirs: set[str] = set()

    # --- connections ----------------------------------------------------------------------
    def _connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        try:
            if os.path.exists(self.known_hosts):
                client.load_host_keys(self.known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            raise BackendError(f"{self.location}: cannot read {self.known_hosts}: {exc}") from None
        client.set_missing_host_key_policy(_Policy(self))
        where = f"{self.host}:{self.port}"
        try:
            client.connect(self.host, self.port, username=self.user, key_filename=self.key_file,
                           look_for_keys=self.key_file is None, allow_agent=self.key_file is None,
                           timeout=self.timeout, banner_timeout=self.timeout,
                           auth_timeout=self.timeout)
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"{self.location}: HOST KEY CHANGED for {where}: {self.known_hosts} records "
                f"{knownhosts.fingerprint(exc.expected_key)} but the server offered "
                f"{knownhosts.fingerprint(exc.key)}; refusing to connect") from None
        except paramiko.AuthenticationException:
            client.close()
            raise BackendError(f"{self.location}: SSH authentication failed for user "
                               f"{self.user or '(default)'} at {where}"
                               + (f" with key {self.key_file}" if self.key_file else "")) from None
        except (socket.timeout, TimeoutError):
            client.close()
            raise BackendError(f"{self.location}: cannot connect to {where}: timed out") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise BackendError(f"{self.location}: cannot connect to {where}: {text}") from None
        return client

    def _sftp(self) -> paramiko.SFTPClient:
        pid = os.getpid()
        if self._pid != pid:
            with self._conn_lock:
                if self._pid != pid:
                    # never use a connection inherited across fork()
                    self._client = None
                    self._all_sftp = []
                    self._local = threading.local()
                    self._pid = pid
        sftp = getattr(self._local, "sftp", None)
        if sftp is not None:
            return sftp
        with self._conn_lock:
            if self._client is None or not self._client.get_transport() \
                    or not self._client.get_transport().is_active():
                self._client = self._connect()
            try:
                sftp = self._client.open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise BackendError(f"{self.location}: cannot open an SFTP session: "
                                   f"{exc or type(exc).__name__}") from None
            self._all_sftp.append(sftp)
        self._local.sftp = sftp
        return sftp

    def _drop(self) -> None:
        """Forget this thread's channel after a failure (the next call reconnects)."""
        self._local.sftp = None

    def _path(self, name: str) -> str:
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise BackendError(f"{self.location}: refusing object name {name!r}")
        return posixpath.join(self.root, *parts)

    def _fail(self, exc: BaseException, name: str | None) -> BackendError:
        what = self.location + (f": {name}" if name else "")
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
            return ObjectNotFound(f"{what}: object not found")
        if isinstance(exc, OSError) and exc.errno == errno.EACCES:
            return BackendError(f"{what}: permission denied")
        self._drop()
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return BackendError(f"{what}: {text}")

    # --- the interface --------------------------------------------------------------------
    def _makedirs(self, sftp, folder: str) -> None:
        if folder in self._made_dirs:
            return
        missing = []
        cur = folder
        while cur not in ("", "/"):
            try:
                sftp.stat(cur)
                break
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                missing.append(cur)
                cur = posixpath.dirname(cur)
        for d in reversed(missing):
            try:
                sftp.mkdir(d, 0o700)
            except OSError:
                sftp.stat(d)         # made meanwhile by another thread: fine
        self._made_dirs.add(folder)

    def put(self, name: str, data: bytes | memoryview) -> None:
        path = self._path(name)
        folder = posixpath.dirname(path)
        tmp = posixpath.join(folder, f"tmp-{os.getpid()}-{threading.get_ident()}-"
                                     f"{posixpath.basename(path)}")
        try:
            sftp = self._sftp()
            self._makedirs(sftp, folder)
            with sftp.open(tmp, "wb") as fh:
                fh.set_pipelined(True)
                fh.write(bytes(data))
            try:
                sftp.posix_rename(tmp, path)
            except OSError:
                sftp.rename(tmp, path)     # servers without the extension; target is new
        except (OSError, paramiko.SSHException, EOFError) as exc:
            try:
                self._sftp().remove(tmp)
            except Exception:  # noqa: BLE001 - best effort; readers ignore tmp-*
                pass
            raise self._fail(exc, name) from None

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        try:
            with self._sftp().open(path, "rb") as fh:
                if length is None:
                    fh.prefetch()
                if offset:
                    fh.seek(offset)
                if length is None:
                    return fh.read()
                out = bytearray()
                while len(out) < length:
                    block = fh.read(length - len(out))
                    if not block:
                        break
                    out += block
                return bytes(out)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._fail(exc, name) from None

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self._path(prefix.rstrip("/"))
        try:
            sftp = self._sftp()
            stack = [base]
            found = []
            while stack:
                folder = stack.pop()
                try:
                    entries = sftp.listdir_attr(folder)
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        continue
                    raise
                for entry in entries:
                    full = posixpath.join(folder, entry.filename)
                    if statmod.S_ISDIR(entry.st_mode or 0):
                        stack.append(full)
                    elif not entry.filename.startswith("tmp-"):
                        found.append((full[len(self.root) + 1:], int(entry.st_size or 0)))
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._fail(exc, prefix) from None
        yield from sorted(found)

    def delete(self, name: str) -> None:
        try:
            self._sftp().remove(self._path(name))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise self._fail(exc, name) from None
        except (paramiko.SSHException, EOFError) as exc:
            raise self._fail(exc, name) from None

    def exists(self, name: str) -> bool:
        try:
            self.size(name)
            return True
        except ObjectNotFound:
            return False

    def size(self, name: str) -> int:
        try:
            return int(self._sftp().stat(self._path(name)).st_size or 0)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._fail(exc, name) from None

    def close(self) -> None:
        if self._pid != os.getpid():
            return
        with self._conn_lock:
            for sftp in self._all_sftp:
                try:
                    sftp.close()
                except Exception:  # noqa: BLE001
                    pass
            self._all_sftp = []
            self._local = threading.local()
            if self._client is not None:
                self._client.close()
                self._client = None
