"""The archive register (R-AUD-6): every read, drill and destruction of an archive.

One hash-chained register, ``<state_dir>/incidents/archives.jsonl`` (the
format of opskit.incidents.chain, checked by ``opskit incident verify`` and
``opskit archive verify``). Records are ``step`` ``access`` (an approved
read), ``drill`` (exempt from approval, still registered) or ``destroy``.
"""
from __future__ import annotations

from opskit.incidents.chain import Register, register_at

ACCESS, DRILL, DESTROY = "access", "drill", "destroy"


def register(state_dir: str) -> Register:
    """The archive register of this state directory."""
    return register_at(state_dir, "archives.jsonl")


def snapshot_fields(snap: dict, reason: str) -> dict:
    """What a record keeps of a snapshot: enough to find it again without the key."""
    return {"snapshot": snap["id"], "snapshot_time": snap.get("time"),
            "host": snap.get("host"), "paths": snap.get("paths", []),
            "tags": snap.get("tags", []), "kind": snap.get("kind", "files"), "archive": reason}


def append(state_dir: str, record: dict) -> dict:
    """Chain ``record`` onto the register and return it as written."""
    return register(state_dir).append(lambda _records: record)


def load(state_dir: str, steps: tuple[str, ...]) -> list[dict]:
    """The records of the given steps, oldest first."""
    return [r for r in register(state_dir).records() if r.get("step") in steps]
