"""Nameless files linked in when complete (opskit/backup/unnamed.py, issue 27)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from opskit.backup import unnamed


@pytest.fixture(params=["descriptor", "proc"])
def link_way(request, monkeypatch):
    """link_in both ways: by the descriptor (root) and through /proc/self/fd."""
    if request.param == "proc":
        monkeypatch.setattr(unnamed, "by_descriptor", False)
    else:
        assert os.geteuid() == 0, "CI runs as root"
        monkeypatch.setattr(unnamed, "by_descriptor", True)
    return request.param


def test_a_nameless_file_gets_its_name_with_its_content_and_mode(tmp_path, link_way):
    fd = unnamed.open_unnamed(os.fsencode(tmp_path), 0o640)
    try:
        os.write(fd, b"payload")
        assert os.listdir(tmp_path) == []            # nothing visible while written
        unnamed.link_in(fd, os.fsencode(tmp_path / "done"))
    finally:
        os.close(fd)
    assert (tmp_path / "done").read_bytes() == b"payload"
    assert os.stat(tmp_path / "done").st_mode & 0o777 == 0o640 & ~_umask()


def test_an_existing_name_is_refused_not_replaced(tmp_path, link_way):
    (tmp_path / "taken").write_bytes(b"keep")
    fd = unnamed.open_unnamed(os.fsencode(tmp_path), 0o600)
    try:
        with pytest.raises(FileExistsError):
            unnamed.link_in(fd, os.fsencode(tmp_path / "taken"))
    finally:
        os.close(fd)
    assert (tmp_path / "taken").read_bytes() == b"keep"


def test_a_writer_killed_half_way_leaves_no_entry(tmp_path):
    """SIGKILL, which no handler sees: a named temporary file would stay behind;
    a nameless one is freed by the kernel."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # child: write forever, never link
        try:
            fd = unnamed.open_unnamed(os.fsencode(tmp_path), 0o600)
            os.write(fd, b"x" * 65536)
            os.write(ready_w, b"1")
            while True:
                os.write(fd, b"x" * 65536)
                time.sleep(0.01)
        finally:
            os._exit(1)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"1"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert os.listdir(tmp_path) == []


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_linking_by_descriptor_works_as_root_and_is_kept(tmp_path, link_way):
    """Root may link by descriptor: the fallback must not be taken needlessly."""
    fd = unnamed.open_unnamed(os.fsencode(tmp_path), 0o600)
    try:
        unnamed.link_in(fd, os.fsencode(tmp_path / "x"))
    finally:
        os.close(fd)
    assert unnamed.by_descriptor == (link_way == "descriptor")
