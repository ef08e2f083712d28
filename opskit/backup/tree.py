"""Tree blobs: one directory's entries (format doc, Trees).

Names are bytes on disk; stored as UTF-8 text when valid, else base64, so
names that are not valid UTF-8 survive a round trip.
"""
from __future__ import annotations

import base64
import json
import stat as statmod

from .fsmeta import TYPE_BLOCKDEV, TYPE_CHARDEV, read_xattrs, special_type

TYPE_FILE, TYPE_DIR, TYPE_SYMLINK = "file", "dir", "symlink"


class UnsafeName(ValueError):
    """A tree holds a name that could escape the restore target."""


def encode_name(node: dict, key: str, raw: bytes) -> None:
    try:
        node[key] = raw.decode("utf-8")
    except UnicodeDecodeError:
        node[key + "_b64"] = base64.b64encode(raw).decode()


def decode_name(node: dict, key: str = "name") -> bytes:
    if key in node:
        return node[key].encode("utf-8")
    if key + "_b64" in node:
        return base64.b64decode(node[key + "_b64"])
    raise UnsafeName(f"node without {key}")


def safe_name(node: dict) -> bytes:
    """The node's name, refusing anything that could leave its directory."""
    name = decode_name(node)
    if name in (b"", b".", b"..") or b"/" in name or b"\0" in name:
        raise UnsafeName(f"unsafe file name in snapshot: {name!r}")
    return name


def name_problems(nodes: list[dict]) -> list[str]:
    """Why restore would refuse this directory's node list: names that could
    leave the directory, and a name given twice (a real directory never has
    two; a forged tree might). ``check`` applies the same rules (#28 item 8)."""
    problems, seen = [], set()
    for node in nodes:
        try:
            name = safe_name(node)
        except (UnsafeName, ValueError) as exc:
            problems.append(str(exc))
            continue
        if name in seen:
            problems.append(f"name {name!r} appears twice in one directory")
        seen.add(name)
    return problems


def node_from_stat(name: bytes, st, names: "IdNames") -> dict:
    """Metadata common to every node type. Non-directories carry ``nlink``
    (hard links are told apart by ``dev`` + ``inode``), device nodes ``rdev``."""
    if statmod.S_ISDIR(st.st_mode):
        kind = TYPE_DIR
    elif statmod.S_ISLNK(st.st_mode):
        kind = TYPE_SYMLINK
    else:
        kind = special_type(st.st_mode) or TYPE_FILE
    node: dict = {"type": kind}
    encode_name(node, "name", name)
    node.update({"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid,
                 "user": names.user(st.st_uid), "group": names.group(st.st_gid),
                 "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                 "inode": st.st_ino, "dev": st.st_dev})
    if kind != TYPE_DIR:
        node["nlink"] = st.st_nlink
    if kind == TYPE_FILE:
        node["size"] = st.st_size
    elif kind in (TYPE_CHARDEV, TYPE_BLOCKDEV):
        node["rdev"] = st.st_rdev
    return node


def add_xattrs(node: dict, target: bytes | int) -> dict:
    """Record the extended attributes (and so ACLs) of ``target`` in ``node``, if any."""
    xattrs = read_xattrs(target)
    if xattrs:
        node["xattrs"] = xattrs
    return node


def special_node(name: bytes, st, names: "IdNames", path: bytes) -> dict:
    """The node of a FIFO, socket or device node at ``path``."""
    return add_xattrs(node_from_stat(name, st, names), path)


def unchanged(old: dict | None, st) -> bool:
    """Incremental test: same size, mtime, ctime, inode and link count as the
    parent's node (a node written before link counts were kept, which has no
    ``nlink`` and no ``xattrs``, is read again once)."""
    return (old is not None and old.get("mtime_ns") == st.st_mtime_ns
            and old.get("ctime_ns") == st.st_ctime_ns and old.get("size") == st.st_size
            and old.get("inode") == st.st_ino and old.get("type") == TYPE_FILE
            and old.get("nlink") == st.st_nlink and "content" in old)


_JSON = {"separators": (",", ":"), "ensure_ascii": False, "sort_keys": True}


def encode_tree(nodes: list[dict]) -> bytes:
    nodes.sort(key=decode_name)
    return json.dumps({"nodes": nodes}, **_JSON).encode()


def encode_node(node: dict) -> tuple[bytes, bytes]:
    """(raw name, the node's JSON as ``encode_tree`` writes it): workers send
    a directory's nodes in parts this way, and ``join_tree`` puts them together."""
    return decode_name(node), json.dumps(node, **_JSON).encode()


def join_tree(encoded: list[tuple[bytes, bytes]]) -> bytes:
    """``encode_tree``'s bytes from ``encode_node`` results, in any order: the
    same tree (and id) as when one process encodes the whole directory."""
    encoded.sort(key=lambda pair: pair[0])
    return b'{"nodes":[' + b",".join([js for _name, js in encoded]) + b"]}"


class IdNames:
    """uid/gid -> name lookups, cached (pwd/grp calls are slow per file)."""

    def __init__(self) -> None:
        self._users: dict[int, str | None] = {}
        self._groups: dict[int, str | None] = {}

    def user(self, uid: int) -> str | None:
        if uid not in self._users:
            import pwd
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = None
        return self._users[uid]

    def group(self, gid: int) -> str | None:
        if gid not in self._groups:
            import grp
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self._groups[gid] = None
        return self._groups[gid]


def blob_refs(node: dict):
    """(hex id, what it is to the node) of every blob a tree node needs: its
    content, and the bases its delta chunks are rebuilt from."""
    for hex_id in node.get("content", ()):
        yield hex_id, "part of"
    for hex_id in node.get("bases", ()):
        yield hex_id, "delta base for"
