"""known_hosts files: look up, fingerprint, record and fetch SSH host keys.

Entries use OpenSSH's format, so ``ssh`` and opskit share one file: the
host is written as ``address`` on port 22 and ``[address]:port`` otherwise.
Hashed entries (``HashKnownHosts yes``) are understood when reading; opskit
writes plain ones. Recording a key never replaces an existing entry: a
changed key is the operator's call (``ssh-keygen -R``), never ours.
"""
from __future__ import annotations

import fcntl
import os
import socket
import threading

import paramiko

from .base import HostError, HostKeyRejected, HostUnreachable

_lock = threading.Lock()   # appends from fan-out threads in this process


def host_key_name(address: str, port: int = 22) -> str:
    """The name a known_hosts line uses: ``addr`` for port 22, else ``[addr]:port``."""
    return address if int(port) == 22 else f"[{address}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key."""
    return key.fingerprint


def load(path: str) -> paramiko.HostKeys:
    """All keys in ``path``; an empty set when the file does not exist."""
    keys = paramiko.HostKeys()
    try:
        keys.load(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise HostError(f"cannot read known_hosts file {path}: {exc.strerror}") from None
    return keys


def lookup(path: str, name: str) -> dict[str, paramiko.PKey]:
    """Key type -> key recorded for ``name`` (from ``host_key_name``); {} when none."""
    found = load(path).lookup(name)
    return dict(found) if found else {}


def key_line(name: str, key: paramiko.PKey) -> str:
    """One known_hosts line (with newline) recording ``key`` for ``name``."""
    return f"{name} {key.get_name()} {key.get_base64()}\n"


def append(path: str, name: str, key: paramiko.PKey) -> bool:
    """Record ``key`` for ``name`` in ``path``; return False if it was already there.

    The file (and its directory) is created private (0600 / 0700). A
    *different* key already recorded for ``name`` raises HostKeyRejected: a
    changed key is never overwritten. Safe against concurrent appends.
    """
    path = os.path.expanduser(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with _lock:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            known = lookup(path, name)         # re-read under the lock
            if known:
                if known.get(key.get_name()) == key:
                    return False
                old = ", ".join(fingerprint(k) for k in known.values())
                raise HostKeyRejected(
                    f"{name}: a different host key is already recorded in {path} ({old}); "
                    f"offered {fingerprint(key)}. Not replacing it.",
                    fingerprint=fingerprint(key), changed=True)
            fh.seek(0, os.SEEK_END)
            prefix = b""
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    prefix = b"\n"
            fh.write(prefix + key_line(name, key).encode())
            fh.flush()
            os.fsync(fh.fileno())
    return True


def fetch_host_key(address: str, port: int = 22, timeout: float = 10.0) -> paramiko.PKey:
    """The host key ``address:port`` offers, without authenticating.

    Used by ``opskit hosts trust`` to show the fingerprint before recording it."""
    where = f"{address}:{port}"
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise HostUnreachable(f"{where}: cannot connect: {exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise HostUnreachable(f"{where}: no SSH handshake: {exc or type(exc).__name__}") from None
    finally:
        transport.close()
