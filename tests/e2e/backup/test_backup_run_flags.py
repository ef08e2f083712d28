"""`backup run` has --dry-run, -q and -v as a restic user expects (issue #22 item 2)."""
from __future__ import annotations

import json
import os

import pytest

from tests.harness.backup import BackupCli, make_tree, write

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(tmp_path):
    return BackupCli(tmp_path)


def test_dry_run_counts_what_would_be_read_and_writes_nothing(cli, tmp_path):
    make_tree(tmp_path / "src")
    src = tmp_path / "src"
    n_files = sum(1 for d, _, files in os.walk(src) for f in files
                  if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f)))
    run = cli("run", src, "--dry-run", "--json")
    assert run.exit_code == 0, run.output
    plan = json.loads(run.stdout)
    assert plan["dry_run"] and len(plan["new"]) == n_files and plan["unchanged"] == 0
    assert json.loads(cli("snapshots", "--json").stdout) == []          # nothing written
    cli.backup(src)
    write(src / "a-new-file", b"fresh")
    run = cli("run", src, "--dry-run", "--json")
    plan = json.loads(run.stdout)
    assert [os.path.basename(p) for p in plan["new"]] == ["a-new-file"]
    assert plan["changed"] == [] and plan["unchanged"] == n_files
    snaps = json.loads(cli("snapshots", "--json").stdout)
    assert len(snaps) == 1                                              # still one snapshot
    full = json.loads(cli("run", src, "--dry-run", "--full", "--json").stdout)
    assert len(full["changed"]) == n_files                              # --full reads all


def test_dry_run_honours_excludes(cli, tmp_path):
    src = tmp_path / "src"
    os.makedirs(src)
    write(src / "keep.csv", b"1")
    write(src / "skip.tmp", b"2")
    plan = json.loads(cli("run", src, "--dry-run", "--exclude", "*.tmp", "--json").stdout)
    assert [os.path.basename(p) for p in plan["new"]] == ["keep.csv"] and plan["excluded"] == 1


def test_quiet_prints_nothing_on_success_and_problems_on_stderr(cli, tmp_path):
    make_tree(tmp_path / "src")
    src = tmp_path / "src"
    cli.backup(src)
    run = cli("run", src, "-q")
    assert run.exit_code == 0 and run.stdout == "" and run.stderr == ""
    if os.geteuid() == 0:
        return                                     # root reads everything: no problem to show
    locked = src / "locked"
    write(locked, b"secret")
    os.chmod(locked, 0)
    run = cli("run", src, "-q")
    assert run.exit_code == 1 and run.stdout == "" and "locked" in run.stderr


def test_verbose_lists_what_it_reads(cli, tmp_path):
    src = tmp_path / "src"
    os.makedirs(src / "sub")
    write(src / "sub" / "claims.csv", b"x" * 100)
    run = cli("run", src, "-v")
    assert run.exit_code == 0, run.output
    assert "claims.csv" in run.stderr or f"{src}/sub/" in run.stderr
    assert cli("run", src, "-q", "-v").exit_code == 2
