"""The WAL archive (#24 item 2) and the WAL chain (#24 item 3) on a real local
repository: idempotent pushes, refused conflicts, fetches, write-only hosts,
damage, gaps across timelines and retention."""
import os

import pytest

from opskit.backup.db.wal import WalArchive, WalConflict, WalError
from opskit.backup.db.walchain import Chain, Segments, parse_history, parse_lsn
from opskit.backup.repository import CorruptObject
from tests.harness.backup import engine_repo

SEG = 1 << 20          # 1 MiB segments, as the PITR fixture's initdb makes them


@pytest.fixture
def repo(tmp_path):
    return engine_repo(tmp_path / "repo")


def seg_file(folder, name, fill=b"x", size=4096):
    path = os.path.join(folder, name)
    with open(path, "wb") as fh:
        fh.write(fill * size)
    return path


def test_push_is_idempotent_and_refuses_other_content(repo, tmp_path):
    wal = WalArchive(repo, "main")
    path = seg_file(tmp_path, "000000010000000000000003")
    assert wal.push(path).stored is True
    assert wal.push(path).stored is False          # a retry after a crash: success
    seg_file(tmp_path, "000000010000000000000003", fill=b"y")
    with pytest.raises(WalConflict) as exc:
        wal.push(path)
    assert exc.value.exit_code == 1 and "different content" in str(exc.value)
    out = tmp_path / "fetched"
    assert wal.fetch("000000010000000000000003", str(out)) == 4096
    assert out.read_bytes() == b"x" * 4096          # the first content was kept
    assert wal.fetch("000000010000000000000004", str(out)) is None


def test_stored_object_is_encrypted_and_bound_to_its_name(repo, tmp_path):
    wal = WalArchive(repo, "main")
    secret = b"insured person 4711 diagnosis " * 100
    path = tmp_path / "000000010000000000000005"
    path.write_bytes(secret)
    wal.push(str(path))
    stored = repo.backend.get("wal/main/000000010000000000000005")
    assert b"insured person" not in stored
    # a segment copied over another name does not pass as that one
    repo.backend.put("wal/main/000000010000000000000006", stored)
    with pytest.raises(CorruptObject):
        wal.read("000000010000000000000006")
    # a flipped byte is found
    bad = bytearray(stored)
    bad[-5] ^= 1
    repo.backend.put("wal/main/000000010000000000000005", bytes(bad))
    with pytest.raises(CorruptObject):
        wal.fetch("000000010000000000000005", str(tmp_path / "out"))


def test_write_only_host_pushes_and_compares_but_cannot_read(repo, tmp_path):
    from opskit.backup.backends import LocalBackend
    from opskit.backup.keyslots import add_slot
    from opskit.backup.repository import Repository
    add_slot(repo, b"write only pass", write_only=True)
    wo = Repository.open(LocalBackend(repo.backend.location), b"write only pass")
    assert wo.keys.write_only
    path = seg_file(tmp_path, "000000010000000000000007")
    assert WalArchive(wo, "main").push(path).stored
    assert not WalArchive(wo, "main").push(path).stored
    with pytest.raises(Exception):
        WalArchive(wo, "main").read("000000010000000000000007")
    assert WalArchive(repo, "main").read("000000010000000000000007") == b"x" * 4096


def test_names_and_clusters_are_checked(repo, tmp_path):
    with pytest.raises(WalError):
        WalArchive(repo, "../etc")
    with pytest.raises(WalError):
        WalArchive(repo, "main").push(seg_file(tmp_path, "postgresql.conf"))
    with pytest.raises(WalError):
        WalArchive(repo, "main").push(str(tmp_path / "000000010000000000000009"))  # absent


def test_segment_names_follow_postgresql():
    seg = Segments(16 << 20)
    assert seg.name(1, seg.segno(parse_lsn("0/3000028"))) == "000000010000000000000003"
    assert seg.name(2, seg.segno(parse_lsn("1/0"))) == "000000020000000100000000"
    small = Segments(SEG)
    assert small.name(1, small.segno(parse_lsn("1/2300000"))) == "000000010000000100000023"
    assert small.parse("000000010000000100000023") == (1, 0x1000 + 0x23)
    assert parse_history("1\t0/5000000\tno recovery target specified\n") == [(1, 0x5000000)]
    with pytest.raises(ValueError):
        parse_lsn("zz/1")


def _base(sid, start, stop, tli=1, time="2026-01-01T00:00:00Z"):
    return {"id": sid, "time": time, "kind": "pg-base",
            "pg_base": {"cluster": "main", "wal_segment_size": SEG, "start_lsn": start,
                        "stop_lsn": stop, "timeline": tli, "start_wal": ""}}


def _push(repo, tmp_path, *names):
    wal = WalArchive(repo, "main")
    for n in names:
        wal.push(seg_file(tmp_path, n, fill=n[-1:].encode()))
    return wal


def test_chain_complete_and_first_gap_named(repo, tmp_path):
    wal = _push(repo, tmp_path, *(f"0000000100000000000000{i:02X}" for i in range(2, 9)))
    base = _base("aaaa" * 16, "0/200028", "0/200100")
    rep = Chain(wal, [base]).check()
    assert rep.ok and rep.segments == 7 and rep.newest_wal == "000000010000000000000008"
    wal.delete("000000010000000000000005")
    rep = Chain(wal, [base]).check()
    assert not rep.ok and rep.missing == ["000000010000000000000005"]
    assert "000000010000000000000005" in rep.problems[0]


def test_chain_needs_the_stop_segment_of_a_base_backup(repo, tmp_path):
    wal = _push(repo, tmp_path, "000000010000000000000002")
    rep = Chain(wal, [_base("bbbb" * 16, "0/200028", "0/300100")]).check()
    assert rep.missing == ["000000010000000000000003"]


def test_chain_follows_a_timeline_switch(repo, tmp_path):
    # timeline 2 left timeline 1 at 0/480000: 1 up to segment 3, then 2 from segment 4
    names = [f"0000000100000000000000{i:02X}" for i in range(2, 7)] + \
            [f"0000000200000000000000{i:02X}" for i in range(4, 8)]
    wal = _push(repo, tmp_path, *names)
    hist = tmp_path / "00000002.history"
    hist.write_text("1\t0/480000\tno recovery target specified\n")
    wal.push(str(hist))
    base = _base("cccc" * 16, "0/200028", "0/200100")
    rep = Chain(wal, [base]).check()
    assert rep.ok and rep.timeline == 2 and rep.newest_wal == "000000020000000000000007"
    assert rep.segments == 2 + 4            # 1: segments 2, 3; 2: segments 4..7
    wal.delete("000000020000000000000005")
    assert Chain(wal, [base]).check().missing == ["000000020000000000000005"]
    # the old timeline's segment 5 does not stand in for the new timeline's
    wal.delete("00000002.history")
    rep = Chain(wal, [base]).check()
    assert "00000002.history" in rep.missing and not rep.ok


def test_retention_keeps_what_the_oldest_kept_base_needs(repo, tmp_path):
    names = [f"0000000100000000000000{i:02X}" for i in range(1, 9)]
    wal = _push(repo, tmp_path, *names)
    bk = tmp_path / "000000010000000000000004.00000028.backup"
    bk.write_text("START WAL LOCATION: 0/4000028\n")
    wal.push(str(bk))
    old, new = _base("dddd" * 16, "0/400028", "0/400100"), \
        _base("eeee" * 16, "0/600028", "0/600100", time="2026-02-01T00:00:00Z")
    assert Chain(wal, [new, old]).removable() == names[:3]
    assert Chain(wal, []).removable() == []         # no base backup: keep everything
    assert "000000010000000000000004.00000028.backup" in Chain(wal, [new]).removable()


def test_forget_wal_removes_only_what_no_kept_base_needs(repo, tmp_path):
    from opskit.backup.db.walchain import forget_wal
    names = [f"0000000100000000000000{i:02X}" for i in range(1, 7)]
    _push(repo, tmp_path, *names)
    hist = tmp_path / "00000002.history"
    hist.write_text("1\t0/100000\tx\n")
    WalArchive(repo, "main").push(str(hist))
    kept = [_base("ffff" * 16, "0/400028", "0/400100")]
    removed, locked = forget_wal(repo, kept, dry_run=True)
    assert removed == [f"wal/main/{n}" for n in names[:3]] and locked == []
    assert len(WalArchive(repo, "main").names()) == 7          # dry run: nothing gone
    forget_wal(repo, kept, dry_run=False)
    assert sorted(WalArchive(repo, "main").names()) == sorted(["00000002.history"] + names[3:])
    assert forget_wal(repo, [], dry_run=False) == ([], [])     # no base backup: keep all
