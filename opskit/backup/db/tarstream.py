"""Follow a tar stream fed in blocks of any size: headers in, member data out.

The base of ``TarWatch`` (counts members of ``pg_basebackup``'s stream as it
is stored) and ``TarUnpacker`` (writes them into a data directory on
restore). Data reaches the subclass as memoryviews of the blocks it came in,
never copied; only a header split between two blocks is gathered. Headers
are ustar or GNU (``L``/``K`` long names, base-256 sizes); a bad header
checksum, a negative size or a stream ending inside a member is a
``TarError``. Pax headers (``x``/``g``) are handed to ``start`` like members
so a subclass decides: counting skips them, unpacking refuses them.
"""
from __future__ import annotations

from dataclasses import dataclass

BLOCK = 512
ZERO = bytes(BLOCK)
LONG_KINDS = (b"L", b"K")            # GNU long name / long link target of the next member
META_KINDS = LONG_KINDS + (b"x", b"g")
MAX_LONG = 1 << 16                   # a longer "long name" is not a name


class TarError(ValueError):
    """A stream that is not a well-formed tar archive."""


@dataclass
class Member:
    """One tar header, names as bytes (GNU long names applied)."""

    name: bytes
    kind: bytes
    size: int
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int
    linkname: bytes

    @property
    def regular(self) -> bool:
        return self.kind in (b"0", b"\0", b"7")

    def shown(self) -> str:
        """The name for a message (control characters escaped by the output layer)."""
        return self.name.decode("utf-8", "replace")


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:            # GNU base-256 for big values
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarError(f"bad number {text[:12]!r} in a tar header") from None


def _text(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def parse_header(header: bytes) -> Member:
    """A 512-byte header as a Member; TarError when its checksum does not match."""
    stored = _number(header[148:156])
    if stored != sum(header[:148]) + 256 + sum(header[156:]):    # the field itself as spaces
        raise TarError("tar header checksum mismatch (not a tar stream, or damaged)")
    name = _text(header[:100])
    if header[257:262] == b"ustar":
        prefix = _text(header[345:500])
        if prefix:
            name = prefix + b"/" + name
    size = _number(header[124:136])
    if size < 0:
        raise TarError(f"member {name!r}: negative size")
    return Member(name=name, kind=header[156:157], size=size, mode=_number(header[100:108]),
                  uid=_number(header[108:116]), gid=_number(header[116:124]),
                  uname=_text(header[265:297]).decode("utf-8", "replace"),
                  gname=_text(header[297:329]).decode("utf-8", "replace"),
                  mtime=_number(header[136:148]), linkname=_text(header[157:257]))


class TarParser:
    """Call ``feed(block)`` for every piece of the stream, ``finish()`` at its end.

    Subclasses override ``start(member)``, ``data(view)`` and ``end()``
    (after a member's last data byte); ``ended`` turns true at the
    end-of-archive block and later bytes are ignored.
    """

    def __init__(self):
        self.ended = False
        self._head = bytearray()       # a header split between blocks
        self._left = 0                 # data bytes of the current member still to come
        self._pad = 0                  # then padding to the next 512-byte boundary
        self._long: bytearray | None = None
        self._long_kind = b""
        self._long_name: bytes | None = None
        self._long_link: bytes | None = None
        self._member: Member | None = None

    def start(self, member: Member) -> None:
        """A member's header (pax headers included)."""

    def data(self, view: memoryview) -> None:
        """A piece of the current member's data."""

    def end(self) -> None:
        """The current member is complete."""

    def feed(self, block) -> None:
        view = memoryview(block).cast("B")
        pos, n = 0, len(view)
        while pos < n and not self.ended:
            if self._left:
                take = min(self._left, n - pos)
                self._body(view[pos:pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._done()
            elif self._pad:
                take = min(self._pad, n - pos)
                pos += take
                self._pad -= take
            elif not self._head and n - pos >= BLOCK:
                self._header(bytes(view[pos:pos + BLOCK]))
                pos += BLOCK
            else:
                take = min(BLOCK - len(self._head), n - pos)
                self._head += view[pos:pos + take]
                pos += take
                if len(self._head) == BLOCK:
                    header = bytes(self._head)
                    self._head.clear()
                    self._header(header)

    def finish(self) -> None:
        """The stream's end: TarError when it stops inside a header or a member."""
        if self.ended:
            return
        if self._head or self._left or self._long is not None:
            where = self._member.shown() if self._member else "a header"
            raise TarError(f"the tar stream ends inside {where}")

    def _header(self, header: bytes) -> None:
        if header == ZERO:
            self.ended = True
            return
        member = parse_header(header)
        self._left, self._pad = member.size, -member.size % BLOCK
        if member.kind in LONG_KINDS:
            if member.size > MAX_LONG:
                raise TarError(f"a GNU long name of {member.size} bytes")
            self._long, self._long_kind = bytearray(), member.kind
        else:
            if self._long_name is not None:
                member.name, self._long_name = self._long_name, None
            if self._long_link is not None:
                member.linkname, self._long_link = self._long_link, None
            self._member = member
            self.start(member)
        if not member.size:
            self._done()

    def _body(self, view: memoryview) -> None:
        if self._long is not None:
            self._long += view
        else:
            self.data(view)

    def _done(self) -> None:
        if self._long is not None:
            text = bytes(self._long).split(b"\0", 1)[0]
            if self._long_kind == b"L":
                self._long_name = text
            else:
                self._long_link = text
            self._long = None
            return
        self.end()
