"""Signed checkpoints kept off the machine (issue #28 item 7, R-AUD-3, R-DAT-1).

The attacker here can rewrite everything on the machine: the log, its
``checkpoints.jsonl`` and the local copies of signed checkpoints. What they
cannot reach is the export directory. Each forgery is shown to pass a plain
``audit verify`` (so the anchor is what detects it) and to fail
``audit verify --anchors DIR`` naming the signed checkpoint.
"""
import json
import os
import shutil
from pathlib import Path

import pytest

from opskit.core.audit import build_entry, line_hash
from tests.harness.signing import key_file, public_line

pytestmark = pytest.mark.e2e


@pytest.fixture
def log_path():
    return Path(os.environ["OPSKIT_HOME"]) / "audit" / "audit.log"


@pytest.fixture
def anchored(opskit, log_path, tmp_path):
    """A log of 4 entries, a signed checkpoint of seq 4 exported to ``off``, one more
    entry (the checkpoint's own, seq 5). Returns the export directory."""
    assert opskit("correct", "keygen").exit_code == 0                   # seq 1
    for _ in range(3):
        opskit("audit", "show")                                          # seq 2..4
    off = tmp_path / "off"
    run = opskit("audit", "checkpoint", "--sign", "--export", str(off))  # anchors seq 4
    assert run.exit_code == 0, run.output
    assert "signed by SHA256:" in run.stdout
    return off


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


def wipe_local_checkpoints(log_path):
    """What root on this machine can do: remove every checkpoint kept beside the log."""
    (log_path.parent / "checkpoints.jsonl").unlink()
    shutil.rmtree(log_path.parent / "anchors")


def forge(log_path, keep, count):
    """Keep the first ``keep`` lines and append ``count`` forged entries with a correctly
    recomputed chain (``prev`` and ``hash``): invisible to the chain alone."""
    raw = lines(log_path)[:keep]
    for _ in range(count):
        seq = json.loads(raw[-1])["seq"] + 1
        _, line = build_entry(seq, line_hash(raw[-1]), {
            "operator": "root", "host": "db1", "command": "audit show", "arguments": {},
            "result": "ok", "exit_code": 0, "summary": "nothing to see", "details": None})
        raw.append(line + b"\n")
    log_path.write_bytes(b"".join(raw))


def test_signed_checkpoint_file_holds_the_head_and_is_private(anchored, log_path):
    (path,) = anchored.iterdir()
    anchor = json.loads(path.read_text())
    fourth = json.loads(lines(log_path)[3])
    assert anchor["format"] == "opskit-audit-anchor/1"
    assert (anchor["checkpoint"]["seq"], anchor["checkpoint"]["hash"]) == (4, fourth["hash"])
    assert anchor["signature"]["fingerprint"].startswith("SHA256:")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert (log_path.parent / "anchors" / path.name).read_bytes() == path.read_bytes()


def test_intact_log_passes_against_the_anchors(opskit, anchored):
    run = opskit("audit", "verify", "--anchors", str(anchored))
    assert run.exit_code == 0, run.output
    assert "checked against 2 checkpoint(s)" in run.stdout     # the signed one + the local one


def test_forged_append_with_recomputed_hash_caught_only_by_the_anchor(opskit, log_path,
                                                                      anchored):
    wipe_local_checkpoints(log_path)
    forge(log_path, keep=2, count=4)               # seq 3..6 forged, chain recomputed
    assert opskit("audit", "verify").exit_code == 0     # NOT detected without the anchor
    run = opskit("audit", "verify", "--anchors", str(anchored))
    assert run.exit_code == 1, run.output
    (anchor,) = anchored.iterdir()
    assert "seq 4" in run.stdout and f"signed checkpoint {anchor}" in run.stdout
    assert "history up to this entry was rewritten" in run.stdout


def test_tail_truncated_below_the_anchor_is_caught(opskit, log_path, anchored):
    wipe_local_checkpoints(log_path)
    log_path.write_bytes(b"".join(lines(log_path)[:2]))   # seq 3..5 cut off
    run = opskit("audit", "verify", "--anchors", str(anchored))
    assert run.exit_code == 1, run.output
    assert "log ends at seq 2" in run.stdout and "truncated" in run.stdout
    assert "signed checkpoint" in run.stdout
    log_path.write_bytes(b"".join(lines(log_path)[:2]))   # drop that verify's own entry
    assert opskit("audit", "verify").exit_code == 0     # NOT detected without the anchor


def test_truncation_above_the_newest_anchor_is_not_detected(opskit, log_path, anchored):
    # the documented limit: entries after the newest anchor have only the chain
    wipe_local_checkpoints(log_path)
    log_path.write_bytes(b"".join(lines(log_path)[:4]))   # seq 5 (after the anchor) cut
    assert opskit("audit", "verify", "--anchors", str(anchored)).exit_code == 0


def test_altered_anchor_is_a_bad_signature_finding(opskit, anchored):
    (path,) = anchored.iterdir()
    anchor = json.loads(path.read_text())
    anchor["checkpoint"]["seq"] = 3                # e.g. to bless a cut-off tail
    path.write_text(json.dumps(anchor))
    run = opskit("audit", "verify", "--anchors", str(anchored))
    assert run.exit_code == 1, run.output
    assert f"signed checkpoint {path}: bad signature" in run.stdout


def test_anchor_signed_by_an_unknown_key_is_a_finding(opskit, anchored, tmp_path):
    other = key_file(tmp_path / "keys", "mallory")
    run = opskit("audit", "checkpoint", "--sign", "--key", other, "--export", str(anchored))
    assert run.exit_code == 0, run.output
    run = opskit("audit", "verify", "--anchors", str(anchored))
    assert run.exit_code == 1, run.output
    assert "signed by unknown key SHA256:" in run.stdout
    # once declared, the same key is trusted
    pub = tmp_path / "mallory.pub"
    pub.write_text(public_line("mallory") + "\n")
    run = opskit("audit", "verify", "--anchors", str(anchored), "--trust-key", str(pub))
    assert run.exit_code == 0, run.output


def test_anchors_dir_without_any_anchor_is_a_usage_error(opskit, tmp_path):
    opskit("audit", "show")
    run = opskit("audit", "verify", "--anchors", str(tmp_path / "empty"))
    assert run.exit_code == 2, run.output
    assert "no signed checkpoint" in run.stderr


def test_sign_without_a_key_is_an_operational_error_and_records_nothing(opskit, log_path):
    opskit("audit", "show")
    run = opskit("audit", "checkpoint", "--sign")
    assert run.exit_code == 3, run.output
    assert "signing key" in run.stderr and "not found" in run.stderr
    assert not (log_path.parent / "checkpoints.jsonl").exists()


def test_a_signed_checkpoint_file_also_works_with_verify_checkpoint(opskit, log_path,
                                                                    anchored):
    (path,) = anchored.iterdir()
    wipe_local_checkpoints(log_path)
    log_path.write_bytes(b"".join(lines(log_path)[:3]))
    run = opskit("audit", "verify", "--checkpoint", str(path))
    assert run.exit_code == 1 and "truncated" in run.stdout, run.output


# --- plain 'audit verify' (the daily audit-verify job) and audit.anchor_dir -------------

@pytest.fixture
def configured(opskit, log_path, tmp_path, monkeypatch):
    """audit.anchor_dir set in opskit.yaml, as docs/audit-log.md recommends; a signed
    checkpoint of seq 4 exported there by the scheduled job's command; then seq 5."""
    off = tmp_path / "mnt-anchors"
    cfg = tmp_path / "opskit.yaml"
    cfg.write_text(f"audit:\n  anchor_dir: {off}\n")
    monkeypatch.setenv("OPSKIT_CONFIG", str(cfg))
    assert opskit("correct", "keygen").exit_code == 0                   # seq 1
    for _ in range(3):
        opskit("audit", "show")                                          # seq 2..4
    run = opskit("audit", "checkpoint", "--sign")                        # anchors seq 4
    assert run.exit_code == 0, run.output
    return off


def test_plain_verify_checks_the_configured_anchor_dir(opskit, log_path, configured):
    """R-AUD-3, R-DAT-1: root cuts the tail below the anchor and wipes every checkpoint
    kept beside the log. The daily 'audit verify' (no --anchors) used to say 'intact',
    exit 0, though the anchor in audit.anchor_dir records the cut entries."""
    assert opskit("audit", "verify").exit_code == 0                      # intact: seq 5
    wipe_local_checkpoints(log_path)
    log_path.write_bytes(b"".join(lines(log_path)[:2]))                  # seq 3.. cut
    run = opskit("audit", "verify")
    assert run.exit_code == 1, run.output
    assert "truncated" in run.stdout and f"signed checkpoint {configured}" in run.stdout


@pytest.mark.parametrize("how", ["moved away", "unmounted"])
def test_plain_verify_fails_when_the_configured_anchor_dir_is_hidden(opskit, log_path,
                                                                     configured, how):
    """The same cut, and the off-site directory hidden without altering an anchor:
    moved away (or never mounted), or an empty mount point left behind."""
    wipe_local_checkpoints(log_path)
    log_path.write_bytes(b"".join(lines(log_path)[:2]))
    configured.rename(configured.parent / "elsewhere")
    if how == "unmounted":
        configured.mkdir()
    run = opskit("audit", "verify")
    assert run.exit_code == 1, run.output
    assert f"anchor directory {configured}" in run.stdout
