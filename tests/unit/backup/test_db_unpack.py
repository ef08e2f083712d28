"""Unpacking a base backup's tar stream in process (#24, opskit/backup/db/unpack.py).

GNU tar is the judge of what a clean archive unpacks to: random archives are
unpacked by both and the trees compared (names, types, modes under umask
027, sizes, contents, symlink targets, mtimes). Hostile archives must not
pass: '..', writing through a symlink (planted in the target or made by an
earlier member), a member replacing another, hard links, devices, FIFOs and
pax headers are refused with the member named, and nothing lands outside the
target. A decoding error ends the unpack unchanged; a damaged or truncated
stream is a TarError. TarWatch counts what tarfile iterates."""
from __future__ import annotations

import io
import os
import random
import stat
import subprocess
import tarfile

import pytest

from opskit.backup.db.tarstream import TarError
from opskit.backup.db.tarwatch import TarWatch
from opskit.backup.db.unpack import UnpackError, unpack
from opskit.backup.repository import CorruptObject

MTIME = 1_700_000_000


def _tar(members: list, fmt=tarfile.GNU_FORMAT) -> bytes:
    """members: (name, data bytes | None for a directory, mode[, kind, linkname])."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data, mode, *rest in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uid, info.gid = mode, MTIME, 0, 0
            if rest:
                info.type, info.linkname = rest
                tar.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blocks(data: bytes, size: int = 7000):
    return [data[i:i + size] for i in range(0, len(data), size)]


def _tree(root) -> dict:
    """Everything below ``root`` as the judge compares it. Directory times are
    left out: GNU tar sets one on leaving the directory in archive order, so a
    later member inside it (or its symlinks, made last) moves it again; opskit
    sets every directory's time after everything (checked on its own below)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                with open(path, "rb") as fh:
                    out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, fh.read())
    return out


def _random_archive(rng: random.Random) -> bytes:
    members, dirs = [], [""]
    for i in range(rng.randint(5, 40)):
        parent = rng.choice(dirs)
        name = (parent + "/" if parent else "") + f"{rng.choice(['d', 'f', 'n' * 90])}{i}"
        roll = rng.random()
        if roll < 0.25:
            members.append((name, None, rng.choice([0o700, 0o750, 0o755, 0o777])))
            dirs.append(name)
        elif roll < 0.35:
            members.append((name, None, 0o777, tarfile.SYMTYPE, rng.choice(["../x", "/abs", "f1"])))
        else:
            size = rng.choice([0, 1, 511, 512, 513, 8192, rng.randint(0, 300_000)])
            members.append((name, rng.randbytes(size),
                            rng.choice([0o600, 0o640, 0o644, 0o666, 0o755, 0o4755, 0o2775])))
    return _tar(members, fmt=rng.choice([tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
                if all(len(m[0]) < 100 for m in members) else tarfile.GNU_FORMAT)


@pytest.mark.parametrize("seed", range(12))
def test_random_archives_unpack_as_gnu_tar_unpacks_them(tmp_path, seed):
    data = _random_archive(random.Random(seed))
    ours, theirs = tmp_path / "ours", tmp_path / "gnu"
    ours.mkdir()
    theirs.mkdir()
    done = unpack(_blocks(data, random.Random(seed).choice([1, 100, 512, 7000, 1 << 20])),
                  str(ours), sync=seed % 2 == 0)
    subprocess.run(["tar", "-x", "-f", "-", "-C", str(theirs), "--no-same-permissions",
                    "--no-same-owner"], input=data, check=True,
                   preexec_fn=lambda: os.umask(0o027))
    assert _tree(ours) == _tree(theirs), f"seed {seed}: differs from GNU tar"
    for dirpath, dirnames, _ in os.walk(ours):
        assert all(os.lstat(os.path.join(dirpath, d)).st_mtime == MTIME for d in dirnames)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert (done.files, done.bytes) == (len(members), sum(m.size for m in members))
    watch = TarWatch()
    for block in _blocks(data, 333):
        watch(block)
    assert (watch.files, watch.bytes) == (done.files, done.bytes)


def test_setuid_and_group_write_are_dropped_and_a_leading_slash_stays_inside(tmp_path):
    data = _tar([("/global/pg_control", b"c" * 8192, 0o4775), ("shared", b"s", 0o666)])
    unpack(_blocks(data), str(tmp_path))
    assert (tmp_path / "global" / "pg_control").read_bytes() == b"c" * 8192
    for path in (tmp_path / "global" / "pg_control", tmp_path / "shared"):
        assert not path.stat().st_mode & (stat.S_ISUID | stat.S_IWGRP | stat.S_IWOTH)


def test_a_fixed_owner_is_given_to_every_member(tmp_path):
    # another user as root (CI); without root only our own ids can be given
    ids = (65534, 65534) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    data = _tar([("base", None, 0o700), ("base/1", b"x", 0o600)])
    unpack(_blocks(data), str(tmp_path), owner=ids)
    for path in (tmp_path / "base", tmp_path / "base" / "1"):
        assert (path.stat().st_uid, path.stat().st_gid) == ids


@pytest.mark.parametrize("bad", ["../escape", "base/../../escape", "./../escape"])
def test_a_member_leaving_the_target_is_refused(tmp_path, bad):
    out = tmp_path / "a" / "data"
    out.mkdir(parents=True)
    with pytest.raises(UnpackError, match=r"\.\."):
        unpack(_blocks(_tar([("PG_VERSION", b"15\n", 0o600), (bad, b"evil", 0o644)])), str(out))
    assert not (tmp_path / "a" / "escape").exists() and not (tmp_path / "escape").exists()


def test_nothing_is_written_through_a_symlink_made_by_an_earlier_member(tmp_path):
    outside, out = tmp_path / "outside", tmp_path / "data"
    outside.mkdir()
    out.mkdir()
    data = _tar([("pg_wal", None, 0o777, tarfile.SYMTYPE, str(outside)),
                 ("pg_wal/evil", b"evil", 0o644)])
    with pytest.raises(UnpackError, match="pg_wal"):
        unpack(_blocks(data), str(out))
    assert list(outside.iterdir()) == []


def test_nothing_is_written_through_a_symlink_already_in_the_target(tmp_path):
    outside, out = tmp_path / "outside", tmp_path / "data"
    outside.mkdir()
    out.mkdir()
    (out / "base").symlink_to(outside)
    for members in ([("base/evil", b"evil", 0o644)], [("base", None, 0o700), ("base/e", b"e", 0o600)]):
        with pytest.raises(UnpackError, match="base"):
            unpack(_blocks(_tar(members)), str(out))
    assert list(outside.iterdir()) == []


def test_a_member_never_replaces_an_earlier_one(tmp_path):
    data = _tar([("PG_VERSION", b"15\n", 0o600), ("PG_VERSION", b"99\n", 0o600)])
    with pytest.raises(UnpackError, match="PG_VERSION"):
        unpack(_blocks(data), str(tmp_path))
    assert (tmp_path / "PG_VERSION").read_bytes() == b"15\n"


@pytest.mark.parametrize("kind", [tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
                                  tarfile.FIFOTYPE])
def test_links_devices_and_fifos_are_refused_with_the_member_named(tmp_path, kind):
    data = _tar([("a", b"a", 0o600), ("odd-member", None, 0o600, kind, "a")])
    with pytest.raises(UnpackError, match="odd-member.*not unpacked"):
        unpack(_blocks(data), str(tmp_path))
    assert not os.path.lexists(tmp_path / "odd-member")


def test_pax_headers_are_refused_rather_than_ignored(tmp_path):
    # a pax 'path' would rename the member: unpacking it under its ustar name would be wrong
    data = _tar([("n" * 120, b"x", 0o600)], fmt=tarfile.PAX_FORMAT)
    with pytest.raises(UnpackError, match="not unpacked"):
        unpack(_blocks(data), str(tmp_path))


def test_a_damaged_header_and_a_truncated_stream_are_tar_errors(tmp_path):
    data = bytearray(_tar([("a", b"a" * 5000, 0o600), ("b", b"b", 0o600)]))
    second = 512 + 5120                              # a's header and padded data
    damaged = bytes(data[:second + 1]) + b"X" + bytes(data[second + 2:])
    (tmp_path / "x1").mkdir()
    with pytest.raises(TarError, match="checksum"):
        unpack(_blocks(damaged), str(tmp_path / "x1"))
    (tmp_path / "x2").mkdir()
    with pytest.raises(TarError, match="ends inside a"):
        unpack(_blocks(bytes(data[:3000])), str(tmp_path / "x2"))


def test_a_decoding_error_is_raised_unchanged_and_stops_the_unpack(tmp_path):
    data = _tar([("a", b"a" * 50_000, 0o600), ("b", b"b" * 50_000, 0o600)])

    def damaged():
        yield data[:30_000]
        raise CorruptObject("blob 00ff", "content does not match its id")

    with pytest.raises(CorruptObject, match="does not match"):
        unpack(damaged(), str(tmp_path))
    assert not os.path.exists(tmp_path / "b")


def test_a_missing_target_directory_is_an_os_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        unpack(_blocks(_tar([("a", b"a", 0o600)])), str(tmp_path / "nope"))
    assert "nope" in str(exc.value)


def test_a_directory_member_carrying_data_is_refused(tmp_path):
    good = _tar([("d", None, 0o700)])
    header = bytearray(good[:512])
    header[124:136] = b"%011o\0" % 600             # size 600 on a directory
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    data = bytes(header) + b"x" * 1024 + bytes(1024)
    with pytest.raises(UnpackError, match="carrying data"):
        unpack(_blocks(data), str(tmp_path))
