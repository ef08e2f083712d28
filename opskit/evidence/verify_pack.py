#!/usr/bin/env python3
"""Verify an opskit evidence pack without opskit: python3 verify.py [DIR] [--pubkey KEY]
Checks manifest.json's Ed25519 signature, every file's SHA-256 (none missing or added), the
audit chain up to the pack's own entry (holding the pack digest) and the ledger chain. KEY
(ssh-ed25519 line, base64, or a file) pins the signer. Exit 0 only when all holds."""
import base64, hashlib, json, os, sys  # noqa: E401 (one file, stdlib + cryptography)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
PACK_CONTEXT, LEDGER_CONTEXT = b"opskit-evidence-pack-v1\n", b"opskit-correction-ledger-v1\n"


def sha(data): return hashlib.sha256(data).hexdigest()  # noqa: E704
def canon(obj): return json.dumps(obj, sort_keys=True, separators=(",", ":"),  # noqa: E704
                                  ensure_ascii=False).encode()  # the audit log's canonical JSON


def sig_ok(key_b64, sig_b64, message, context):
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64))
        return key.verify(base64.b64decode(sig_b64), context + message) is None
    except Exception:
        return False


def check_files(root, manifest, problems):
    listed = {f["file"]: f["sha256"] for f in manifest["files"]}
    for name, digest in listed.items():
        path = os.path.join(root, name)
        if not os.path.isfile(path) or sha(open(path, "rb").read()) != digest:
            problems.append(f"{name}: " + ("CHANGED (its SHA-256 differs from manifest.json)"
                                           if os.path.isfile(path) else "MISSING"))
    for folder, _dirs, names in os.walk(root):
        for rel in (os.path.relpath(os.path.join(folder, n), root) for n in names):
            if rel not in listed and rel not in ("manifest.json", "manifest.sig"):
                problems.append(f"{rel}: ADDED (not listed in manifest.json)")


def check_audit(root, manifest, problems):
    anchor, prev, last = manifest["audit_anchor"], "0" * 64, None
    name = anchor["file"]
    try:
        for n, raw in enumerate(open(os.path.join(root, name), "rb"), 1):
            e, line = json.loads(raw), raw.rstrip(b"\n")
            body = {k: v for k, v in e.items() if k != "hash"}
            if (e["seq"], e["prev"], e["hash"], line) != (n, prev, sha(canon(body)), canon(e)):
                return problems.append(f"{name}: audit chain broken at line {n}")
            prev, last = sha(line), e
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return problems.append(f"{name}: unreadable audit log ({exc})")
    if not last or (last["seq"], last["hash"]) != (anchor["seq"], anchor["hash"]):
        return problems.append(f"{name}: does not end with the pack's entry seq {anchor['seq']}")
    done = sorted((f["file"], f["sha256"]) for f in manifest["files"] if f.get("anchored"))
    digest = sha("".join(f"{h}  {n}\n" for n, h in done).encode())
    if (last.get("details") or {}).get("pack_digest") != digest:
        problems.append(f"{name}: the pack's audit entry records a different pack digest")


def check_ledger(root, manifest, problems):
    name, prev = (manifest.get("ledger") or {}).get("file"), "0" * 64
    try:
        for i, e in enumerate(json.load(open(os.path.join(root, name)))["entries"] if name
                              else [], 1):
            if isinstance(e, str):                  # whole stored entry (--include-data)
                o, signed = json.loads(e), e[e.index('"signed":') + 9:-1]
                h, s, f, text_sha = o["hash"], o["sig"], o["signed"], sha(e.encode())
                ok = sha(signed.encode()) == h and json.loads(signed) == f
            else:                                   # redacted: content withheld
                h, s, f, text_sha, ok = e["hash"], e["sig"], e, e["text_sha256"], True
            if not ok or (f["seq"], f["prev"]) != (i, prev) or \
                    not sig_ok(f["key"], s, h.encode(), LEDGER_CONTEXT):
                return problems.append(f"{name}: ledger chain broken at seq {i}")
            prev = text_sha
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{name}: unreadable ledger ({exc})")


def verify(root, pubkey=None):
    """(problems found in the pack at ``root``, signer fingerprint)."""
    try:
        raw = open(os.path.join(root, "manifest.json"), "rb").read()
        seal, manifest = json.load(open(os.path.join(root, "manifest.sig"))), json.loads(raw)
    except (OSError, ValueError) as exc:  # names the file in exc
        return [f"manifest.json/manifest.sig: unreadable ({exc})"], None
    problems = [] if sig_ok(seal.get("key", ""), seal.get("sig", ""), raw, PACK_CONTEXT) else \
        ["manifest.sig: the signature does not verify manifest.json (edited or forged)"]
    parts = (open(pubkey).read() if os.path.isfile(pubkey) else pubkey).split() if pubkey else 0
    if parts and seal.get("key") != (base64.b64encode(base64.b64decode(parts[1])[19:]).decode()
                                     if parts[0] == "ssh-ed25519" else parts[0]):
        problems.append("manifest.sig: signed by another key than the one given (--pubkey)")
    [check(root, manifest, problems) for check in (check_files, check_audit, check_ledger)]
    return problems, seal.get("fingerprint")


if __name__ == "__main__":
    args = sys.argv[1:]
    i = args.index("--pubkey") if "--pubkey" in args else len(args)
    pin, args = (args[i + 1] if i + 1 < len(args) else None), args[:i] + args[i + 2:]
    found, signer = verify(args[0] if args else os.path.dirname(os.path.abspath(__file__)), pin)
    print("\n".join(f"FAIL {p}" for p in found) or f"OK: pack verified, signed by {signer}")
    sys.exit(1 if found else 0)
