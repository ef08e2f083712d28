"""A hash-chained, append-only JSON-lines register (the audit log's chain, R-AUD-3).

Each line is the canonical JSON of one record with ``seq`` (1, 2, 3 ...),
``time`` (when it was written, UTC), ``prev`` (SHA-256 of the previous line)
and ``hash`` (SHA-256 of the record without ``hash``): the format of
``opskit.core.audit`` with free fields. Editing, deleting, inserting or
reordering a line breaks the chain and ``verify`` names it.

Pruning (retention) drops a prefix of old lines and writes an *anchor* file
(``<register>.anchor``: seq and line hash of the last dropped line, and when
and why), so the first kept line still chains onto something recorded.
The file is 0600; writers serialise on ``<register>.lock``.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Iterator

from opskit.core.atomicfile import write_atomic
from opskit.core.audit import (GENESIS, _read_last_line, append_chained, canonical, entry_hash,
                               line_hash)
from opskit.core.errors import IntegrityError
from opskit.core.filelock import FileLock
from opskit.core.state import StateLayout

LOCK_TIMEOUT = 30.0


def register_at(state_dir: str, name: str) -> "Register":
    """The register ``name`` under ``<state_dir>/incidents/``."""
    return Register(os.path.join(StateLayout(state_dir).incidents, name))


class Register:
    """One hash-chained register file; ``append`` is atomic with a ``decide`` step."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.lock_path = self.path + ".lock"
        self.anchor_path = self.path + ".anchor"

    def _lock(self) -> FileLock:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        return FileLock(self.lock_path, timeout=LOCK_TIMEOUT)

    def append(self, decide: Callable[[list[dict]], dict]) -> dict:
        """Under the lock: ``decide(records)`` returns the fields of the new record
        (or raises, e.g. Refused); the record is chained, written and returned."""
        with self._lock():
            records = list(self.records())
            return append_chained(self.path, self._tail, decide(records))

    def _tail(self, fd: int, size: int) -> tuple[int, str]:
        last = _read_last_line(fd, size)
        if last is None:
            anchor = self.anchor()
            return (anchor["seq"], anchor["hash"]) if anchor else (0, GENESIS)
        try:
            if not last.endswith(b"\n"):
                raise ValueError
            return int(json.loads(last)["seq"]), line_hash(last)
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"register {self.path} ends with a damaged line; refusing to "
                                 "extend it", hint="see 'verify' of this register") from None

    def anchor(self) -> dict | None:
        """The anchor left by the last prune, or None."""
        try:
            with open(self.anchor_path, encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise IntegrityError(f"register anchor {self.anchor_path} is unreadable") from None

    def records(self) -> Iterator[dict]:
        """Every record, oldest first (no integrity check: see ``verify``)."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    yield json.loads(raw)
                except ValueError:
                    raise IntegrityError(f"register {self.path} line {lineno} is not JSON",
                                         hint="the register was damaged; restore it") from None

    def verify(self) -> str | None:
        """None when the chain is intact, else the first problem (naming the line)."""
        anchor = self.anchor()
        seq, prev = (anchor["seq"], anchor["hash"]) if anchor else (0, GENESIS)
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return None
        with fh:
            for lineno, raw in enumerate(fh, 1):
                problem = _line_problem(raw, seq + 1, prev)
                if problem:
                    return f"{self.path} line {lineno}: {problem}"
                seq, prev = seq + 1, line_hash(raw)
        return None

    def prune(self, keep: Callable[[dict], bool], reason: str, now: str) -> int:
        """Drop the leading records for which ``keep`` is false (a prefix only: the
        first kept record keeps everything after it) and anchor the chain. Returns
        the number dropped."""
        with self._lock():
            try:
                with open(self.path, "rb") as fh:
                    lines = fh.readlines()
            except FileNotFoundError:
                return 0
            n = 0
            while n < len(lines) and not keep(json.loads(lines[n])):
                n += 1
            if n == 0:
                return 0
            last = lines[n - 1]
            anchor = {"seq": json.loads(last)["seq"], "hash": line_hash(last),
                      "pruned_at": now, "reason": reason, "previous": self.anchor()}
            write_atomic(self.anchor_path, canonical(anchor) + b"\n", sync_dir=True)
            write_atomic(self.path, b"".join(lines[n:]), sync_dir=True)
        return n


def _line_problem(raw: bytes, seq: int, prev: str) -> str | None:
    if not raw.endswith(b"\n"):
        return "incomplete last line"
    try:
        entry = json.loads(raw)
    except ValueError:
        return "not valid JSON"
    if not isinstance(entry, dict) or "hash" not in entry:
        return "not a register record"
    if entry_hash(entry) != entry["hash"]:
        return "content does not match its hash: the record was edited"
    if entry.get("seq") != seq:
        return f"seq {entry.get('seq')} where {seq} was expected (records removed or reordered)"
    if entry.get("prev") != prev:
        return "prev does not match the record before it (records removed, inserted or altered)"
    if canonical(entry) != raw[:-1]:
        return "line is not in canonical form: it was rewritten"
    return None
