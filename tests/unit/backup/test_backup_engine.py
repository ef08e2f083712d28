"""The repository layer and the engines, driven through their Python APIs on tmp dirs."""
from __future__ import annotations

import datetime as dt
import os
import socket
import stat
import subprocess

import pytest

from opskit.backup import crypto
from opskit.backup.archiver import Archiver
from opskit.backup.backends import LocalBackend
from opskit.backup.checker import Checker
from opskit.backup.locks import RepoLock, list_locks, remove_locks
from opskit.backup.pack import BLOB_DATA
from opskit.backup.repository import CorruptObject, Repository, RepositoryError, WrongPassphrase
from opskit.backup.restorer import Restorer
from opskit.core.errors import LockHeldError, UsageError
from tests.harness.backup import (CHUNK_AVG, FAST_KDF_N, assert_same_tree, engine_repo,
                                  files_under, flip_byte, make_tree, open_repo, restored_path)


@pytest.fixture
def repo_path(tmp_path):
    path = tmp_path / "repo"
    engine_repo(path)
    return path


# --- init / open ---------------------------------------------------------------------------
def test_init_layout_config_and_private_modes(repo_path):
    repo = open_repo(repo_path)
    assert (repo.config.chunk_min, repo.config.chunk_avg, repo.config.chunk_max) == \
        (CHUNK_AVG // 2, CHUNK_AVG, CHUNK_AVG * 4)
    assert len(repo.config.id) == 32
    for d in ("data", "index", "snapshots", "keys", "locks"):
        assert stat.S_IMODE(os.stat(repo_path / d).st_mode) == 0o700, d
    for f in files_under(repo_path):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    (key,) = os.listdir(repo_path / "keys")
    assert key == crypto.object_id((repo_path / "keys" / key).read_bytes())


def test_init_refuses_an_existing_repository(repo_path):
    with pytest.raises(RepositoryError, match="already exists"):
        Repository.init(LocalBackend(str(repo_path)), b"other", kdf_n=FAST_KDF_N)


def test_open_wrong_passphrase_and_missing_repository(tmp_path, repo_path):
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        Repository.open(LocalBackend(str(repo_path)), b"not it")
    with pytest.raises(RepositoryError) as info:
        Repository.open(LocalBackend(str(tmp_path / "nowhere")), b"x")
    assert "opskit backup init" in (info.value.hint or "")


def test_stored_objects_reveal_no_content_or_names(tmp_path, repo_path):
    marker = b"PATIENT-CLAIM-4711-" * 50
    src = tmp_path / "src"
    src.mkdir()
    (src / "claims-of-patient-4711.csv").write_bytes(marker)
    repo = open_repo(repo_path)
    Archiver(repo, workers=1).run([str(src)])
    for f in files_under(repo_path):
        blob = open(f, "rb").read()
        assert b"PATIENT-CLAIM" not in blob and b"patient-4711" not in blob, f


# --- blobs, index, crash repair --------------------------------------------------------------
def test_blob_writer_dedups_and_index_survives_reopen(repo_path):
    repo = open_repo(repo_path)
    writer = repo.blob_writer(2)
    chunks = [os.urandom(5000) for _ in range(20)]
    ids = [crypto.blob_id(repo.keys.id_key, c) for c in chunks]
    assert all(writer.add(BLOB_DATA, i, c) for i, c in zip(ids, chunks))
    assert not any(writer.add(BLOB_DATA, i, c) for i, c in zip(ids, chunks))
    assert writer.blobs_new == 20 and writer.bytes_new_raw == 100_000
    index_id = writer.finish()
    assert os.listdir(repo_path / "index") == [index_id]
    again = open_repo(repo_path)
    assert all(again.read_blob(i) == c for i, c in zip(ids, chunks))
    w2 = again.blob_writer(1)
    assert not w2.add(BLOB_DATA, ids[0], chunks[0])   # known from the index: not stored again
    assert w2.finish() is None


def test_packs_without_index_are_reindexed_and_reused(repo_path):
    """A crash between writing packs and writing their index (write order step 1 -> 2)."""
    repo = open_repo(repo_path)
    repo.pack_size = 20_000
    writer = repo.blob_writer(1)
    chunks = [os.urandom(6000) for _ in range(10)]
    ids = [crypto.blob_id(repo.keys.id_key, c) for c in chunks]
    for i, c in zip(ids, chunks):
        writer.add(BLOB_DATA, i, c)
    index_id = writer.finish()
    packs = sorted(writer.new_packs)
    assert len(packs) >= 3
    os.unlink(repo_path / "index" / index_id)          # as if killed before the index
    report = Checker(open_repo(repo_path)).run()
    assert report.ok and len(report.warnings) == len(packs)
    fresh = open_repo(repo_path, index=False)
    assert sorted(fresh.load_index()) == packs
    assert len(os.listdir(repo_path / "index")) == 1    # the repair wrote an index
    assert all(fresh.read_blob(i) == c for i, c in zip(ids, chunks))
    assert open_repo(repo_path, index=False).load_index() == []   # nothing left to repair
    assert Checker(open_repo(repo_path)).run(read_data_fraction=1.0).ok


def test_unusable_leftover_pack_is_skipped_by_repair(repo_path):
    repo = open_repo(repo_path)
    repo.backend.put("data/ab/" + "ab" * 32, b"half a pack, no trailer")
    assert open_repo(repo_path, index=False).load_index() == []


def test_read_blob_detects_damage(repo_path):
    repo = open_repo(repo_path)
    writer = repo.blob_writer(1)
    data = os.urandom(3000)
    bid = crypto.blob_id(repo.keys.id_key, data)
    writer.add(BLOB_DATA, bid, data)
    writer.finish()
    (pack,) = files_under(repo_path / "data")
    flip_byte(pack, 100)
    with pytest.raises(CorruptObject) as info:
        open_repo(repo_path).read_blob(bid)
    assert os.path.basename(pack) in str(info.value)
    with pytest.raises(CorruptObject, match="not in the index"):
        open_repo(repo_path).read_blob(os.urandom(32))


# --- snapshots -------------------------------------------------------------------------------
def test_snapshot_round_trip_resolve_and_damage(repo_path):
    repo = open_repo(repo_path)
    with pytest.raises(UsageError, match="no snapshots"):
        repo.resolve_snapshot("latest")
    sids = [repo.save_snapshot({"time": f"2026-01-0{i}T00:00:00Z", "tree": "00" * 32, "n": i})
            for i in range(1, 4)]
    snaps = repo.snapshots()
    assert [s["n"] for s in snaps] == [1, 2, 3] and [s["id"] for s in snaps] == sids
    assert repo.resolve_snapshot("latest")["id"] == sids[2]
    assert repo.resolve_snapshot(sids[0][:4].upper())["id"] == sids[0]
    assert repo.resolve_snapshot(sids[1])["id"] == sids[1]
    for bad in ("abc", "zzzz", "0000000000000000000000"):
        if any(s.startswith(bad) for s in sids):
            continue
        with pytest.raises(UsageError):
            repo.resolve_snapshot(bad)
    flip_byte(repo_path / "snapshots" / sids[1], 10)
    with pytest.raises(CorruptObject) as info:
        repo.load_snapshot(sids[1])
    assert info.value.name == f"snapshots/{sids[1]}"


def test_ambiguous_and_malformed_refs_are_refused(repo_path):
    repo = open_repo(repo_path, index=False)
    snaps = [{"id": "abcd" + "1" * 60, "time": "1"}, {"id": "abcd" + "2" * 60, "time": "2"},
             {"id": "ffff" + "0" * 60, "time": "3"}]
    with pytest.raises(UsageError, match="ambiguous"):
        repo.resolve_snapshot("abcd", snaps)
    assert repo.resolve_snapshot("abcd2", snaps) is snaps[1]
    assert repo.resolve_snapshot("FFFF", snaps) is snaps[2]
    with pytest.raises(UsageError, match="at least 4"):
        repo.resolve_snapshot("abc", snaps)
    with pytest.raises(UsageError, match="at least 4"):
        repo.resolve_snapshot("../x", snaps)
    with pytest.raises(UsageError, match="not found"):
        repo.resolve_snapshot("0123", snaps)


# --- archiver / restorer / checker in-process ----------------------------------------------------
def test_engine_round_trip_incremental_and_check(tmp_path, repo_path):
    src = make_tree(tmp_path / "src", big_bytes=2 << 20)
    target = tmp_path / "restore"
    target.mkdir()       # before the backup, so no directory above src changes between runs
    repo = open_repo(repo_path)
    arch = Archiver(repo, workers=2)
    sid, snap = arch.run([os.fsdecode(src)])
    assert arch.stats.errors == [] and arch.stats.files_new == arch.stats.files > 25
    stats = Restorer(open_repo(repo_path), str(target), workers=2).run(snap)
    assert stats.errors == []
    assert_same_tree(src, restored_path(target, src))

    # second run with the first as parent: nothing read, nothing added
    repo2 = open_repo(repo_path)
    arch2 = Archiver(repo2, workers=2)
    snap["id"] = sid
    sid2, snap2 = arch2.run([os.fsdecode(src)], parent=snap)
    assert arch2.stats.files_unmodified == arch2.stats.files == arch.stats.files
    assert arch2.stats.blobs_new == 0 and arch2.stats.bytes_added == 0
    assert snap2["tree"] == snap["tree"] and snap2["parent"] == sid

    report = Checker(open_repo(repo_path)).run(read_data_fraction=1.0)
    assert report.ok, report.errors
    assert report.snapshots == 2 and report.packs_read == report.packs > 0


def test_every_worker_writes_the_index_file_naming_its_packs(tmp_path, repo_path):
    """Index shards (#23): each worker that wrote packs writes one index file
    for them; a fresh reader finds every pack indexed and every blob in it."""
    src = make_tree(tmp_path / "src", big_bytes=6 << 20)
    repo = open_repo(repo_path)
    arch = Archiver(repo, workers=2)
    _sid, snap = arch.run([os.fsdecode(src)])
    names = os.listdir(repo_path / "index")
    fresh = open_repo(repo_path)
    assert fresh.load_index(repair=False) == []         # no pack left unindexed
    per_file = [fresh.read_index_file(f"index/{n}") for n in names]
    packs = [p for f in per_file for p in f]
    on_disk = {n for d in os.listdir(repo_path / "data") for n in os.listdir(repo_path / "data" / d)}
    assert len(packs) == len(set(packs)) and set(packs) == on_disk     # each once, all of them
    assert len(names) >= 2                               # the parent's trees + >= 1 worker's
    assert sum(len(e) for f in per_file for e in f.values()) >= arch.stats.blobs_new
    report = Checker(fresh).run(read_data_fraction=1.0)
    assert report.ok and report.warnings == [], (report.errors, report.warnings)
    out = tmp_path / "out"
    assert Restorer(open_repo(repo_path), str(out)).run(snap).errors == []
    assert_same_tree(src, restored_path(out, src))


def test_big_file_spans_many_chunks(tmp_path, repo_path):
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 << 20)
    (src / "big").write_bytes(data)
    repo = open_repo(repo_path)
    _sid, snap = Archiver(repo, workers=1).run([str(src)])
    tree = repo.load_tree(bytes.fromhex(snap["tree"]))
    for part in os.fsencode(str(src)).split(b"/")[1:]:
        node = next(n for n in tree["nodes"] if n["name"].encode() == part)
        tree = repo.load_tree(bytes.fromhex(node["subtree"]))
    (node,) = tree["nodes"]
    assert node["size"] == len(data)
    assert len(node["content"]) >= 12          # 3 MiB / max 256 KiB
    blobs = [repo.read_blob(bytes.fromhex(h)) for h in node["content"]]
    assert b"".join(blobs) == data
    assert max(map(len, blobs)) <= 4 * CHUNK_AVG


def test_a_vanished_root_is_listed_and_the_rest_is_saved(tmp_path, repo_path):
    src = tmp_path / "src"
    (src / "ok").mkdir(parents=True)
    (src / "ok" / "f").write_bytes(b"fine")
    repo = open_repo(repo_path)
    arch = Archiver(repo, workers=1)
    missing = tmp_path / "gone"
    _sid, snap = arch.run([str(src), str(missing)])
    assert [e["path"] for e in arch.stats.errors] == [str(missing)]
    assert arch.stats.files == 1
    out = tmp_path / "out"
    assert Restorer(open_repo(repo_path), str(out)).run(snap).errors == []
    with open(restored_path(out, src / "ok" / "f"), "rb") as fh:
        assert fh.read() == b"fine"
    assert not os.path.lexists(restored_path(out, missing))


# --- locks -------------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _fake_lock(repo, *, exclusive: bool, host: str, pid: int, age_s: float = 0) -> str:
    t = _iso(dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=age_s))
    return repo.save_file("locks", "lock", {"exclusive": exclusive, "host": host, "pid": pid,
                                            "user": "someone", "time": t, "refreshed": t})


def test_shared_locks_coexist_exclusive_conflicts(repo_path):
    a, b = open_repo(repo_path, index=False), open_repo(repo_path, index=False)
    with RepoLock(a):
        with RepoLock(b):
            assert len(list_locks(a, 3600)) == 2
        with pytest.raises(LockHeldError, match="shared lock"):
            RepoLock(b, exclusive=True).acquire()
    with RepoLock(a, exclusive=True):
        with pytest.raises(LockHeldError, match="exclusive lock"):
            RepoLock(b).acquire()
    assert list_locks(a, 3600) == []          # released, and failed attempts leave nothing


def test_stale_locks_are_recognised_and_removed(repo_path):
    repo = open_repo(repo_path, index=False)
    here = socket.gethostname()
    dead = _fake_lock(repo, exclusive=True, host=here, pid=_dead_pid())
    old = _fake_lock(repo, exclusive=True, host="elsewhere.example", pid=1, age_s=7200)
    live = _fake_lock(repo, exclusive=False, host="elsewhere.example", pid=1)
    mine = _fake_lock(repo, exclusive=False, host=here, pid=os.getpid())
    info = {l.id: l for l in list_locks(repo, 3600)}
    assert info[dead].stale and "gone" in info[dead].why_stale
    assert info[old].stale and "not refreshed" in info[old].why_stale
    assert not info[live].stale and not info[mine].stale
    with RepoLock(repo):             # stale exclusive locks do not block
        pass
    removed = {l.id for l in remove_locks(repo, all_locks=False, stale_after_s=3600)}
    assert removed == {dead, old}
    assert {l.id for l in list_locks(repo, 3600)} == {live, mine}
    assert {l.id for l in remove_locks(repo, all_locks=True, stale_after_s=3600)} == {live, mine}
    assert os.listdir(repo_path / "locks") == []
