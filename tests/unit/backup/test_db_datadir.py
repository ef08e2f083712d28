"""A local data directory read as a base backup's tar stream (#24, opskit/backup/db/datadir.py):
what pg_basebackup leaves out is left out (WAL, runtime and temporary files, the data
forks of unlogged relations), the stream is a tar GNU tar unpacks byte for byte, a file
shrinking while read is padded with zeros and one growing is cut at its size, and a
tablespace is refused."""
from __future__ import annotations

import io
import os
import subprocess
import tarfile

import pytest

from opskit.backup.db.datadir import DataDirError, DataDirTar, system_identifier


def _write(path, data: bytes = b"x") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


@pytest.fixture
def datadir(tmp_path):
    d = tmp_path / "data"
    files = {
        "PG_VERSION": b"15\n", "global/pg_control": (4242).to_bytes(8, "little") + b"c" * 100,
        "global/pg_internal.init": b"cache", "base/1/16384": b"r" * 20000,
        "base/1/16384_fsm": b"f", "base/1/16385": b"u" * 9000, "base/1/16385.1": b"u",
        "base/1/16385_vm": b"v", "base/1/16385_init": b"i" * 8192,
        "base/1/pgsql_tmp/pgsql_tmp1.0": b"t", "base/1/pg_internal.init": b"cache",
        "pg_wal/000000010000000000000001": b"w" * 1000, "pg_wal/archive_status/x.ready": b"",
        "postmaster.pid": b"123", "postmaster.opts": b"o", "backup_label": b"old",
        "pg_stat_tmp/global.stat": b"s", "pg_replslot/slot/state": b"s",
        "pg_subtrans/0000": b"s", "postgresql.auto.conf": b"# auto\n", "pg_stat/x": b"kept",
    }
    for rel, data in files.items():
        _write(d / rel, data)
    (d / "pg_tblspc").mkdir()
    (d / "conf-link").symlink_to("/etc/postgresql/15/main/postgresql.conf")
    os.mkfifo(d / "a-fifo")
    return d


def _stream(d, tail=lambda: [("backup_label", b"START WAL LOCATION: 0/2000028\n")],
            size: int = 1 << 16) -> bytes:
    src = DataDirTar(str(d), tail)
    out = bytearray()
    buf = bytearray(size)
    while True:
        n = src.readinto(buf)
        if not n:
            break
        out += buf[:n]
    src.close()
    return bytes(out)


def test_the_stream_holds_what_pg_basebackup_would_and_nothing_else(datadir):
    data = _stream(datadir)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = {m.name: m for m in tar.getmembers()}
    assert set(names) == {
        "PG_VERSION", "global", "global/pg_control", "base", "base/1", "base/1/16384",
        "base/1/16384_fsm", "base/1/16385_init", "pg_wal", "pg_wal/archive_status",
        "postgresql.auto.conf", "pg_stat", "pg_stat/x", "pg_tblspc", "pg_stat_tmp",
        "pg_replslot", "pg_subtrans", "conf-link", "backup_label"}
    assert names["conf-link"].issym() and names["pg_wal"].isdir()
    assert names["backup_label"].size == len(b"START WAL LOCATION: 0/2000028\n")


def test_gnu_tar_unpacks_the_stream_byte_for_byte(datadir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-x", "-f", "-", "-C", str(out)], input=_stream(datadir, size=777),
                   check=True)
    for rel in ("PG_VERSION", "global/pg_control", "base/1/16384", "base/1/16385_init"):
        assert (out / rel).read_bytes() == (datadir / rel).read_bytes()
    assert (out / "backup_label").read_bytes().startswith(b"START WAL")
    assert os.readlink(out / "conf-link") == "/etc/postgresql/15/main/postgresql.conf"
    assert system_identifier(str(out)) == 4242 and system_identifier(str(tmp_path)) is None


def test_a_file_shrinking_is_padded_and_one_growing_is_cut(tmp_path):
    d = tmp_path / "d"
    _write(d / "a", b"a" * 100_000)
    _write(d / "b", b"b" * 3000)
    src = DataDirTar(str(d), lambda: [])
    first = bytearray(512)
    assert src.readinto(first) == 512                 # a's header: its size is fixed now
    with open(d / "a", "r+b") as fh:
        fh.truncate(10_000)
    rest = bytearray()
    buf = bytearray(4096)
    while (n := src.readinto(buf)):
        rest += buf[:n]
    src.close()
    with tarfile.open(fileobj=io.BytesIO(bytes(first) + bytes(rest))) as tar:
        a = tar.extractfile("a").read()
        b = tar.extractfile("b").read()
    assert a == b"a" * 10_000 + bytes(90_000) and b == b"b" * 3000

    src = DataDirTar(str(d), lambda: [])
    head = bytearray(512)
    src.readinto(head)                                # a (now 10 000 bytes)
    with open(d / "a", "ab") as fh:
        fh.write(b"z" * 5000)
    tail = _drain(src)
    with tarfile.open(fileobj=io.BytesIO(bytes(head) + tail)) as tar:
        assert tar.extractfile("a").read() == b"a" * 10_000


def _drain(src) -> bytes:
    out, buf = bytearray(), bytearray(8192)
    while (n := src.readinto(buf)):
        out += buf[:n]
    src.close()
    return bytes(out)


def test_a_tablespace_is_refused_naming_it(datadir):
    (datadir / "pg_tblspc" / "16400").symlink_to("/srv/ts")
    with pytest.raises(DataDirError, match="tablespaces.*pg_tblspc/16400"):
        _stream(datadir)
