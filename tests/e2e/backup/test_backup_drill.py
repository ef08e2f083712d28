"""Restore drills (R-BAK-5): verification, RTO/RPO verdicts, reports, refusals."""
import json
import os

import pytest

from tests.harness.backup import BackupCli
from tests.harness.backup import write as _write


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _write(path, data)

pytestmark = pytest.mark.e2e


@pytest.fixture
def drilled(tmp_path):
    cli = BackupCli(tmp_path)
    src = tmp_path / "src"
    for i in range(30):
        write(src / f"d{i % 3}" / f"f{i:02d}.bin", os.urandom(30_000 + i))
    cli.backup(src)
    return cli, src


def _packs(cli):
    """Pack files by size, largest first (data packs are large, tree packs tiny)."""
    packs = [os.path.join(dp, f) for dp, _d, fs in os.walk(os.path.join(cli.repo, "data"))
             for f in fs]
    return sorted(packs, key=os.path.getsize, reverse=True)


def _flip(path, offset):
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))


def _drill(cli, *args, extra_config=""):
    if extra_config:
        with open(cli.config, "a") as fh:
            fh.write(extra_config)
    return cli("drill", *args, "--json")


def test_a_full_drill_passes_writes_reports_and_an_audit_entry(drilled, opskit):
    cli, _src = drilled
    run = _drill(cli, "--all")
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["passed"] and report["verdict"] == "PASS"
    assert report["files_verified"] == report["files_total"] == 30
    assert report["bytes_verified"] == report["bytes_total"] > 900_000
    assert json.load(open(report["report_json"]))["snapshot"] == report["snapshot"]
    md = open(report["report_md"]).read()
    assert "R-BAK-5" in md and "PASS" in md and report["snapshot"][:12] in md
    assert oct(os.stat(report["report_json"]).st_mode & 0o777) == "0o600"
    audit = json.loads(opskit("audit", "show", "--command", "backup drill", "--json").stdout)
    assert audit[-1]["details"]["drill"]["passed"] is True
    history = cli("drill", "--history", "--json")
    assert [d["snapshot"] for d in json.loads(history.stdout)] == [report["snapshot"]]


def test_a_sample_extrapolates_the_full_restore_time(drilled):
    cli, _src = drilled
    report = json.loads(_drill(cli, "--sample", "20", "--seed", "3").stdout)
    assert report["files_verified"] == 6 and report["sample_pct"] == 20
    assert report["full_restore_estimate_s"] >= report["restore_seconds"]


def test_damaged_data_fails_the_drill_naming_the_file(drilled):
    cli, src = drilled
    data_packs = [p for p in _packs(cli) if os.path.getsize(p) > 100_000]   # tree packs are tiny
    assert data_packs
    for pack in data_packs:                 # damage file content, not the directory trees
        _flip(pack, 100)
    run = _drill(cli, "--all")
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert not report["passed"] and report["failures"]
    assert any(str(src) in f["path"] for f in report["failures"])
    assert "failed verification" in report["verdict"]


def test_a_missing_pack_fails_the_drill_naming_the_files(drilled):
    cli, src = drilled
    victim = _packs(cli)[0]                  # a data pack
    os.unlink(victim)
    run = _drill(cli, "--all")
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert report["failures"] and all(str(src) in f["path"] for f in report["failures"])
    assert any("not found" in f["problem"] for f in report["failures"])
    history = json.loads(cli("drill", "--history", "--json").stdout)
    assert history[-1]["verdict"].startswith("FAIL") and history[-1]["failures"]


def test_unreadable_trees_fail_the_drill_instead_of_crashing(drilled):
    cli, _src = drilled
    for pack in [p for p in _packs(cli) if os.path.getsize(p) <= 100_000]:   # the tree packs
        _flip(pack, 20)
    run = _drill(cli, "--all")
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert not report["passed"] and report["failures"][0]["path"] == "(snapshot)"


@pytest.mark.parametrize("setting,word", [("rto_minutes: 0.0000001", "RTO"),
                                          ("rpo_hours: 0.0000001", "RPO")])
def test_missed_objectives_fail_the_drill(drilled, setting, word):
    cli, _src = drilled
    run = _drill(cli, "--all", extra_config=f"  drill:\n    {setting}\n")
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert report["verified"] and not report["passed"] and word in report["verdict"]


def test_compare_source_notes_changes_and_catches_silent_ones(drilled):
    cli, src = drilled
    changed = src / "d0" / "f00.bin"
    changed.write_bytes(b"edited after the snapshot")
    silent = src / "d1" / "f01.bin"
    st = os.stat(silent)
    data = bytearray(silent.read_bytes())
    data[0] ^= 1
    silent.write_bytes(bytes(data))
    os.utime(silent, ns=(st.st_atime_ns, st.st_mtime_ns))     # same size, same mtime
    report = json.loads(_drill(cli, "--all", "--compare-source").stdout)
    assert {c["path"] for c in report["changed_since_snapshot"]} == {str(changed)}
    assert [f["path"] for f in report["failures"]] == [str(silent)]
    assert not report["passed"]


def test_drill_refuses_the_live_source_and_a_non_empty_target(drilled, tmp_path):
    cli, src = drilled
    run = cli("drill", "--target", src)
    assert run.exit_code == 2 and "live source" in run.stderr
    busy = tmp_path / "busy"
    write(busy / "keep.txt", b"mine")
    run = cli("drill", "--target", busy)
    assert run.exit_code == 2 and "not an empty directory" in run.stderr
    assert (busy / "keep.txt").read_bytes() == b"mine"


def test_retention_floor_keeps_the_newest_drill_verified_snapshot(drilled):
    cli, src = drilled
    first = json.loads(cli("snapshots", "--json").stdout)[0]["id"]
    assert _drill(cli, "--snapshot", first[:8], "--all").exit_code == 0
    write(src / "new.bin", b"new")
    cli.backup(src)
    cli.backup(src)
    with open(cli.config, "a") as fh:
        fh.write("  retention:\n    floor_days: 0\n"
                 "incidents:\n  high_risk_operations: []\n")   # R-SEC-2 tested elsewhere
    run = cli("forget", "--keep-last", "1", "--json")
    assert run.exit_code == 0, run.output
    kept = {s["id"] for s in json.loads(cli("snapshots", "--json").stdout)}
    assert first in kept and len(kept) == 2
