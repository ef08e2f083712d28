"""Privacy of the pack (issue #21 item 5): ledger entries carry before/after
images of insured persons' rows and the statement's parameters. By default the
pack keeps, for each image, its row count, its SHA-256 (the ledger's own
``image_digest``) and the row keys (surrogate key columns only), and for each
parameter its SHA-256; ``--include-data`` copies the entries whole."""
from __future__ import annotations

import hashlib
import json

from opskit.corrections.targets import image_digest

IMAGES = ("before", "after", "rows_now")


def _key_columns(rows: list[dict]) -> list[str]:
    """Surrogate key columns ('id', '*_id'), never ones that may hold an identity
    number (card, certificate)."""
    cols = rows[0].keys() if rows and isinstance(rows[0], dict) else []
    return [c for c in cols if (c == "id" or c.endswith("_id"))
            and not any(w in c for w in ("card", "cert", "passport", "phone"))]


def redact_image(rows) -> dict:
    """An image as its row count, digest and row keys."""
    rows = rows if isinstance(rows, list) else []
    keys = _key_columns(rows)
    return {"rows": len(rows), "sha256": image_digest(rows),
            "row_keys": [{k: r.get(k) for k in keys} if keys else f"#{i + 1}"
                         for i, r in enumerate(rows)]}


def redact_body(body: dict) -> dict:
    """A ledger entry body without personal data."""
    out = dict(body)
    for name in IMAGES:
        if name in out:
            out[name] = redact_image(out[name])
    if isinstance(out.get("params"), dict):
        out["params"] = {k: "sha256:" + hashlib.sha256(str(v).encode("utf-8")).hexdigest()
                         for k, v in out["params"].items()}
    return out


def redact_entry(text: str) -> dict:
    """One stored ledger entry as the pack keeps it by default: the signed fields
    with a redacted body, plus ``hash``, ``sig`` and ``text_sha256`` (the SHA-256
    of the stored text, which the next entry's ``prev`` names)."""
    obj = json.loads(text)
    signed = dict(obj["signed"])
    signed["body"] = redact_body(signed.get("body") or {})
    return {**signed, "hash": obj["hash"], "sig": obj["sig"], "redacted": True,
            "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
