"""Restore progress has a total, a percentage and an ETA (issue #22 item 8):
the restorer works the total out from the trees with the walk's own selection,
so it equals what the restore then writes."""
from __future__ import annotations

import io
import os

import pytest

from opskit.backup.archiver import Archiver
from opskit.backup.restorer import Restorer
from opskit.cli.progress import TerminalProgress
from opskit.core.output import human_bytes
from tests.harness.backup import engine_repo, open_repo, write


@pytest.fixture
def snapshot(tmp_path):
    """A tree of 4 files to write (6000 bytes) plus a second hard link and a symlink."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    write(src / "a", b"a" * 1000)        # first in tree order, and not empty: see below
    write(src / "b", b"b" * 2000)
    write(src / "e", b"")
    write(src / "sub" / "c", b"c" * 3000)
    os.link(src / "sub" / "c", src / "sub" / "d")     # linked, not written again
    os.symlink("a", src / "s")
    engine_repo(tmp_path / "repo")
    repo = open_repo(tmp_path / "repo")
    _sid, snap = Archiver(repo, workers=1).run([str(src)])
    return repo, snap, str(src)


def _restore(repo, snap, target, progress, includes=None):
    stats = Restorer(repo, str(target), includes=includes, progress=progress, workers=1).run(snap)
    progress.close()
    return stats


def test_the_line_shows_the_total_a_percentage_and_an_eta(snapshot, tmp_path):
    repo, snap, _src = snapshot
    stream = io.StringIO()
    progress = TerminalProgress("restore", stream=stream, enabled=True)
    stats = _restore(repo, snap, tmp_path / "t", progress)
    assert (progress.total_files, progress.total_bytes) == (4, 6000)
    assert (stats.files, stats.bytes, stats.hardlinks) == (4, 6000, 1)
    drawn = stream.getvalue()
    # the first draw comes after file "a" (1000 of 6000 bytes): work is left, so an ETA
    first = drawn.split("\r\033[K")[1]
    assert "/4 files" in first and f"/ {human_bytes(6000)}" in first, drawn
    assert "%" in first and "ETA" in first, drawn
    final = drawn.rstrip("\n").split("\r\033[K")[-1]
    assert final.startswith("restore: 4/4 files") and "(100%)" in final and "ETA" not in final


def test_the_total_counts_only_what_include_selects(snapshot, tmp_path):
    repo, snap, src = snapshot
    progress = TerminalProgress("restore", stream=io.StringIO(), enabled=True)
    stats = _restore(repo, snap, tmp_path / "t", progress, includes=[f"{src}/sub"])
    assert (progress.total_files, progress.total_bytes) == (1, 3000) == (stats.files, stats.bytes)


def test_no_total_is_worked_out_without_a_line(snapshot, tmp_path):
    repo, snap, _src = snapshot
    stream = io.StringIO()
    progress = TerminalProgress("restore", stream=stream, enabled=False)    # cron: no TTY
    stats = _restore(repo, snap, tmp_path / "t", progress)
    assert progress.total_files is None and progress.total_bytes is None
    assert stats.files == 4 and stream.getvalue() == ""
