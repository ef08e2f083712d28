"""Restoring over existing files asks, or needs --overwrite; --dry-run shows the plan;
account, sudoers and key files are never replaced unless named (issue #22 item 3)."""
from __future__ import annotations

import json
import os

import pytest

from tests.harness.backup import BackupCli
from tests.harness.backup import write as _write

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(tmp_path):
    """A backed-up 'system' tree, then changed the way a live system changes."""
    cli = BackupCli(tmp_path)
    root = tmp_path / "sys"
    write(root / "etc" / "passwd", b"root:x:0:0::/root:/bin/bash\nold:x:1000:1000::/home/old:/bin/sh\n")
    write(root / "etc" / "hosts", b"127.0.0.1 localhost\n")
    write(root / "home" / "ann" / ".ssh" / "authorized_keys", b"ssh-ed25519 AAAAold ann\n")
    write(root / "srv" / "claims.csv", b"id,amount\n1,20\n")
    assert cli.backup(root)["errors"] == []
    # since the snapshot: an account was created, keys rotated, data changed
    write(root / "etc" / "passwd", b"root:x:0:0::/root:/bin/bash\nnew:x:1001:1001::/home/new:/bin/sh\n")
    write(root / "home" / "ann" / ".ssh" / "authorized_keys", b"ssh-ed25519 AAAAnew ann\n")
    write(root / "srv" / "claims.csv", b"id,amount\n1,25\n")
    return cli, root


def write(path, data: bytes) -> None:
    os.makedirs(path.parent, exist_ok=True)
    _write(path, data)


def _read(root, rel) -> bytes:
    return (root / rel).read_bytes()


def _restore(cli, *args):
    return cli("restore", "latest", "--target", "/", *args)


def test_without_a_terminal_replacing_needs_overwrite_and_nothing_changes(live):
    cli, root = live
    before = {rel: _read(root, rel) for rel in ("etc/passwd", "srv/claims.csv")}
    run = _restore(cli)
    assert run.exit_code == 2 and "Traceback" not in run.output
    assert "would replace" in run.stderr and "--overwrite" in run.stderr
    assert {rel: _read(root, rel) for rel in before} == before


def test_dry_run_shows_what_would_change_and_changes_nothing(live):
    cli, root = live
    run = _restore(cli, "--dry-run", "--json")
    assert run.exit_code == 0, run.output
    plan = json.loads(run.stdout)
    assert str(root / "srv" / "claims.csv") in plan["replace"]
    assert str(root / "etc" / "passwd") in plan["held"]
    assert str(root / "home" / "ann" / ".ssh" / "authorized_keys") in plan["held"]
    assert str(root / "etc" / "hosts") in plan["unchanged"]
    assert b"new:x:1001" in _read(root, "etc/passwd")


def test_overwrite_replaces_data_but_holds_account_files_back(live):
    cli, root = live
    run = _restore(cli, "--overwrite")
    assert run.exit_code == 1, run.output                       # held files are a finding
    assert _read(root, "srv/claims.csv") == b"id,amount\n1,20\n"
    assert b"new:x:1001" in _read(root, "etc/passwd")           # never replaced silently
    assert b"AAAAnew" in _read(root, "home/ann/.ssh/authorized_keys")
    assert "not replaced" in run.stdout and "etc/passwd" in run.stdout


def test_a_protected_file_named_with_include_is_restored(live):
    cli, root = live
    run = _restore(cli, "--overwrite", "--include", str(root / "etc" / "passwd"))
    assert run.exit_code == 0, run.output
    assert b"old:x:1000" in _read(root, "etc/passwd")
    assert _read(root, "srv/claims.csv") == b"id,amount\n1,25\n"  # not selected: untouched


def test_an_empty_target_needs_no_question(live, tmp_path):
    cli, root = live
    target = tmp_path / "empty"
    run = cli("restore", "latest", "--target", target)
    assert run.exit_code == 0, run.output
    assert (target / str(root).lstrip("/") / "etc" / "passwd").exists()
