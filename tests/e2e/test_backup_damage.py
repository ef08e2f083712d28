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


# --- item 9: errors name where the bad value came from, in one line ---------------------
def test_bad_keep_within_in_the_config_names_file_line_and_key(tmp_path):
    from tests.harness.cli import run_opskit
    cfg = tmp_path / "opskit.yaml"
    cfg.write_text(f"backup:\n  repo: {tmp_path / 'repo'}\n  retention:\n    keep_last: 3\n"
                   "    keep_within: abc\n")
    run = run_opskit("--config", cfg, "backup", "forget", "--dry-run", env=_home(tmp_path))
    assert run.exit_code == 2, run.output
    assert run.stderr.splitlines() == [
        f"opskit: error: {cfg}:5: key 'backup.retention.keep_within': duration 'abc': "
        "expected e.g. 30d, 2w, 6m, 1y, 12h or 1y6m"]


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
