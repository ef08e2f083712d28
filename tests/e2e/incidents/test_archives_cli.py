"""Archive control as a user runs it (R-AUD-6, #25 item 4): an archive snapshot is read
only with an approval of the snapshot and the purpose, once, and registered; it is
destroyed only with an approval, leaving a record; a drill is registered, not blocked."""
import os

import pytest

from opskit.core.signing import generate
from tests.harness.backup import BackupCli
from tests.harness.backup import write as _write
from tests.harness.cli import json_of as _json
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


@pytest.fixture
def archive(tmp_path):
    """A repository with an archive snapshot (tagged) and an ordinary one, people
    li and zhao registered as reviewers; wang reads. Returns (cli, as_, keys, ids)."""
    keys = {n: generate(str(tmp_path / "keys" / n), n) for n in ("li", "wang", "zhao")}
    extra = ("  retention:\n    floor_days: 0\n"
             "incidents:\n  reviewers:\n    li: " + keys["li"][1] + "\n    zhao: "
             + keys["zhao"][1] + "\n  high_risk_operations: []\n")
    cli = BackupCli(tmp_path, extra=extra)
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "record.txt", b"claims ledger 2019\n" * 100)
    old = cli.backup(src, "--tag", "archive")["snapshot"]
    _write(src / "record.txt", b"claims ledger 2020\n" * 100)
    new = cli.backup(src)["snapshot"]

    def as_(who, *args, env=None):
        return cli(*args, env={"OPSKIT_OPERATOR": who, **(env or {})})

    def top(who, *args):
        return run_opskit("--config", cli.config, "--operator", who, *args)

    return cli, as_, top, {n: k[0].path for n, k in keys.items()}, (old, new)


def _restore(as_, who, snap, target, *extra):
    return as_(who, "restore", snap, "--target", str(target), "--json", *extra)


def test_reading_an_archive_needs_an_approval_of_snapshot_and_purpose_used_once(archive,
                                                                                tmp_path):
    cli, as_, top, key, (old, new) = archive
    target = tmp_path / "out"
    # no purpose, then a purpose nobody approved: refused, nothing written
    run = _restore(as_, "wang", old[:8], target)
    assert run.exit_code == 2 and "R-AUD-6" in run.stderr and "--purpose" in run.stderr
    run = _restore(as_, "wang", old[:8], target, "--purpose", "audit A-12")
    assert run.exit_code == 2 and "archive" in run.stderr
    assert f"opskit archive approve {old}" in run.stderr
    assert not target.exists() or not os.listdir(target)
    # a dry run shows the approval needed without using anything
    dry = _json(_restore(as_, "wang", old[:8], target, "--purpose", "audit A-12", "--dry-run"))
    assert dry["archive_access"]["status"] == "approval needed"
    assert dry["archive_access"]["archive"] == "tag archive"
    # the reader cannot approve their own read; an unregistered key cannot either
    own = top("zhao", "archive", "approve", old, "--purpose", "audit A-12", "--for", "zhao",
              "--key", key["zhao"])
    assert own.exit_code == 2 and "self-approval" in own.stderr
    stranger = top("wang", "archive", "approve", old, "--purpose", "audit A-12", "--for",
                   "wang", "--key", key["wang"])
    assert stranger.exit_code == 2 and "not registered" in stranger.stderr
    # li approves another purpose: still refused
    _json(top("li", "archive", "approve", old, "--purpose", "curiosity", "--for", "wang",
              "--key", key["li"], "--json"))
    assert _restore(as_, "wang", old[:8], target, "--purpose", "audit A-12").exit_code == 2
    _json(top("li", "archive", "approve", old, "--purpose", "audit A-12", "--for", "wang",
              "--key", key["li"], "--json"))
    # approved for wang: zhao may not use it
    assert _restore(as_, "zhao", old[:8], target, "--purpose", "audit A-12").exit_code == 2
    done = _json(_restore(as_, "wang", old[:8], target, "--purpose", "audit A-12"))
    assert done["archive_access"]["approved_by"] == ["li"]
    restored = target / str(tmp_path / "src" / "record.txt").lstrip("/")
    assert restored.read_bytes().startswith(b"claims ledger 2019")
    # once: the same read again is refused
    again = _restore(as_, "wang", old[:8], tmp_path / "out2", "--purpose", "audit A-12")
    assert again.exit_code == 2 and "R-AUD-6" in again.stderr
    log = _json(top("wang", "archive", "access-log", "--json"))
    assert [(r["step"], r["snapshot"], r["purpose"], r["actor"], r["approved_by"])
            for r in log] == [("access", old, "audit A-12", "wang", ["li"])]
    audit = _json(run_opskit("audit", "show", "--command", "backup restore", "--json"))
    granted = [a["details"]["archive_access"] for a in audit
               if a["details"].get("archive_access", {}).get("status") == "approved"]
    assert [g["registered"] for g in granted] == [log[0]["seq"]]
    assert top("wang", "archive", "verify").exit_code == 0
    assert top("wang", "incident", "verify").exit_code == 0


def test_an_ordinary_snapshot_needs_no_approval_and_is_not_registered(archive, tmp_path):
    cli, as_, top, key, (old, new) = archive
    done = _json(_restore(as_, "wang", new[:8], tmp_path / "out"))
    assert "archive_access" not in done
    assert _json(top("wang", "archive", "access-log", "--json")) == []


def test_archive_list_names_each_archive_and_why(archive, tmp_path):
    cli, as_, top, key, (old, new) = archive
    run = run_opskit("--config", cli.config, "archive", "list", "--json",
                     env={"OPSKIT_PASSPHRASE": "correct horse battery staple"})
    rows = _json(run)
    assert [(r["snapshot"], r["archive"]) for r in rows] == [(old, "tag archive")]
    # a path mark in the config makes the other one an archive too
    with open(cli.config, "a") as fh:
        fh.write(f"archives:\n  paths: [{tmp_path / 'src'}]\n")
    rows = _json(run_opskit("--config", cli.config, "archive", "list", "--json",
                            env={"OPSKIT_PASSPHRASE": "correct horse battery staple"}))
    assert {r["snapshot"] for r in rows} == {old, new}
    assert _restore(as_, "wang", new[:8], tmp_path / "out").exit_code == 2


def test_destroying_an_archive_needs_an_approval_and_leaves_a_record(archive):
    cli, as_, top, key, (old, new) = archive
    refused = as_("wang", "forget", "--keep-last", "1")
    assert refused.exit_code == 2 and "R-AUD-6" in refused.stderr
    assert "approve-op 'archive destroy'" in refused.stderr
    assert len(cli.json("snapshots")) == 2                         # nothing dropped
    assert _json(top("wang", "archive", "destructions", "--json")) == []
    dry = _json(as_("wang", "forget", "--keep-last", "1", "--dry-run", "--json"))
    need = dry["archive_destruction"]
    assert need["status"] == "approval needed" and need["snapshots"] == [old]
    _json(top("zhao", "approve-op", "archive destroy", "--subject", need["subject"], "--for",
              "wang", "--key", key["zhao"], "--json"))
    done = _json(as_("wang", "forget", "--keep-last", "1", "--json"))
    assert done["forgotten"] == [old] and done["archive_destruction"]["approved_by"] == ["zhao"]
    records = _json(top("wang", "archive", "destructions", "--json"))
    assert len(records) == 1 and records[0]["approved_by"] == ["zhao"]
    assert [s["snapshot"] for s in records[0]["snapshots"]] == [old]
    assert records[0]["snapshots"][0]["archive"] == "tag archive"


def test_forgetting_only_ordinary_snapshots_needs_no_archive_approval(archive, tmp_path):
    cli, as_, top, key, (old, new) = archive
    src = tmp_path / "src"
    for day in ("2021", "2022"):
        _write(src / "record.txt", f"claims ledger {day}\n".encode() * 100)
        cli.backup(src, "--tag", "daily")
    done = _json(as_("wang", "forget", "--keep-last", "1", "--tag", "daily", "--json"))
    assert len(done["forgotten"]) == 1 and "archive_destruction" not in done
    assert old in {s["id"] for s in cli.json("snapshots")}
    assert _json(top("wang", "archive", "destructions", "--json")) == []


def test_a_drill_of_an_archive_is_registered_not_blocked(archive):
    cli, as_, top, key, (old, new) = archive
    report = _json(as_("wang", "drill", "--snapshot", old[:8], "--all", "--json"))
    assert report["passed"]
    log = _json(top("wang", "archive", "access-log", "--json"))
    assert [(r["step"], r["snapshot"], r["approved_by"]) for r in log] == [("drill", old, [])]
    # a drill of an ordinary snapshot is not registered
    _json(as_("wang", "drill", "--snapshot", new[:8], "--all", "--json"))
    assert len(_json(top("wang", "archive", "access-log", "--json"))) == 1
