"""Ed25519 signing keys for the correction ledger (R-DAT-2, R-DAT-3).

A private key is a file in OpenSSH format (``-----BEGIN OPENSSH PRIVATE
KEY-----``) as written by ``opskit correct keygen`` or ``ssh-keygen -t
ed25519``; PKCS#8 PEM works too. Public keys are written and declared as one
OpenSSH line (``ssh-ed25519 AAAA... comment``); a bare base64 of the 32 raw
bytes is accepted as well. Inside ledger entries a key is the base64 of its
32 raw bytes, and people see its fingerprint (``SHA256:...``, as ssh-keygen
prints it).

Signatures: Ed25519 over ``SIG_CONTEXT + hash`` where ``hash`` is the hex
SHA-256 of the entry's canonical JSON (see ledger.py). The context string
keeps a ledger signature from being replayed as any other kind of signature.
"""
from __future__ import annotations

import base64
import hashlib
import os
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from opskit.core.errors import OperationalError, UsageError

SIG_CONTEXT = b"opskit-correction-ledger-v1\n"
PASSPHRASE_ENV = "OPSKIT_CORRECTIONS_KEY_PASSPHRASE"
KEY_ENV = "OPSKIT_CORRECTIONS_KEY"

try:  # libsodium verifies about 30 % faster than OpenSSL; paramiko already depends on PyNaCl
    from nacl.bindings import crypto_sign_open as _sodium_open
    from nacl.exceptions import BadSignatureError as _SodiumBad
except Exception:  # pragma: no cover - PyNaCl missing: OpenSSL does the work
    _sodium_open = None
    _SodiumBad = Exception


class Signer:
    """A loaded private key: ``sign(message) -> bytes`` and its public key."""

    def __init__(self, key: Ed25519PrivateKey, path: str | None = None):
        self._key = key
        self.path = path
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_raw = raw
        self.public_b64 = base64.b64encode(raw).decode("ascii")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_raw)

    def sign(self, message: bytes, context: bytes = SIG_CONTEXT) -> str:
        """Base64 Ed25519 signature over ``context`` + message (the ledger's context by
        default; another use, e.g. the evidence pack, passes its own)."""
        return base64.b64encode(self._key.sign(context + message)).decode("ascii")


def generate(path: str, comment: str = "", overwrite: bool = False) -> tuple[Signer, str]:
    """Write a new private key to ``path`` (mode 0600, OpenSSH format, not
    encrypted: protect it as you protect an SSH key) and return the signer and
    its OpenSSH public key line."""
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(path) and not overwrite:
        raise UsageError(f"{path} already exists; refusing to overwrite a signing key",
                         hint="choose another --key FILE, or move the old key away first")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    signer = Signer(key, path)
    line = openssh_line(signer.public_raw, comment)
    # the public half beside it, as ssh-keygen writes it (not secret: 0644)
    with open(path + ".pub", "w", encoding="ascii") as fh:
        fh.write(line + "\n")
    os.chmod(path + ".pub", 0o644)
    return signer, line


def load_signer(path: str) -> Signer:
    """Load an Ed25519 private key (OpenSSH or PEM). An encrypted key needs
    $OPSKIT_CORRECTIONS_KEY_PASSPHRASE. Errors never include key material."""
    path = os.path.abspath(os.path.expanduser(path))
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise OperationalError(f"signing key {path} not found",
                               hint="create one with 'opskit correct keygen', or pass --key FILE "
                                    "(an ed25519 SSH key works too)") from None
    except OSError as exc:
        raise OperationalError(f"cannot read signing key {path}: {exc.strerror}") from None
    mode = os.stat(path).st_mode & 0o077
    if mode:
        raise OperationalError(f"signing key {path} is readable by others (mode "
                               f"{oct(os.stat(path).st_mode & 0o777)})", hint=f"chmod 600 {path}")
    passphrase = os.environ.get(PASSPHRASE_ENV)
    pw = passphrase.encode("utf-8") if passphrase else None
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=pw)
        else:
            key = serialization.load_pem_private_key(data, password=pw)
    except TypeError:
        raise OperationalError(f"signing key {path} is encrypted",
                               hint=f"set ${PASSPHRASE_ENV} to its passphrase") from None
    except (ValueError, Exception):
        raise OperationalError(f"{path} is not a readable Ed25519 private key (wrong passphrase, "
                               "or not a key file)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OperationalError(f"{path} is a {type(key).__name__.replace('PrivateKey', '')} key; "
                               "the correction ledger needs an Ed25519 key",
                               hint="ssh-keygen -t ed25519, or 'opskit correct keygen'")
    return Signer(key, path)


def signing_key_path(config, state_dir: str, explicit: str | None = None,
                     env=None) -> str:
    """Where the operator's signing key is: ``explicit`` (--key), $OPSKIT_CORRECTIONS_KEY,
    ``corrections.key_file`` (relative to the config file), else
    ``<state_dir>/corrections/id_ed25519``. One rule for every signing command and
    for the scheduler's readiness check."""
    from opskit.core.state import StateLayout
    env = os.environ if env is None else env
    if explicit:
        return explicit
    if env.get(KEY_ENV):
        return env[KEY_ENV]
    configured = config.get("corrections.key_file")
    if configured:
        return config.relative_path(configured)
    return StateLayout(state_dir).corrections_key


def openssh_line(raw: bytes, comment: str = "") -> str:
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + raw
    line = "ssh-ed25519 " + base64.b64encode(blob).decode("ascii")
    return f"{line} {comment}".rstrip()


def parse_public_key(text: str) -> bytes:
    """The 32 raw bytes of an Ed25519 public key given as an OpenSSH line
    (``ssh-ed25519 AAAA... comment``) or the base64 of the raw bytes.
    ValueError (with a reason, never key material) when it is not one."""
    text = (text or "").strip()
    parts = text.split()
    if not parts:
        raise ValueError("empty public key")
    if parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-"):
        if parts[0] != "ssh-ed25519":
            raise ValueError(f"{parts[0]} key: signatures need an ssh-ed25519 key")
        if len(parts) < 2:
            raise ValueError("ssh-ed25519 line without key data")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except ValueError:
            raise ValueError("ssh-ed25519 key data is not base64") from None
        if (len(blob) != 4 + 11 + 4 + 32 or blob[4:15] != b"ssh-ed25519"
                or struct.unpack(">I", blob[15:19])[0] != 32):
            raise ValueError("ssh-ed25519 key data is malformed")
        return blob[19:]
    try:
        raw = base64.b64decode(parts[0], validate=True)
    except ValueError:
        raise ValueError("not an 'ssh-ed25519 AAAA...' line or base64 of 32 bytes") from None
    if len(raw) != 32:
        raise ValueError("not an 'ssh-ed25519 AAAA...' line or base64 of 32 bytes")
    return raw


def fingerprint(raw: bytes) -> str:
    """``SHA256:...`` fingerprint, as ``ssh-keygen -l`` prints it."""
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + raw
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def verify_signature(public_raw: bytes, signature_b64: str, message: bytes,
                     context: bytes = SIG_CONTEXT) -> bool:
    """True when ``signature_b64`` is a valid signature by ``public_raw`` over
    ``context`` + ``message``. Never raises for bad input."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError):
        return False
    if len(sig) != 64 or len(public_raw) != 32:
        return False
    data = context + message
    if _sodium_open is not None:
        try:
            _sodium_open(sig + data, public_raw)
            return True
        except _SodiumBad:
            return False
        except Exception:
            return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(sig, data)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_batch(items: list[tuple[str, str, str]]) -> int | None:
    """Check (public key b64, signature b64, message str) triples in order;
    the index of the first invalid one, or None. Used by worker processes."""
    cache: dict[str, bytes] = {}
    for i, (pub, sig, msg) in enumerate(items):
        raw = cache.get(pub)
        if raw is None:
            try:
                raw = base64.b64decode(pub, validate=True)
            except (ValueError, TypeError):
                return i
            cache[pub] = raw
        if not verify_signature(raw, sig, msg.encode("utf-8")):
            return i
    return None


# --- signature blocks: who of a set of registered people signed a message ---------------------

class SignatureRejected(ValueError):
    """A signature block that does not authenticate anyone: ``reason`` is
    'unregistered' (the key is nobody's) or 'invalid' (it does not verify);
    ``fingerprint`` names the key, ``name`` its registered owner if any."""

    def __init__(self, reason: str, fingerprint_: str, name: str | None = None):
        super().__init__(f"{reason} signature by {fingerprint_}")
        self.reason, self.fingerprint, self.name = reason, fingerprint_, name


def sign_block(signer: Signer, message: bytes, context: bytes = SIG_CONTEXT) -> dict:
    """The block stored beside a signed record: the public key (base64 of the raw
    32 bytes), its fingerprint and the signature over ``context`` + ``message``.
    Approvals (incidents, access requests) all store this one shape."""
    return {"key": signer.public_b64, "fingerprint": signer.fingerprint,
            "sig": signer.sign(message, context)}


def block_key(block) -> bytes:
    """The raw public key a signature block names (b'' when it names none)."""
    try:
        return base64.b64decode((block or {}).get("key", ""), validate=True)
    except (ValueError, TypeError, AttributeError):
        return b""


def who_signed(block, message: bytes, keys: dict[str, bytes],
               context: bytes = SIG_CONTEXT) -> str:
    """The name in ``keys`` (name -> raw public key) whose key made the valid signature
    ``block`` over ``context`` + ``message``; SignatureRejected otherwise."""
    raw = block_key(block)
    fp = fingerprint(raw) if len(raw) == 32 else "a malformed key"
    names = [n for n, k in keys.items() if k == raw]
    if not names:
        raise SignatureRejected("unregistered", fp)
    sig = block.get("sig", "") if isinstance(block, dict) else ""
    if not verify_signature(raw, sig, message, context):
        raise SignatureRejected("invalid", fp, names[0])
    return names[0]
