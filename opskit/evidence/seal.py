"""Sealing the pack (issue #21 item 4): the audit log's own entry for the pack,
the manifest of every file with its SHA-256, the Ed25519 signature over the
manifest, and the verifier shipped inside the pack.

Order matters. (1) Every evidence file, the index and verify.py are written; their
digest (``pack_digest``: SHA-256 over the ``<sha256>  <file>`` lines, sorted) is
(2) appended to the audit log as the pack's own entry; (3) the log up to and
including that entry is copied in, so the pack holds the audit head at pack
time and the entry that names it; (4) manifest.json lists every file (the
anchored ones flagged) and (5) manifest.sig signs it. verify_pack.py checks the
same five steps backwards without opskit.
"""
from __future__ import annotations

import hashlib
import json
import os
from importlib import resources

from opskit.core.audit import AuditLog
from opskit.core.errors import IntegrityError
from opskit.core.signing import Signer, openssh_line

from .packfiles import Pack
from .records import AUDIT_FILE
from .verify_pack import PACK_CONTEXT

MANIFEST, SIGNATURE, VERIFIER = "manifest.json", "manifest.sig", "verify.py"


def pack_digest(files: list[dict]) -> str:
    """SHA-256 over the sorted ``<sha256>  <file>`` lines of ``files``."""
    lines = "".join(f"{f['sha256']}  {f['file']}\n"
                    for f in sorted(files, key=lambda f: f["file"]))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def ship_verifier(pack: Pack) -> dict:
    """Copy verify_pack.py into the pack as verify.py."""
    text = (resources.files("opskit.evidence") / "verify_pack.py").read_text("utf-8")
    return pack.write(VERIFIER, text, "opskit/evidence/verify_pack.py")


def anchor(pack: Pack, audit_log: str, *, operator: str, host: str, details: dict) -> dict:
    """Append the pack's own audit entry (with the digest of every file so far) and
    copy the log up to it into the pack. Returns {file, seq, hash, pack_digest}."""
    anchored = list(pack.files)
    digest = pack_digest(anchored)
    log = AuditLog(audit_log)
    entry = log.append(operator=operator, host=host, command="evidence seal",
                       arguments={"out": pack.dir}, result="ok", exit_code=0,
                       summary=f"evidence pack {pack.dir} sealed, digest {digest[:12]}",
                       details={"pack_digest": digest, "files": len(anchored), **details})
    dest = os.path.join(pack.dir, AUDIT_FILE)
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    _copy_through(log.path, dest, entry["hash"])
    pack.record(AUDIT_FILE, log.path)
    for f in pack.files:
        f["anchored"] = any(a["file"] == f["file"] for a in anchored)
    return {"file": AUDIT_FILE, "seq": entry["seq"], "hash": entry["hash"],
            "pack_digest": digest}


def _copy_through(src: str, dest: str, last_hash: str) -> None:
    """Copy the log's lines up to the one whose hash is ``last_hash`` (a writer may
    have appended more since)."""
    needle = f'"hash":"{last_hash}"'.encode()
    with open(src, "rb") as fh, open(dest, "wb") as out:
        for line in fh:
            out.write(line)
            if needle in line:
                return
    raise IntegrityError(f"audit log {src}: the pack's own entry vanished while copying")


def seal(pack: Pack, manifest: dict, signer: Signer) -> dict:
    """Write manifest.json (every file but itself and the signature) and manifest.sig."""
    manifest = dict(manifest, files=list(pack.files))
    data = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    path = os.path.join(pack.dir, MANIFEST)
    with open(path, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)
    sig = {"key": signer.public_b64, "fingerprint": signer.fingerprint,
           "openssh": openssh_line(signer.public_raw, "opskit evidence"),
           "sig": signer.sign(data, context=PACK_CONTEXT),
           "signs": MANIFEST, "context": PACK_CONTEXT.decode().strip()}
    with open(os.path.join(pack.dir, SIGNATURE), "w", encoding="utf-8") as fh:
        json.dump(sig, fh, indent=2)
        fh.write("\n")
    os.chmod(os.path.join(pack.dir, SIGNATURE), 0o600)
    return {"manifest_sha256": hashlib.sha256(data).hexdigest(), "signer": signer.fingerprint}
