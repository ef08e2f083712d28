"""`opskit audit ...` driven as a user runs it: ``python -m opskit`` in a subprocess.

Every opskit run appends one entry to the audit log (after the command ran),
so the log grows by one per call below.
"""
import csv
import io
import json
import os
import re
import stat
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
def log_path():
    return Path(os.environ["OPSKIT_HOME"]) / "audit" / "audit.log"


def log_lines(path):
    return path.read_bytes().splitlines(keepends=True)


def test_fresh_machine_verify_says_empty_then_logs_itself(opskit, log_path):
    run = opskit("audit", "verify")
    assert run.exit_code == 0, run.output
    assert run.stdout.strip() == "audit log is empty"
    entries = [json.loads(x) for x in log_lines(log_path)]
    assert len(entries) == 1
    e = entries[0]
    assert (e["seq"], e["command"], e["result"], e["exit_code"]) == (1, "audit verify", "ok", 0)
    assert e["summary"] == "audit log is empty"
    assert e["operator"] and e["host"] and e["time"].endswith("Z")
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700


def test_show_lists_earlier_commands(opskit, log_path):
    assert opskit("audit", "verify").exit_code == 0
    assert opskit("--operator", "alice", "audit", "show").exit_code == 0
    run = opskit("audit", "show")
    assert run.exit_code == 0, run.output
    header, rule, *rows = run.stdout.strip().splitlines()
    assert header.split() == ["SEQ", "TIME", "OPERATOR", "HOST", "COMMAND", "RESULT", "EXIT",
                              "SUMMARY"]
    assert len(rows) == 2
    assert rows[0].split()[0] == "1" and "audit verify" in rows[0]
    assert rows[1].split()[0] == "2" and "audit show" in rows[1] and "as alice" in rows[1]
    assert len(log_lines(log_path)) == 3


def test_show_json_and_csv(opskit):
    opskit("audit", "verify")
    run = opskit("audit", "show", "--json")
    assert run.exit_code == 0
    data = json.loads(run.stdout)
    assert isinstance(data, list) and len(data) == 1
    assert {"seq", "time", "operator", "host", "command", "arguments", "result", "exit_code",
            "summary", "details", "prev", "hash"} <= set(data[0])
    run = opskit("audit", "show", "--csv")
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert [r["command"] for r in rows] == ["audit verify", "audit show"]
    assert rows[1]["exit_code"] == "0" and len(rows[1]["hash"]) == 64


def test_show_filters(opskit):
    opskit("--operator", "alice", "audit", "verify")
    opskit("--operator", "bob", "audit", "show")
    opskit("audit", "verify")
    seqs = lambda run: [e["seq"] for e in json.loads(run.stdout)]    # noqa: E731
    assert seqs(opskit("audit", "show", "--json", "--operator", "alice")) == [1]
    assert seqs(opskit("audit", "show", "--json", "--command", "audit verify")) == [1, 3]
    assert seqs(opskit("audit", "show", "--json", "--limit", "2")) == [4, 5]
    assert seqs(opskit("audit", "show", "--json", "--since", "1h")) == list(range(1, 7))
    assert seqs(opskit("audit", "show", "--json", "--since", "2999-01-01")) == []
    run = opskit("audit", "show", "--since", "2999-01-01")
    assert run.exit_code == 0 and "(none)" in run.stdout


def test_bad_since_is_usage_error_and_is_audited(opskit, log_path):
    run = opskit("audit", "show", "--since", "last tuesday")
    assert run.exit_code == 2
    assert "--since" in run.stderr and "last tuesday" in run.stderr
    assert opskit("audit", "show", "--limit", "0").exit_code == 2
    entry = json.loads(log_lines(log_path)[0])
    assert (entry["result"], entry["exit_code"]) == ("error", 2)
    assert "--since" in entry["summary"]


def test_verify_intact_names_count_and_head(opskit, log_path):
    for _ in range(3):
        opskit("audit", "show")
    run = opskit("audit", "verify")
    assert run.exit_code == 0, run.output
    head = json.loads(log_lines(log_path)[2])["hash"]
    assert run.stdout.splitlines()[0] == f"audit log intact: 3 entries, head {head[:12]}"
    run = opskit("audit", "verify", "--json")
    data = json.loads(run.stdout)
    assert data["ok"] is True and data["entries_checked"] == 4
    assert data["head"]["seq"] == 4


def test_tampered_entry_makes_verify_exit_1_naming_seq_and_line(opskit, log_path):
    for _ in range(4):
        opskit("audit", "show")
    raw = log_lines(log_path)
    entry = json.loads(raw[1])
    entry["summary"] = "nothing to see here"
    raw[1] = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
    log_path.write_bytes(b"".join(raw))

    run = opskit("audit", "verify")
    assert run.exit_code == 1, run.output
    assert re.search(r"verification FAILED at seq 2, line 2: .*edited", run.stdout)
    run = opskit("audit", "verify", "--json")
    assert run.exit_code == 1
    data = json.loads(run.stdout)
    assert (data["ok"], data["first_bad_seq"], data["first_bad_line"]) == (False, 2, 2)
    # the failed verification is itself on record
    last = json.loads(log_lines(log_path)[-1])
    assert (last["command"], last["result"], last["exit_code"]) == ("audit verify", "findings", 1)
    assert last["details"]["verify"]["first_bad_seq"] == 2


def test_deleted_entry_named(opskit, log_path):
    for _ in range(4):
        opskit("audit", "show")
    raw = log_lines(log_path)
    del raw[2]
    log_path.write_bytes(b"".join(raw))
    run = opskit("audit", "verify")
    assert run.exit_code == 1
    assert "seq 4, line 3" in run.stdout and "seq 3 missing" in run.stdout


def test_checkpoint_prints_records_and_exports(opskit, log_path, tmp_path):
    opskit("audit", "show")
    opskit("audit", "show")
    export = tmp_path / "offsite" / "cp.json"
    export.parent.mkdir()
    run = opskit("audit", "checkpoint", "--export", str(export))
    assert run.exit_code == 0, run.output
    head = json.loads(log_lines(log_path)[1])
    assert f"checkpoint: seq 2, head {head['hash']}" in run.stdout
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    cp = json.loads(export.read_text())
    assert (cp["seq"], cp["hash"]) == (2, head["hash"])
    recorded = log_path.parent / "checkpoints.jsonl"
    assert json.loads(recorded.read_text().splitlines()[-1])["seq"] == 2

    run = opskit("audit", "checkpoint", "--json")
    assert run.exit_code == 0
    data = json.loads(run.stdout)
    assert data["seq"] == 3 and len(data["hash"]) == 64
    last = json.loads(log_lines(log_path)[-1])
    assert last["details"]["checkpoint"] == {"seq": 3, "hash": data["hash"]}


def test_truncation_caught_by_recorded_and_exported_checkpoints(opskit, log_path, tmp_path):
    for _ in range(3):
        opskit("audit", "show")
    export = tmp_path / "cp.json"
    assert opskit("audit", "checkpoint", "--export", str(export)).exit_code == 0   # seq 3
    raw = log_lines(log_path)
    log_path.write_bytes(b"".join(raw[:2]))          # cut seq 3 and 4 off the end

    run = opskit("audit", "verify")
    assert run.exit_code == 1, run.output
    assert "truncated" in run.stdout and "seq 3" in run.stdout

    # an attacker who also wipes the local checkpoints is caught by the exported copy
    (log_path.parent / "checkpoints.jsonl").unlink()
    raw = log_lines(log_path)
    log_path.write_bytes(b"".join(raw[:2]))          # and the entry the last verify added
    assert opskit("audit", "verify").exit_code == 0
    raw = log_lines(log_path)
    log_path.write_bytes(b"".join(raw[:2]))
    run = opskit("audit", "verify", "--checkpoint", str(export))
    assert run.exit_code == 1, run.output
    assert "truncated" in run.stdout


def test_missing_log_with_checkpoint_fails(opskit, log_path):
    opskit("audit", "show")
    assert opskit("audit", "checkpoint").exit_code == 0
    log_path.unlink()
    run = opskit("audit", "verify")
    assert run.exit_code == 1
    assert "log is empty or missing" in run.stdout


def test_checkpoint_refuses_tampered_log(opskit, log_path):
    for _ in range(3):
        opskit("audit", "show")
    raw = log_lines(log_path)
    raw[0], raw[1] = raw[1], raw[0]
    log_path.write_bytes(b"".join(raw))
    run = opskit("audit", "checkpoint")
    assert run.exit_code == 1
    assert "refusing to checkpoint" in run.stderr and "reordered" in run.stderr


def test_verify_with_missing_checkpoint_file_is_usage_error(opskit, tmp_path):
    run = opskit("audit", "verify", "--checkpoint", str(tmp_path / "nope.json"))
    assert run.exit_code == 2
    assert "nope.json" in run.stderr


def test_checkpoint_empty_log_is_operational_error(opskit):
    run = opskit("audit", "checkpoint")
    assert run.exit_code == 3
    assert "empty" in run.stderr


# --- #28 items 6 and 7 ------------------------------------------------------------------
@pytest.mark.parametrize("args", [("backup", "run", "--help"), ("audit", "verify", "-h"),
                                  ("users", "--help"), ("--version",)])
def test_help_is_not_audited(opskit, log_path, args):
    run = opskit(*args)
    assert run.exit_code == 0, run.output
    assert not log_path.exists() or log_lines(log_path) == []


def test_help_works_when_the_log_is_unwritable(opskit, log_path):
    assert opskit("audit", "verify").exit_code == 0      # the log exists now
    os.chmod(log_path, 0o400)
    os.chmod(log_path.parent, 0o500)
    try:
        before = log_lines(log_path)
        from tests.harness.backup import run_opskit_without_dac   # root must not bypass 0400
        run = run_opskit_without_dac("backup", "restore", "--help")
        assert run.exit_code == 0 and "--target" in run.stdout and run.stderr == "", run.output
        assert log_lines(log_path) == before
    finally:
        os.chmod(log_path.parent, 0o700)
        os.chmod(log_path, 0o600)


def test_a_rejected_flag_is_still_audited(opskit, log_path):
    run = opskit("audit", "show", "--limit", "0")
    assert run.exit_code == 2, run.output
    (entry,) = [json.loads(x) for x in log_lines(log_path)]
    assert entry["command"] == "audit show" and entry["exit_code"] == 2


def test_verify_of_a_torn_last_line_exits_1_not_3(opskit, log_path):
    assert opskit("audit", "verify").exit_code == 0
    with open(log_path, "ab") as fh:
        fh.write(b'{"seq":2,"comm')             # a write cut short
    run = opskit("audit", "verify")
    assert run.exit_code == 1, run.output
    assert "incomplete last line" in run.stdout and "line 2" in run.stdout
    # any other command still fails: it cannot be recorded (R-AUD-3)
    run = opskit("audit", "show")
    assert run.exit_code == 3, run.output
    assert "incomplete line" in run.stderr
