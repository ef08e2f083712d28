"""Signed audit-log checkpoints ("anchors") kept off the machine (R-AUD-3, R-DAT-1).

A checkpoint in ``checkpoints.jsonl`` sits beside the log, so whoever rewrites
the log rewrites it too. An anchor is the same checkpoint record (seq, head
hash, time, log, host) signed with the operator's Ed25519 key and written as
one JSON file to a directory that is meant to leave the machine (a mount, a
synced folder, the evidence pack)::

    {"format": "opskit-audit-anchor/1",
     "checkpoint": {"hash": "...", "host": "db1", "log": "/var/lib/opskit/audit/audit.log",
                    "seq": 1042, "time": "2026-11-01T06:20:00.000Z"},
     "signature": {"key": "<base64 raw public key>", "fingerprint": "SHA256:...",
                   "sig": "<base64 Ed25519 over CONTEXT + canonical(checkpoint)>"}}

Checking a log against a directory of anchors: every anchor file must parse
and carry a valid signature; those of this host's log must be signed by a
trusted key; then the log is verified against them (a rewritten entry up to an
anchor's seq, or a tail cut below it, is a finding naming the anchor).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .atomicfile import write_atomic
from .audit import canonical, checkpoint_problem
from .errors import OperationalError
from .signing import Signer, block_key, fingerprint, sign_block, verify_signature

FORMAT = "opskit-audit-anchor/1"
CONTEXT = b"opskit-audit-checkpoint-v1\n"   # a ledger or pack signature never passes as this
CHECKPOINT_FIELDS = ("seq", "hash", "time", "log", "host")


def sign_checkpoint(cp: dict, signer: Signer) -> dict:
    """The anchor for checkpoint ``cp``: its fields, signed."""
    body = {k: cp[k] for k in CHECKPOINT_FIELDS if k in cp}
    return {"format": FORMAT, "checkpoint": body,
            "signature": sign_block(signer, canonical(body), CONTEXT)}


def anchor_name(anchor: dict) -> str:
    """``audit-<host>-<seq>-<time>.json``: sorts by seq per host, never collides in a day."""
    cp = anchor["checkpoint"]
    stamp = "".join(c for c in str(cp.get("time", "")) if c.isdigit())[:17]
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(cp.get("host", "")))
    return f"audit-{host}-{cp['seq']:010d}-{stamp}.json"


def write_anchor(directory: str, anchor: dict) -> str:
    """Write ``anchor`` into ``directory`` (created 0700; the file 0600); its path."""
    path = os.path.join(directory, anchor_name(anchor))
    data = (json.dumps(anchor, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        write_atomic(path, data, 0o600, sync_dir=True)
    except OSError as exc:
        raise OperationalError(f"cannot write signed checkpoint {path}: {exc.strerror}",
                               hint="the checkpoint is recorded beside the log all the same") \
            from None
    return path


def anchor_problem(anchor) -> str | None:
    """Why ``anchor`` is not a well-formed anchor (signature not checked), or None."""
    if not isinstance(anchor, dict) or anchor.get("format") != FORMAT:
        return f"not a signed audit checkpoint (format {FORMAT!r} expected)"
    cp = anchor.get("checkpoint")
    issue = checkpoint_problem(cp)
    if issue:
        return issue
    if not isinstance(anchor.get("signature"), dict):
        return "no signature"
    return None


def signature_ok(anchor: dict) -> bool:
    """True when the anchor's signature verifies under the key it names."""
    sig = anchor["signature"]
    return verify_signature(block_key(sig), str(sig.get("sig", "")),
                            canonical(anchor["checkpoint"]), CONTEXT)


@dataclass
class AnchorSet:
    """What a directory of anchors says about one log.

    checkpoints  checkpoints of this log whose anchors verify under a trusted key,
                 each with ``_source`` naming its file and ``_file`` its path
    problems     one line per anchor that is itself a finding (unreadable, bad
                 signature, unknown key)
    others       anchors of other hosts or logs (valid signatures), not used
    """

    checkpoints: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    others: int = 0

    def newest(self, count: int) -> list[dict]:
        """The ``count`` checkpoints with the highest seq, newest first."""
        return sorted(self.checkpoints, key=lambda cp: (cp["seq"], cp.get("time", "")),
                      reverse=True)[:count]


def anchor_files(directory: str) -> list[str]:
    """Sorted paths of ``*.json`` files in ``directory`` (none when it is missing)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise OperationalError(f"cannot read anchor directory {directory}: {exc.strerror}") \
            from None
    return [os.path.join(directory, n) for n in sorted(names)
            if n.endswith(".json") and not n.startswith(".")]


def collect(directories: list[str], log_path: str, host: str,
            trusted: dict[bytes, str], required: list[str] | tuple[str, ...] = ()) -> AnchorSet:
    """Read every anchor in ``directories`` and judge it for the log at ``log_path`` on
    ``host``. ``trusted`` maps raw public keys to a name (who may sign anchors).

    Each directory in ``required`` (the configured off-site ``audit.anchor_dir``) must
    exist and hold at least one trusted anchor of this log, else that is a problem: root
    on this machine cannot alter exported anchors, but can hide them all without
    touching one (move or unmount the directory, rename the host), and "no signed
    checkpoint" would then read as "nothing was ever anchored" (R-AUD-3, R-DAT-1)."""
    found = AnchorSet()
    for directory in required:
        if not os.path.isdir(directory):
            found.problems.append(f"anchor directory {directory} is missing (not mounted?): "
                                  "the signed checkpoints kept off this machine cannot be "
                                  "checked")
    mine = os.path.basename(log_path)
    seen: set[str] = set()
    for path in (p for d in directories for p in anchor_files(d)):
        if os.path.basename(path) in seen:      # the same anchor in two places
            continue
        seen.add(os.path.basename(path))
        anchor, issue = _read(path)
        if issue is None and not signature_ok(anchor):
            issue = "bad signature: the checkpoint was altered or not signed by the key it names"
        if issue:
            found.problems.append(f"signed checkpoint {path}: {issue}")
            continue
        cp = anchor["checkpoint"]
        if cp.get("host") != host or os.path.basename(str(cp.get("log", mine))) != mine:
            found.others += 1
            continue
        raw = block_key(anchor["signature"])
        if raw not in trusted:
            found.problems.append(f"signed checkpoint {path}: signed by unknown key "
                                  f"{fingerprint(raw)} (not the operator key nor in "
                                  "audit.anchor_keys)")
            continue
        found.checkpoints.append(dict(cp, _source=f"signed checkpoint {path}", _file=path))
    own = {os.path.basename(cp["_file"]) for cp in found.checkpoints}
    for directory in required:
        if os.path.isdir(directory) and \
                not own & {os.path.basename(p) for p in anchor_files(directory)}:
            found.problems.append(
                f"anchor directory {directory} holds no trusted signed checkpoint of "
                f"{mine} on host {host} ({found.others} of other hosts or logs): an off-site "
                "directory that was unmounted, emptied or renamed away, or the host renamed")
    return found


def _read(path: str) -> tuple[dict | None, str | None]:
    try:
        with open(path, "rb") as fh:
            anchor = json.loads(fh.read().decode("utf-8"))
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"
    except (UnicodeDecodeError, ValueError):
        return None, "not valid JSON"
    return anchor, anchor_problem(anchor)


def verify_with_anchors(log, anchors: AnchorSet, given: list[dict] | None = None):
    """``log.verify`` against the trusted anchors (and ``given`` checkpoints) as well; an
    anchor that is itself a finding fails the report when the log is otherwise intact."""
    report = log.verify([*(given or []), *anchors.checkpoints])
    if report.ok and anchors.problems:
        report.ok = False
        report.problem = anchors.problems[0] + (
            f" (and {len(anchors.problems) - 1} more)" if len(anchors.problems) > 1 else "")
    return report


__all__ = ["FORMAT", "CONTEXT", "AnchorSet", "sign_checkpoint", "write_anchor", "anchor_name",
           "anchor_problem", "signature_ok", "collect", "verify_with_anchors", "anchor_files"]
