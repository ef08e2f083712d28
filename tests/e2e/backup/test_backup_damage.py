"""A damaged or hostile repository never misleads (#28): no silent fallback to an
older snapshot, repair commands, replication that never outruns its packs."""
from __future__ import annotations

import json
import os

import pytest

from tests.harness.backup import flip_byte, restored_path
from tests.e2e.backup.test_backup_corruption import damaged, pristine  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


def _home(tmp_path) -> dict:
    return {"OPSKIT_HOME": str(tmp_path / "home")}


# --- item 1: a damaged newest snapshot ----------------------------------------------------
def test_restore_latest_with_a_damaged_newest_snapshot_fails_naming_it(damaged, tmp_path):
    cli, repo, p = damaged
    flip_byte(repo / "snapshots" / p["s2"], 200)
    target = tmp_path / "t"
    run = cli("restore", "latest", "--target", target, env=_home(tmp_path))
    assert run.exit_code == 1, run.output
    assert f"snapshots/{p['s2']}" in run.stderr and run.stderr.startswith("opskit: error:")
    assert not os.path.exists(restored_path(target, p["src"] / "a" / "A"))   # s1 not used


def test_restore_latest_of_an_intact_repository_still_works(damaged, tmp_path):
    cli, _repo, p = damaged
    run = cli("restore", "latest", "--target", tmp_path / "t", "--json", env=_home(tmp_path))
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["snapshot"] == p["s2"]


def test_restore_of_a_damaged_snapshot_by_id_names_it(damaged, tmp_path):
    cli, repo, p = damaged
    flip_byte(repo / "snapshots" / p["s2"], 200)
    run = cli("restore", p["s2"][:8], "--target", tmp_path / "t", env=_home(tmp_path))
    assert run.exit_code == 1, run.output
    assert f"snapshots/{p['s2']}" in run.stderr and "not found" not in run.stderr


@pytest.mark.parametrize("ref", ["latest", None])
def test_drill_with_a_damaged_newest_snapshot_fails(damaged, tmp_path, ref):
    cli, repo, p = damaged
    flip_byte(repo / "snapshots" / p["s2"], 200)
    args = ["drill", "--all"] + (["--snapshot", ref] if ref else [])
    run = cli(*args, "--json", env=_home(tmp_path))
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert report["passed"] is False and report["verdict"].startswith("FAIL")
    assert report["snapshot"] == p["s2"]
    assert any(f"snapshots/{p['s2']}" in f["problem"] for f in report["failures"])


def test_drill_of_an_intact_repository_passes(damaged, tmp_path):
    cli, _repo, p = damaged
    report = cli.json("drill", "--all", env=_home(tmp_path))
    assert report["passed"] is True and report["snapshot"] == p["s2"]


# --- item 9: errors name where the bad value came from, in one line ---------------------
@pytest.mark.parametrize("value, problem", [
    ("abc", "expected a duration such as"),
    ("6m", "'6m' would be minutes; write months as 'mo'"),   # core.durations grammar (#22)
])
def test_bad_keep_within_in_the_config_names_file_line_and_key(tmp_path, value, problem):
    from tests.harness.cli import run_opskit
    cfg = tmp_path / "opskit.yaml"
    cfg.write_text(f"backup:\n  repo: {tmp_path / 'repo'}\n  retention:\n    keep_last: 3\n"
                   f"    keep_within: {value}\n")
    run = run_opskit("--config", cfg, "backup", "forget", "--dry-run", env=_home(tmp_path))
    assert run.exit_code == 2, run.output
    first, *rest = run.stderr.splitlines()
    assert first.startswith(f"opskit: error: {cfg}:5: key 'backup.retention.keep_within': "
                            f"duration '{value}': {problem}"), run.stderr
    assert rest == ["hint: e.g. 30d, 2w, 6mo, 1y, 12h or 1y6mo"], run.stderr


@pytest.mark.parametrize("args, text", [
    (("backup", "forget", "--keep-last", "-1"), "'--keep-last': -1 is not in the range x>=0"),
    (("backup", "replicate", "--workers", "65"), "'--workers': 65 is not in the range 1<=x<=64"),
    (("backup", "check", "--read-data-subset", "120"), "'--read-data-subset'"),
    (("backup", "forget", "--keep-within", "3x"), "--keep-within: duration '3x'"),
    (("backup", "fget"), "No such command 'fget'"),
])
def test_bad_cli_values_give_one_error_line_not_a_usage_block(tmp_path, args, text):
    from tests.harness.cli import run_opskit
    run = run_opskit(*args, env=_home(tmp_path))
    assert run.exit_code == 2, run.output
    first, *rest = run.stderr.splitlines()
    assert first.startswith("opskit: error: ") and text in first, run.stderr
    assert all(line.startswith("hint: ") for line in rest), run.stderr
    assert "Usage:" not in run.output and run.stdout == ""


# --- item 3: repair index / repair snapshots -------------------------------------------------
def _same(a, b) -> bool:
    return open(a, "rb").read() == open(b, "rb").read()


def test_flipped_bit_in_an_index_file_is_named_then_repaired(damaged, tmp_path):
    cli, repo, p = damaged
    env = _home(tmp_path)
    index = sorted(os.listdir(repo / "index"))[0]
    flip_byte(repo / "index" / index, 30)
    for args in (("run", p["src"]), ("restore", "latest", "--target", tmp_path / "t0")):
        run = cli(*args, env=env)
        assert run.exit_code == 3, run.output
        assert f"index/{index}" in run.stderr and "repair index" in run.stderr
    report = cli.json("check", expect=1, env=env)
    (err,) = [e for e in report["errors"] if e["object"] == f"index/{index}"]
    assert "opskit backup repair index" in err["problem"]
    before = sorted(os.listdir(repo / "index"))
    dry = cli.json("repair", "index", "--dry-run", env=env)
    assert dry["damaged_index"][0]["object"] == f"index/{index}" and dry["written"] is None
    assert sorted(os.listdir(repo / "index")) == before             # --dry-run changes nothing
    done = cli.json("repair", "index", env=env)
    assert done["unreadable_packs"] == [] and set(done["removed"]) == {f"index/{n}" for n in before}
    assert os.listdir(repo / "index") == [done["written"]]
    report = cli.json("check", "--read-data", env=env)
    assert report["ok"] and report["warnings"] == []
    target = tmp_path / "t"
    assert cli("restore", "latest", "--target", target, env=env).exit_code == 0
    for rel in (("a", "A"), ("b", "B")):
        assert _same(restored_path(target, p["src"].joinpath(*rel)), p["src"].joinpath(*rel))


def test_lost_pack_repair_index_then_snapshots_then_drill(damaged, tmp_path):
    cli, repo, p = damaged
    env = _home(tmp_path)
    pack = p["packs"]["B"]
    flip_byte(repo / "data" / pack[:2] / pack, -2)           # trailer: header unreadable
    done = cli.json("repair", "index", expect=1, env=env)
    assert [u["object"] for u in done["unreadable_packs"]] == [f"data/{pack[:2]}/{pack}"]
    snaps_before = sorted(os.listdir(repo / "snapshots"))
    dry = cli.json("repair", "snapshots", "--dry-run", expect=1, env=env)
    (entry,) = dry["rewritten"]
    assert entry["snapshot"] == p["s2"] and entry["new"] is None
    assert [x.endswith("/b/B") for x in entry["lost"]] == [True]
    assert sorted(os.listdir(repo / "snapshots")) == snaps_before     # --dry-run: untouched
    rep = cli.json("repair", "snapshots", expect=1, env=env)
    new = rep["rewritten"][0]["new"]
    assert rep["intact"] == 1 and rep["dropped"] == []
    assert sorted(os.listdir(repo / "snapshots")) == sorted([p["s1"], new])
    report = cli.json("check", "--read-data", env=env)
    assert report["ok"], report["errors"]
    target = tmp_path / "t"
    run = cli("restore", "latest", "--target", target, "--json", env=env)
    assert run.exit_code == 0 and json.loads(run.stdout)["snapshot"] == new, run.output
    assert _same(restored_path(target, p["src"] / "a" / "A"), p["src"] / "a" / "A")
    assert not os.path.exists(restored_path(target, p["src"] / "b" / "B"))
    drill = cli.json("drill", "--all", env=env)
    assert drill["passed"] and drill["snapshot"] == new


def test_repair_of_an_intact_repository_changes_nothing(damaged, tmp_path):
    cli, repo, p = damaged
    env = _home(tmp_path)
    snaps = sorted(os.listdir(repo / "snapshots"))
    done = cli.json("repair", "index", env=env)
    assert done["damaged_index"] == [] and done["unreadable_packs"] == []
    rep = cli.json("repair", "snapshots", env=env)
    assert rep["intact"] == 2 and rep["rewritten"] == [] and rep["dropped"] == []
    assert sorted(os.listdir(repo / "snapshots")) == snaps
    assert cli.json("check", "--read-data", env=env)["ok"]


def test_repair_snapshots_drops_an_unreadable_snapshot_file(damaged, tmp_path):
    cli, repo, p = damaged
    env = _home(tmp_path)
    flip_byte(repo / "snapshots" / p["s2"], 200)
    rep = cli.json("repair", "snapshots", expect=1, env=env)
    assert [d["snapshot"] for d in rep["dropped"]] == [p["s2"]]
    assert os.listdir(repo / "snapshots") == [p["s1"]]
    run = cli("restore", "latest", "--target", tmp_path / "t", "--json", env=env)
    assert run.exit_code == 0 and json.loads(run.stdout)["snapshot"] == p["s1"], run.output
