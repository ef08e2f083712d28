"""Damage in the repository is found and named: `check --read-data` names the
object and the snapshots that depend on it, restore never succeeds silently."""
from __future__ import annotations

import base64
import json
import os
import random
import shutil

import pytest

from tests.harness.backup import (BackupCli, files_under, find_node, flip_byte,
                                  open_repo, restored_path, write)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A repository with two snapshots: s1 = {a/A}, s2 = {a/A, b/B} (A's pack is shared)."""
    base = tmp_path_factory.mktemp("corruption")
    env = {"OPSKIT_HOME": str(base / "home")}
    cli = BackupCli(base)
    src = base / "src"
    (src / "a").mkdir(parents=True)
    rng = random.Random(42)
    write(src / "a" / "A", rng.randbytes(300_000))
    s1 = cli.backup(src, env=env)["snapshot"]
    (src / "b").mkdir()
    write(src / "b" / "B", rng.randbytes(300_000))
    s2 = cli.backup(src, env=env)["snapshot"]
    repo = open_repo(cli.repo)
    snaps = {s["id"]: s for s in repo.snapshots()}

    def pack_of(path, sid):
        node = find_node(repo, snaps[sid], path)
        blob = node.get("content", [None])[0] or node.get("subtree")
        return repo.index.lookup(bytes.fromhex(blob)).pack

    packs = {"A": pack_of(os.fsencode(src / "a" / "A"), s1),
             "B": pack_of(os.fsencode(src / "b" / "B"), s2),
             "tree-a": pack_of(os.fsencode(src / "a"), s1)}
    assert packs["A"] != packs["B"]
    assert repo.index.lookup(bytes.fromhex(
        find_node(repo, snaps[s2], os.fsencode(src / "a"))["subtree"])).pack == packs["tree-a"]
    return {"repo": cli.repo, "src": src, "s1": s1, "s2": s2, "packs": packs}


@pytest.fixture
def damaged(pristine, tmp_path):
    """A private copy of the pristine repository and a CLI pointed at it."""
    repo = tmp_path / "repo"
    shutil.copytree(pristine["repo"], repo)
    cli = BackupCli(tmp_path, init=False, repo=repo)
    return cli, repo, pristine


def _pack_path(repo, pack_id):
    return repo / "data" / pack_id[:2] / pack_id


def _check(cli, *args) -> dict:
    return cli.json("check", *args, expect=1)


def _errors_for(report, obj):
    return [e for e in report["errors"] if e["object"] == obj]


@pytest.mark.parametrize("offset", [0, 1000, -40, -2], ids=["first-byte", "blob", "header", "trailer"])
@pytest.mark.parametrize("which", ["A", "B"])
def test_flipped_byte_in_a_data_pack_names_pack_and_snapshots(damaged, which, offset):
    cli, repo, p = damaged
    pack = p["packs"][which]
    flip_byte(_pack_path(repo, pack), offset)
    report = _check(cli, "--read-data")
    assert report["ok"] is False
    (err,) = _errors_for(report, f"data/{pack[:2]}/{pack}")
    users = [p["s1"], p["s2"]] if which == "A" else [p["s2"]]
    assert err["snapshots"] == sorted(s[:12] for s in users)
    assert "damaged" in err["problem"]
    assert len(report["errors"]) == 1, report["errors"]


def test_check_text_output_names_the_pack_and_snapshots(damaged):
    cli, repo, p = damaged
    pack = p["packs"]["A"]
    flip_byte(_pack_path(repo, pack), 5000)
    run = cli("check", "--read-data")
    assert run.exit_code == 1
    line = next(l for l in run.stdout.splitlines() if pack in l)
    assert line.startswith("error") and f"data/{pack[:2]}/{pack}" in line
    assert p["s1"][:12] in line and p["s2"][:12] in line
    assert "1 errors found" in run.stdout


def test_flipped_byte_in_a_tree_pack(damaged):
    cli, repo, p = damaged
    pack = p["packs"]["tree-a"]
    flip_byte(_pack_path(repo, pack), 3)
    report = _check(cli, "--read-data")
    errs = _errors_for(report, f"data/{pack[:2]}/{pack}")
    assert errs and {p["s1"][:12], p["s2"][:12]} <= {s for e in errs for s in e["snapshots"]}


def test_flipped_byte_in_the_index_is_named(damaged):
    cli, repo, p = damaged
    index = sorted(os.listdir(repo / "index"))[0]
    flip_byte(repo / "index" / index, 30)
    report = _check(cli, "--read-data")
    (err,) = _errors_for(report, f"index/{index}")
    assert "damaged" in err["problem"]


def test_flipped_byte_in_a_snapshot_is_named(damaged):
    cli, repo, p = damaged
    flip_byte(repo / "snapshots" / p["s1"], 40)
    report = _check(cli, "--read-data")
    assert [e["object"] for e in report["errors"]] == [f"snapshots/{p['s1']}"]
    assert report["snapshots"] == 1          # the other snapshot still checks out


def test_one_damaged_snapshot_does_not_block_backups_or_other_restores(damaged, tmp_path):
    """Regression: Repository.snapshots() raised on the first damaged snapshot file."""
    cli, repo, p = damaged
    flip_byte(repo / "snapshots" / p["s1"], 40)
    target = tmp_path / "t"
    run = cli("restore", p["s2"], "--target", target)
    assert run.exit_code == 0, run.output
    restored = restored_path(target, p["src"] / "b" / "B")
    assert open(restored, "rb").read() == open(p["src"] / "b" / "B", "rb").read()
    run = cli("run", p["src"])
    assert run.exit_code in (0, 1), run.output


def test_damaged_config_is_named(damaged):
    """A fitting passphrase with a damaged config must name the config, not blame the passphrase."""
    cli, repo, _p = damaged
    flip_byte(repo / "config", 20)
    run = cli("check", "--read-data")
    assert run.exit_code == 3, run.output
    assert run.stderr.startswith("opskit: error: config:")
    assert "wrong passphrase" not in run.stderr


def test_damaged_key_slot_is_named_not_blamed_on_the_passphrase(damaged):
    """Regression: a damaged keys/<id> was reported as a wrong passphrase."""
    cli, repo, _p = damaged
    (key,) = os.listdir(repo / "keys")
    path = repo / "keys" / key
    slot = json.loads(path.read_bytes())
    wrapped = bytearray(base64.b64decode(slot["wrapped"]))
    wrapped[30] ^= 1
    slot["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    path.write_text(json.dumps(slot, indent=1))
    run = cli("check", "--read-data")
    assert run.exit_code == 3, run.output      # nothing can be checked without a key
    assert f"keys/{key}" in run.stderr
    assert "wrong passphrase" not in run.stderr


def test_missing_pack_is_found_by_the_structure_check(damaged):
    cli, repo, p = damaged
    pack = p["packs"]["B"]
    os.unlink(_pack_path(repo, pack))
    report = _check(cli)
    (err,) = _errors_for(report, f"data/{pack[:2]}/{pack}")
    assert "missing" in err["problem"] and err["snapshots"] == [p["s2"][:12]]


def test_truncated_pack_is_found_by_the_structure_check(damaged):
    """Regression: the structure check never compared pack sizes with the index."""
    cli, repo, p = damaged
    pack = p["packs"]["B"]
    path = _pack_path(repo, pack)
    os.truncate(path, os.path.getsize(path) // 2)
    report = _check(cli)
    assert _errors_for(report, f"data/{pack[:2]}/{pack}")


def test_restore_from_a_damaged_pack_reports_the_file(damaged, tmp_path):
    cli, repo, p = damaged
    flip_byte(_pack_path(repo, p["packs"]["A"]), 2000)
    target = tmp_path / "t"
    run = cli("restore", p["s2"], "--target", target, "--json")
    assert run.exit_code == 1, run.output
    data = json.loads(run.stdout)
    bad = restored_path(target, p["src"] / "a" / "A")
    assert [e["path"] for e in data["errors"]] == [os.fsdecode(bad)]
    good = restored_path(target, p["src"] / "b" / "B")
    assert open(good, "rb").read() == open(p["src"] / "b" / "B", "rb").read()


def test_check_of_an_intact_repository_passes(damaged):
    cli, _repo, p = damaged
    report = cli.json("check", "--read-data")
    assert report["ok"] is True and report["errors"] == [] and report["warnings"] == []
    n_packs = len(files_under(os.path.join(cli.repo, "data")))
    assert report["snapshots"] == 2 and report["packs_read"] == report["packs"] == n_packs
    assert report["blobs_read"] > 0 and report["bytes_read"] > 600_000
    half = cli.json("check", "--read-data-subset", "50")
    assert half["ok"] and half["packs_read"] == round(n_packs / 2)
    plain = cli.json("check")
    assert plain["ok"] and plain["packs_read"] == 0 and plain["trees"] > 0
