"""Explicit host-key trust behind ``opskit hosts trust``: fetch, show, record.

The operator compares the fingerprint with one obtained out of band (the
host's console: ``ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub``) before
it is recorded. A key that differs from a recorded one is never replaced.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import paramiko

from opskit.core.errors import UsageError

from . import knownhosts
from .inventory import HostSpec, SSHSettings


@dataclass
class KeyScan:
    """The key a host offers and how it compares with known_hosts.

    state  'trusted' (already recorded), 'unknown' (nothing recorded for the
           host) or 'changed' (a different key is recorded: refuse)"""

    host: str
    key_name: str                 # how known_hosts names the host
    known_hosts: str
    key_type: str
    fingerprint: str
    state: str
    recorded: list[str] = field(default_factory=list)   # fingerprints already recorded
    key: paramiko.PKey | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"host": self.host, "key_name": self.key_name, "known_hosts": self.known_hosts,
                "key_type": self.key_type, "fingerprint": self.fingerprint, "state": self.state,
                "recorded": self.recorded}


def known_hosts_file(spec: HostSpec, settings: SSHSettings) -> str:
    return os.path.expanduser(spec.known_hosts or settings.known_hosts or "~/.ssh/known_hosts")


def scan_host_key(spec: HostSpec, settings: SSHSettings | None = None) -> KeyScan:
    """Fetch the key ``spec`` offers (no login) and classify it against known_hosts."""
    settings = settings or SSHSettings()
    if spec.is_local:
        raise UsageError(f"host '{spec.name}' is local: it has no SSH host key to trust")
    port = spec.port or 22
    key = knownhosts.fetch_host_key(spec.address, port,
                                    spec.connect_timeout or settings.connect_timeout)
    path = known_hosts_file(spec, settings)
    name = knownhosts.host_key_name(spec.address, port)
    recorded = knownhosts.lookup(path, name)
    if not recorded:
        state = "unknown"
    elif recorded.get(key.get_name()) == key:
        state = "trusted"
    else:
        state = "changed"
    return KeyScan(spec.name, name, path, key.get_name(), knownhosts.fingerprint(key), state,
                   [knownhosts.fingerprint(k) for k in recorded.values()], key)


def record_host_key(scan: KeyScan) -> bool:
    """Append the scanned key to known_hosts; False when it was already there.
    Raises HostKeyRejected when a different key is recorded."""
    return knownhosts.append(scan.known_hosts, scan.key_name, scan.key)
