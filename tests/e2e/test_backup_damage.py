"""A damaged or hostile repository never misleads (#28): no silent fallback to an
older snapshot, repair commands, replication that never outruns its packs."""
from __future__ import annotations

import json
import os

import pytest

from tests.backup_helpers import flip_byte, restored_path
from tests.e2e.test_backup_corruption import damaged, pristine  # noqa: F401 (fixtures)

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
