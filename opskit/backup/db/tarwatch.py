"""Watch a tar stream go by: count its members, keep a few small ones (``backup_label``).

A tap for ``TapReader``: it sees the bytes of ``pg_basebackup -Ft -D -`` as
they are stored, follows the 512-byte headers (tarstream.py), counts members
and their bytes, and copies out the members it was asked for, so nothing is
unpacked or written to disk.
"""
from __future__ import annotations

from .tarstream import META_KINDS, Member, TarParser

MAX_KEEP = 1 << 20       # a wanted member larger than this is not kept (labels are tiny)


class TarWatch(TarParser):
    """``tap(block)`` for every chunk of a tar stream; ``members`` holds the wanted ones,
    ``files`` and ``bytes`` count the members seen (as tarfile iterates them)."""

    def __init__(self, wanted: set[str] | None = None):
        super().__init__()
        self.wanted = wanted or set()
        self.members: dict[str, bytes] = {}
        self.files = 0
        self.bytes = 0
        self._keep: bytearray | None = None
        self._keep_name = ""

    def __call__(self, block) -> None:
        self.feed(block)

    def start(self, member: Member) -> None:
        if member.kind in META_KINDS:
            return
        self.files += 1
        self.bytes += member.size
        name = member.name.decode("utf-8", "replace")
        name = name[2:] if name.startswith("./") else name
        if name in self.wanted and member.regular and member.size <= MAX_KEEP:
            self._keep, self._keep_name = bytearray(), name

    def data(self, view: memoryview) -> None:
        if self._keep is not None:
            self._keep += view

    def end(self) -> None:
        if self._keep is not None:
            self.members[self._keep_name] = bytes(self._keep)
            self._keep = None
