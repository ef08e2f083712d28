"""Verify from outside that sshd refuses the person's keys (R-ACC-6).

opskit never holds a person's private key, but SSH lets a client ask whether
a public key *would* be accepted before signing anything (RFC 4252 7: the
server answers PK_OK or failure). The real OpenSSH client does exactly that
when given only a public key file: ``ssh -v -i KEY.pub`` logs "Server
accepts key" and then gives up for want of the private key. So for every
(account, key) pair -- the person's own login and root, plus every account
where one of their keys was found -- one ``ssh`` run tells whether that login
is still open.

Where: an SSH host's own address and port, or the inventory var
``ssh_login_probe: HOST:PORT`` (a local host, or an sshd elsewhere); the
host keys are checked against ``ssh_login_probe_known_hosts`` or the ssh
settings' known_hosts. Rooted targets (an image, ``accounts_root``) are not
what the sshd serves, so they are not probed.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

from opskit.hosts.local import LocalHost

ACCEPTS = "Server accepts key:"
PROBE_TIMEOUT = 15


@dataclass
class Probe:
    account: str
    key: str                 # fingerprint
    accepted: bool | None    # None: the probe itself failed
    detail: str = ""

    def describe(self) -> str:
        state = {True: "ACCEPTED", False: "refused", None: "probe failed"}[self.accepted]
        return f"ssh {self.account} with {self.key}: {state}" + \
            (f" ({self.detail})" if self.detail else "")


def probe_keys(address: str, port: int, accounts: list[str], keys: dict[str, str],
               known_hosts: str | None) -> list[Probe]:
    """One probe per (account, key); ``keys`` maps fingerprint -> public key line."""
    out = []
    with tempfile.TemporaryDirectory(prefix="opskit-probe-") as tmp:
        files = {}
        for i, (fp, line) in enumerate(sorted(keys.items())):
            path = os.path.join(tmp, f"k{i}.pub")
            with open(path, "w") as fh:
                fh.write(line.strip() + "\n")
            files[fp] = path
        host = LocalHost()
        for account in accounts:
            for fp, path in files.items():
                out.append(_probe(host, address, port, account, fp, path, known_hosts))
    return out


def _probe(host: LocalHost, address: str, port: int, account: str, fp: str, path: str,
           known_hosts: str | None) -> Probe:
    checking = (["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
                if known_hosts else ["-o", "StrictHostKeyChecking=accept-new",
                                     "-o", "UserKnownHostsFile=/dev/null"])
    argv = ["ssh", "-v", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none", "-o", "PreferredAuthentications=publickey",
            "-o", "ConnectTimeout=10", *checking, "-i", path, "-p", str(port),
            "-l", account, address, "true"]
    try:
        result = host.run(argv, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.SubprocessError, Exception) as exc:   # noqa: BLE001
        return Probe(account, fp, None, str(exc).splitlines()[0][:200])
    err = result.stderr.decode("utf-8", "replace")
    if ACCEPTS in err:
        return Probe(account, fp, True)
    if "Permission denied" in err or "Authentications that can continue" in err:
        return Probe(account, fp, False)
    last = [x for x in err.splitlines() if x and not x.startswith("debug")]
    return Probe(account, fp, None, (last[-1] if last else f"ssh exit {result.rc}")[:200])
