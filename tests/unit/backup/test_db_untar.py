"""GNU tar fed through a pipe for a base-backup restore (#24, opskit/backup/db/untar.py):
'..' members refused (the restore fails, nothing written outside the target), leading
'/' stripped, setuid and group/other write bits dropped, a decoding error kills tar and
surfaces unchanged, and TarWatch counts what tarfile would."""
from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from opskit.backup.db.tarwatch import TarWatch
from opskit.backup.db.untar import untar
from opskit.backup.repository import CorruptObject
from opskit.core.errors import OperationalError


def _tar(members: list[tuple[str, bytes, int]], fmt=tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blocks(data: bytes, size: int = 7000):
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_a_clean_tar_is_unpacked_and_counted_as_tarfile_does(tmp_path):
    long = "base/" + "n" * 150                      # GNU long name member
    data = _tar([("PG_VERSION", b"15\n", 0o600), ("/global/pg_control", b"c" * 8192, 0o600),
                 (long, b"x" * 100_000, 0o4755), ("shared", b"s", 0o666)])
    out = tmp_path / "data"
    out.mkdir()
    watch = TarWatch()
    untar(_blocks(data), str(out), same_owner=False, what="t", tap=watch)
    assert (out / "PG_VERSION").read_bytes() == b"15\n"
    assert (out / "global" / "pg_control").read_bytes() == b"c" * 8192   # '/' stripped
    assert (out / long).stat().st_size == 100_000
    assert not (out / long).stat().st_mode & (stat.S_ISUID | stat.S_IWGRP | stat.S_IWOTH)
    assert not (out / "shared").stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert (watch.files, watch.bytes) == (len(members), sum(m.size for m in members))


@pytest.mark.parametrize("bad", ["../escape", "base/../../escape"])
def test_a_member_leaving_the_target_is_refused_and_the_restore_fails(tmp_path, bad):
    out = tmp_path / "a" / "data"
    out.mkdir(parents=True)
    data = _tar([("PG_VERSION", b"15\n", 0o600), (bad, b"evil", 0o644)])
    with pytest.raises(OperationalError) as exc:
        untar(_blocks(data), str(out), same_owner=False, what="snapshot abc base.tar")
    assert "snapshot abc base.tar" in str(exc.value) and ".." in str(exc.value)
    assert not (tmp_path / "a" / "escape").exists() and not (tmp_path / "escape").exists()


def test_a_decoding_error_kills_tar_and_is_raised_unchanged(tmp_path):
    data = _tar([("a", b"a" * 50_000, 0o600), ("b", b"b" * 50_000, 0o600)])

    def damaged():
        yield data[:30_000]
        raise CorruptObject("blob 00ff", "content does not match its id")

    with pytest.raises(CorruptObject, match="does not match"):
        untar(damaged(), str(tmp_path), same_owner=False, what="t")
    assert not os.path.exists(tmp_path / "b")


def test_a_missing_target_directory_is_one_line_operational_error(tmp_path):
    with pytest.raises(OperationalError) as exc:
        untar(_blocks(_tar([("a", b"a", 0o600)])), str(tmp_path / "nope"),
              same_owner=False, what="snapshot abc base.tar")
    assert "\n" not in str(exc.value) and "nope" in str(exc.value)
