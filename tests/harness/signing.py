"""Signing keys for test people: one deterministic Ed25519 key per name, its private key
file (0600) for the CLI's --key, and a roster text with every person's signing_key
declared (R-ACC-3, R-DAT-2)."""
from __future__ import annotations

import hashlib
import os
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from opskit.core.signing import Signer, openssh_line


def person_key(name: str) -> Signer:
    """The test key of ``name`` (the same in every test run)."""
    seed = hashlib.sha256(b"opskit-test-signing-key:" + name.encode()).digest()
    return Signer(Ed25519PrivateKey.from_private_bytes(seed))


def public_line(name: str) -> str:
    """``ssh-ed25519 AAAA... name`` for the roster."""
    return openssh_line(person_key(name).public_raw, name)


def key_file(directory, name: str) -> str:
    """Write ``name``'s private key (OpenSSH format, 0600) under ``directory``; its path."""
    path = os.path.join(str(directory), f"{name}.key")
    if not os.path.exists(path):
        os.makedirs(str(directory), exist_ok=True)
        key = Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(b"opskit-test-signing-key:" + name.encode()).digest())
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    return path


_FLOW = re.compile(r"^(  )([A-Za-z0-9_.-]+):(\s*)\{(.*)\}(\s*(#.*)?)$")
_BLOCK = re.compile(r"^  ([A-Za-z0-9_.-]+):\s*(#.*)?$")


def with_signing_keys(roster: str, skip: tuple = ()) -> str:
    """``roster`` (flow ``{post: x}`` or block style people) with a ``signing_key`` for
    every person under ``people:`` except those in ``skip``."""
    out, in_people = [], False
    for line in roster.splitlines():
        if line and not line.startswith(" ") and not line.startswith("#"):
            in_people = line.rstrip().startswith("people:")
        m, b = _FLOW.match(line), _BLOCK.match(line)
        if in_people and m and m.group(2) not in skip:
            body = m.group(4).strip()
            sep = ", " if body else ""
            out.append(f"{m.group(1)}{m.group(2)}:{m.group(3)}{{{body}{sep}signing_key: "
                       f"\"{public_line(m.group(2))}\"}}{m.group(5)}")
            continue
        out.append(line)
        if in_people and b and b.group(1) not in skip:
            out.append(f"    signing_key: \"{public_line(b.group(1))}\"")
    return "\n".join(out) + "\n"
