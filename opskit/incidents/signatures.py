"""Authenticated approvals: an Ed25519 signature by a person whose public key the
config registers (business supervisors, high-risk reviewers).

The signed message is ``CONTEXT + canonical JSON of the payload`` (inside
``opskit.core.signing``'s own context), so an approval can never be replayed
as a correction-ledger signature (those sign a 64-hex hash) nor as another
kind of approval (the payload names what it approves).
"""
from __future__ import annotations

import base64

from opskit.core.audit import canonical
from opskit.core.errors import ConfigError
from opskit.core.signing import Signer, fingerprint, parse_public_key, verify_signature

from .clocks import refused

CONTEXT = b"opskit-incidents-approval-v1\n"


def message(payload: dict) -> bytes:
    return CONTEXT + canonical(payload)


def sign(signer: Signer, payload: dict) -> dict:
    """The signature block stored beside ``payload``: key, fingerprint, sig."""
    return {"key": signer.public_b64, "fingerprint": signer.fingerprint,
            "sig": signer.sign(message(payload))}


def registered_keys(people: dict, setting: str) -> dict[str, bytes]:
    """name -> raw public key of a config map (``incidents.supervisors``...); a key
    that is not an ed25519 public key is a config error naming the entry."""
    out = {}
    for name, line in (people or {}).items():
        if name.startswith("<") or not line:
            continue                          # the example config's template entry
        try:
            out[name] = parse_public_key(line)
        except ValueError as exc:
            raise ConfigError(f"{exc}", key=f"{setting}.{name}") from None
    return out


def signer_name(block: dict, payload: dict, keys: dict[str, bytes], rule: str,
                role: str) -> str:
    """The registered person whose key made the valid signature ``block`` over
    ``payload``; Refused (exit 2, naming ``rule``) for an unregistered key or a
    signature that does not verify."""
    try:
        raw = base64.b64decode(block.get("key", ""), validate=True)
    except ValueError:
        raw = b""
    names = [n for n, k in keys.items() if k == raw]
    if not names:
        fp = fingerprint(raw) if len(raw) == 32 else "malformed key"
        raise refused(f"key {fp} is not registered as a {role}: the approval is not "
                      "authenticated", rule=rule,
                      hint="the config must list this person's public key")
    if not verify_signature(raw, block.get("sig", ""), message(payload)):
        raise refused(f"the signature of {names[0]} does not verify", rule=rule)
    return names[0]
