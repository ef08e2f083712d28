"""``backup ls`` mode text as ``ls -l`` writes it (issue #22 item 8)."""
from __future__ import annotations

import pytest

from opskit.backup.listing import entry, mode_text


@pytest.mark.parametrize("kind, mode, text", [
    ("file", 0o100640, "-rw-r-----"),
    ("file", 0o4755, "-rwsr-xr-x"),          # setuid with x: s
    ("file", 0o4644, "-rwSr--r--"),          # setuid without x: S
    ("file", 0o2750, "-rwxr-s---"),
    ("file", 0o2640, "-rw-r-S---"),
    ("dir", 0o41777, "drwxrwxrwt"),           # sticky with x: t
    ("dir", 0o1776, "drwxrwxrwT"),
    ("dir", 0o755, "drwxr-xr-x"),
    ("symlink", 0o120777, "lrwxrwxrwx"),
    ("fifo", 0o644, "prw-r--r--"),
    ("chardev", 0o20620, "crw--w----"),
    ("blockdev", 0o660, "brw-rw----"),
    ("socket", 0o755, "srwxr-xr-x"),
    ("door", 0o644, "?rw-r--r--"),            # a type this version does not know
])
def test_mode_text_is_what_ls_writes(kind, mode, text):
    assert mode_text(kind, mode) == text


def test_entry_keeps_typed_fields_and_the_symlink_target():
    node = {"type": "symlink", "name": "l", "target": "../etc/hosts", "mode": 0o120777,
            "uid": 4242, "gid": 4343, "user": None, "group": None, "mtime_ns": 0}
    row = entry(node, "/x/l")
    assert row["mode"] == 0o777 and row["mode_text"] == "lrwxrwxrwx"
    assert (row["uid"], row["gid"], row["user"]) == (4242, 4343, None)
    assert row["target"] == "../etc/hosts" and row["size"] == len("../etc/hosts")
    assert row["mtime"].startswith(("1970-01-01T", "1969-12-31T")) and row["mtime"][-6] in "+-"


def test_entry_of_a_file_has_no_target():
    row = entry({"type": "file", "mode": 0o100600, "size": 7, "mtime_ns": 1}, "/f")
    assert row["target"] is None and row["size"] == 7 and row["mode_text"] == "-rw-------"
