"""OpenSSH public key lines checked as ``ssh-keygen -lf`` reads them (#22 item 4).

``check_public_key(line)`` returns None for a key line sshd would use
(``TYPE BASE64 [comment]``) and otherwise a one-line reason, never key
material: an unknown type, base64 that does not decode, a blob whose inner
type differs from the line's, a field of the wrong length for the type
(ed25519 32 bytes; ECDSA an uncompressed point on the named curve; RSA a
modulus of at least 1024 bits), trailing bytes, or a private key pasted
where the public one belongs.
"""
from __future__ import annotations

import base64
import binascii
import struct

ED25519 = "ssh-ed25519"
RSA = "ssh-rsa"
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
ECDSA_POINT = {"nistp256": 65, "nistp384": 97, "nistp521": 133}   # 0x04 || X || Y
KEY_TYPES = (ED25519, RSA, "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             SK_ED25519, SK_ECDSA)
RSA_MIN_BITS = 1024                      # OpenSSH refuses smaller moduli


class _Blob:
    """Reads SSH wire-format strings from a key blob."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def string(self) -> bytes:
        if self.pos + 4 > len(self.data):
            raise ValueError("the key data ends early")
        (n,) = struct.unpack(">I", self.data[self.pos:self.pos + 4])
        start = self.pos + 4
        if start + n > len(self.data):
            raise ValueError("the key data ends early")
        self.pos = start + n
        return self.data[start:self.pos]

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} unexpected byte(s) after the key")


def _ecdsa(blob: _Blob, curve_of_type: str) -> None:
    curve = blob.string().decode("ascii", "replace")
    if curve != curve_of_type:
        raise ValueError(f"curve {curve!r} does not match the key type's {curve_of_type}")
    point = blob.string()
    if len(point) != ECDSA_POINT[curve] or point[:1] != b"\x04":
        raise ValueError(f"the {curve} point is {len(point)} bytes, expected an uncompressed "
                         f"point of {ECDSA_POINT[curve]}")


def _body(kind: str, blob: _Blob) -> None:
    """Check the fields after the inner type name."""
    if kind in (ED25519, SK_ED25519):
        key = blob.string()
        if len(key) != 32:
            raise ValueError(f"an ed25519 key is 32 bytes, this one {len(key)}")
    elif kind == RSA:
        e, n = blob.string(), blob.string()
        bits = int.from_bytes(n, "big").bit_length()
        if not e or int.from_bytes(e, "big") % 2 == 0:
            raise ValueError("the RSA public exponent is not a positive odd number")
        if bits < RSA_MIN_BITS:
            raise ValueError(f"an RSA modulus of {bits} bits (at least {RSA_MIN_BITS})")
    elif kind == SK_ECDSA:
        _ecdsa(blob, "nistp256")
    else:
        _ecdsa(blob, kind.rsplit("-", 1)[1])
    if kind in (SK_ED25519, SK_ECDSA) and not blob.string().startswith(b"ssh:"):
        raise ValueError("a security-key application must start with 'ssh:'")
    blob.done()


def check_public_key(line) -> str | None:
    """None when ``line`` is a usable OpenSSH public key line, else why not (one line)."""
    if not isinstance(line, str):
        return "not a text line"
    text = line.strip()
    if "PRIVATE KEY" in text or text.startswith("-----BEGIN") or text.startswith("PuTTY-User"):
        return "this is a private key: declare only the public key (the .pub line)"
    if "\n" in text or "\r" in text:
        return "a key is one line"
    parts = text.split()
    if len(parts) < 2:
        return "expected '<type> <base64> [comment]'"
    kind, data = parts[0], parts[1]
    if kind not in KEY_TYPES:
        return f"unknown key type {kind!r}; expected one of {', '.join(KEY_TYPES)}"
    try:                                 # unpadded base64 is read, then judged by its bytes
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        return "the key data is not valid base64"
    blob = _Blob(raw)
    try:
        inner = blob.string().decode("ascii", "replace")
        if inner != kind:
            return f"the key data says {inner!r}, the line says {kind}"
        _body(kind, blob)
    except ValueError as exc:
        return f"malformed {kind} key ({len(raw)} bytes): {exc}"
    return None
