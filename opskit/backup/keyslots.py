"""Key slots: list, add, remove, change passphrase, paper export/import.

Several slots wrap the same master key set, so changing a passphrase only
rewraps it: no data is re-encrypted. The paper sheet holds the master keys
themselves in groups that can be typed back, each line with a checksum.
"""
from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass

from opskit.core.errors import UsageError

from . import crypto
from .repository import Repository, RepositoryError


@dataclass
class SlotInfo:
    id: str
    kind: str
    created: str
    host: str
    user: str
    current: bool


def list_slots(repo: Repository) -> list[SlotInfo]:
    out = []
    for name, _size in repo.backend.list("keys/"):
        sid = name.split("/")[-1]
        try:
            slot = json.loads(repo.backend.get(name))
        except ValueError:
            slot = {}
        out.append(SlotInfo(sid, slot.get("kind", "?"), slot.get("created", "?"),
                            slot.get("host", "?"), slot.get("user", "?"), sid == repo.key_name))
    out.sort(key=lambda s: s.created)
    return out


def add_slot(repo: Repository, passphrase: bytes, *, write_only: bool = False) -> str:
    """A new key slot for ``passphrase``; returns its id. A write-only slot
    can add snapshots (with deduplication) but decrypt nothing."""
    if repo.keys.write_only:
        raise UsageError("a write-only key cannot add key slots: unlock with a full key")
    keys = repo.keys.write_only_subset() if write_only else repo.keys
    slot = crypto.make_key_slot(keys, passphrase)
    sid = crypto.object_id(slot)
    repo.backend.put(f"keys/{sid}", slot)
    return sid


def _resolve(repo: Repository, ref: str) -> SlotInfo:
    slots = list_slots(repo)
    hits = [s for s in slots if s.id.startswith(ref.lower())] if len(ref) >= 4 else []
    if not hits:
        raise UsageError(f"key slot {ref!r} not found (see: opskit backup key list)")
    if len(hits) > 1:
        raise UsageError(f"key slot {ref!r} is ambiguous")
    return hits[0]


def removable_slot(repo: Repository, ref: str) -> SlotInfo:
    """The slot ``ref`` names, if it may be removed: never the last full
    (restore-capable) one, whose loss would make every snapshot unreadable."""
    target = _resolve(repo, ref)
    full = [s for s in list_slots(repo) if s.kind == "full"]
    if target.kind == "full" and len(full) <= 1:
        raise UsageError(f"key slot {target.id[:12]} is the last one that can restore: "
                         "refusing to remove it (add another key first)")
    return target


def remove_slot(repo: Repository, ref: str) -> SlotInfo:
    """Remove a slot; refuses the last full (restore-capable) one."""
    target = removable_slot(repo, ref)
    repo.backend.delete(f"keys/{target.id}")
    return target


def change_passphrase(repo: Repository, new_passphrase: bytes) -> tuple[str, str]:
    """Rewrap the master keys under a new passphrase, replacing the slot in use."""
    old = repo.key_name
    new = add_slot(repo, new_passphrase)
    if old and old != new:
        repo.backend.delete(f"keys/{old}")
    repo.key_name = new
    return old or "", new


# --- paper ----------------------------------------------------------------------------
_GROUP = 5
_PER_LINE = 6


def _checksum(text: str) -> str:
    return f"{zlib.crc32(text.encode()) & 0xFFFF:04X}"


def paper_sheet(repo: Repository) -> str:
    """A printable recovery sheet: repository id and master keys in base32
    groups, each line ending in a 4-hex-digit checksum of that line."""
    if repo.keys.write_only:
        raise UsageError("a write-only key holds no restore keys to export")
    k = repo.keys
    raw = k.id_key + k.data_key + k.meta_key + k.index_key + k.x25519_private
    b32 = base64.b32encode(raw).decode().rstrip("=")
    groups = [b32[i:i + _GROUP] for i in range(0, len(b32), _GROUP)]
    lines = []
    for i in range(0, len(groups), _PER_LINE):
        body = " ".join(groups[i:i + _PER_LINE])
        lines.append(f"{i // _PER_LINE + 1:02d}: {body}  {_checksum(body)}")
    whole = _checksum(b32)
    return "\n".join([
        "OPSKIT REPOSITORY RECOVERY SHEET (keep offline, in a safe)",
        f"repository: {repo.config.id}",
        "Anyone holding this sheet and the repository can read every backup.",
        "",
        *lines,
        "",
        f"sheet checksum: {whole}",
        "Restore with: opskit backup key import --repo <location> < sheet.txt",
    ]) + "\n"


def parse_sheet(text: str) -> tuple[str | None, crypto.MasterKeys]:
    """Read a sheet back (typed or scanned); each line's checksum is checked."""
    repo_id = None
    b32 = ""
    whole = None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.startswith("repository:"):
            repo_id = line.split(":", 1)[1].strip()
        elif line.startswith("sheet checksum:"):
            whole = line.split(":", 1)[1].strip().upper()
        elif len(line) > 3 and line[:2].isdigit() and line[2] == ":":
            parts = line[3:].split()
            if len(parts) < 2:
                raise UsageError(f"recovery sheet line {n}: no checksum")
            body, check = " ".join(parts[:-1]).upper(), parts[-1].upper()
            if _checksum(body) != check:
                raise UsageError(f"recovery sheet line {n}: checksum {check} does not match "
                                 f"(expected {_checksum(body)}): a typing error on that line")
            b32 += body.replace(" ", "")
    if not b32:
        raise UsageError("recovery sheet: no key lines found")
    if whole and _checksum(b32) != whole:
        raise UsageError("recovery sheet: lines are out of order or missing (sheet checksum differs)")
    pad = "=" * (-len(b32) % 8)
    try:
        raw = base64.b32decode(b32 + pad)
    except ValueError as exc:
        raise UsageError(f"recovery sheet: not valid base32 ({exc})") from None
    if len(raw) != 160:
        raise UsageError(f"recovery sheet: holds {len(raw)} key bytes, expected 160")
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    public = X25519PrivateKey.from_private_bytes(raw[128:]).public_key().public_bytes_raw()
    return repo_id, crypto.MasterKeys(raw[:32], raw[32:64], raw[64:96], raw[96:128], raw[128:],
                                      public)


def import_sheet(repo_location_backend, text: str, passphrase: bytes) -> tuple[Repository, str]:
    """Unlock a repository with the keys from a sheet and add a slot for ``passphrase``."""
    from .repository import RepoConfig
    repo_id, keys = parse_sheet(text)
    backend = repo_location_backend
    repo = Repository(backend, keys, RepoConfig("", 0, 0, 0, 0, ""))
    try:
        data = repo.open_json("config", backend.get("config"), "config")
    except Exception:
        raise RepositoryError(f"the recovery sheet does not fit the repository at {backend.location}")
    repo.config = RepoConfig.from_json(data)
    if repo_id and repo_id != repo.config.id:
        raise RepositoryError(f"the sheet is for repository {repo_id}, not {repo.config.id}")
    return repo, add_slot(repo, passphrase)
