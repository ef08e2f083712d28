"""Watch a tar stream go by: count its members, keep a few small ones (``backup_label``).

A tap for ``TapReader``: it sees the bytes of ``pg_basebackup -Ft -D -`` as
they are stored (or as a restore hands them to GNU tar), follows the 512-byte
headers, counts members and their bytes, and copies out the members it was
asked for, so nothing is unpacked or written to disk.
"""
from __future__ import annotations

BLOCK = 512
META_KINDS = (b"L", b"K", b"x", b"g")   # long names, pax headers: not members of their own
MAX_KEEP = 1 << 20       # a wanted member larger than this is not kept (labels are tiny)


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:            # GNU base-256 for big sizes
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


class TarWatch:
    """``tap(block)`` for every chunk of a tar stream; ``members`` holds the wanted ones,
    ``files`` and ``bytes`` count the members seen (as tarfile iterates them)."""

    def __init__(self, wanted: set[str] | None = None):
        self.wanted = wanted or set()
        self.members: dict[str, bytes] = {}
        self.files = 0
        self.bytes = 0
        self._buf = bytearray()
        self._skip = 0            # bytes of the current member (plus padding) still to pass
        self._keep: bytearray | None = None
        self._keep_name = ""
        self._keep_left = 0
        self._long_name: str | None = None
        self._long_left = 0
        self.ended = False

    def __call__(self, block) -> None:
        self._buf += block
        while not self.ended:
            if self._skip:
                if not self._buf:
                    return
                n = min(self._skip, len(self._buf))
                self._consume_body(bytes(self._buf[:n]))
                del self._buf[:n]
                self._skip -= n
                continue
            if len(self._buf) < BLOCK:
                return
            header = bytes(self._buf[:BLOCK])
            del self._buf[:BLOCK]
            self._header(header)

    def _consume_body(self, data: bytes) -> None:
        if self._long_left:
            take = data[:self._long_left]
            self._long_name = (self._long_name or "") + take.decode("utf-8", "replace")
            self._long_left -= len(take)
            if not self._long_left:
                self._long_name = self._long_name.rstrip("\0")
            return
        if self._keep is not None and self._keep_left:
            take = data[:self._keep_left]
            self._keep += take
            self._keep_left -= len(take)
            if not self._keep_left:
                self.members[self._keep_name] = bytes(self._keep)
                self._keep = None

    def _header(self, header: bytes) -> None:
        if header == bytes(BLOCK):
            self.ended = True            # end-of-archive marker
            return
        name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if prefix and header[257:262] == b"ustar":
            name = f"{prefix}/{name}"
        size = _octal(header[124:136])
        kind = header[156:157]
        self._skip = (size + BLOCK - 1) // BLOCK * BLOCK
        if kind == b"L":                 # GNU long name: the next member's name
            self._long_name, self._long_left = "", size
            return
        if kind in META_KINDS:
            return
        self.files += 1
        self.bytes += size
        if self._long_name is not None:
            name, self._long_name = self._long_name, None
        name = name[2:] if name.startswith("./") else name
        if name in self.wanted and kind in (b"0", b"\0") and size <= MAX_KEEP:
            self._keep, self._keep_name, self._keep_left = bytearray(), name, size
            if size == 0:
                self.members[name] = b""
                self._keep = None
