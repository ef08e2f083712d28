"""File metadata beyond stat: extended attributes (POSIX ACLs are the xattrs
``system.posix_acl_access`` / ``system.posix_acl_default``) and special files
(FIFOs, sockets, device nodes). Format doc, Trees; issue 27.

Xattr values are stored base64 in a node's ``xattrs`` map, only when the
file has some: one ``listxattr`` per file is the whole cost of a file
without any.
"""
from __future__ import annotations

import base64
import os
import stat as statmod

TYPE_FIFO, TYPE_SOCKET, TYPE_CHARDEV, TYPE_BLOCKDEV = "fifo", "socket", "chardev", "blockdev"
_SPECIAL = {statmod.S_IFIFO: TYPE_FIFO, statmod.S_IFSOCK: TYPE_SOCKET,
            statmod.S_IFCHR: TYPE_CHARDEV, statmod.S_IFBLK: TYPE_BLOCKDEV}
_FORMAT = {kind: fmt for fmt, kind in _SPECIAL.items()}
SPECIAL_TYPES = frozenset(_FORMAT)


def special_type(mode: int) -> str | None:
    """The node type of a FIFO, socket or device node; None for anything else."""
    return _SPECIAL.get(statmod.S_IFMT(mode))


def read_xattrs(target: bytes | int) -> dict | None:
    """``{name: base64 value}`` of a path (never followed) or an open fd; None
    when there are none or the file system has none. An attribute we may not
    read (``trusted.*`` as a user) is left out."""
    follow = isinstance(target, int)
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError:
        return None
    out = {}
    for name in names:
        try:
            value = os.getxattr(target, name, follow_symlinks=follow)
        except OSError:
            continue
        out[name] = base64.b64encode(value).decode()
    return out or None


def write_xattrs(target: bytes | int, xattrs: dict) -> str | None:
    """Set every attribute of ``xattrs`` on a path (never followed) or an fd;
    an error text naming what was not set, or None."""
    follow = isinstance(target, int)
    failed = []
    for name, value in sorted(xattrs.items()):
        try:
            os.setxattr(target, name, base64.b64decode(value), follow_symlinks=follow)
        except (OSError, ValueError) as exc:
            failed.append(f"{name} ({exc.strerror if isinstance(exc, OSError) else exc})")
    return f"extended attributes not restored: {', '.join(failed)}" if failed else None


def make_special(dest: bytes, node: dict) -> None:
    """Create a FIFO, socket or device node at ``dest`` (mode 0600 until its
    metadata is applied). A socket comes back as an unbound socket file, as
    ``mknod`` makes it; device nodes need root (CAP_MKNOD). Raises OSError."""
    fmt = _FORMAT[node["type"]]
    os.mknod(dest, fmt | 0o600, int(node.get("rdev") or 0))
