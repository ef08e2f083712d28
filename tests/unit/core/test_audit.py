"""AuditLog: append, the hash chain, verification and every kind of tampering."""
import datetime as dt
import hashlib
import json
import os
import stat
import time

import pytest

from opskit.core import audit as audit_mod
from opskit.core.audit import (GENESIS, AuditLog, build_entry, load_checkpoints,
                               operator_matches, parse_since, redact_secrets)
from opskit.core.errors import IntegrityError, OperationalError, UsageError


def add(log, n, **overrides):
    out = []
    for i in range(n):
        fields = dict(operator="root as alice", host="db1", command=f"backup run {i}",
                      arguments={"paths": ["/srv"], "dry_run": False}, result="ok",
                      exit_code=0, summary=f"entry {i}", details={"files": i})
        fields.update(overrides)
        out.append(log.append(**fields))
    return out


def lines(log):
    with open(log.path, "rb") as fh:
        return fh.read().splitlines(keepends=True)


def write_lines(log, data):
    with open(log.path, "wb") as fh:
        fh.write(b"".join(data))


def rehash(entry):
    body = {k: v for k, v in entry.items() if k != "hash"}
    entry["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                              ensure_ascii=False).encode()).hexdigest()
    return entry


def dump(entry):
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


@pytest.fixture
def log(tmp_path):
    return AuditLog(tmp_path / "state" / "audit" / "audit.log")


# --- format and append -------------------------------------------------------------

def test_append_creates_private_dir_and_file(log):
    add(log, 1)
    assert stat.S_IMODE(os.stat(os.path.dirname(log.path)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600


def test_entries_form_a_hash_chain_per_the_documented_format(log):
    returned = add(log, 4)
    raw = lines(log)
    assert len(raw) == 4
    prev = GENESIS
    for i, line in enumerate(raw, 1):
        entry = json.loads(line)
        assert entry == returned[i - 1]
        assert entry["seq"] == i
        assert entry["prev"] == prev
        # hash: SHA-256 of canonical JSON without 'hash', computed independently here
        assert entry["hash"] == rehash(dict(entry))["hash"]
        # line is exactly that canonical JSON
        assert line == dump(entry)
        prev = hashlib.sha256(line.rstrip(b"\n")).hexdigest()
        assert entry["time"].endswith("Z")
        dt.datetime.fromisoformat(entry["time"])
        assert {"operator", "host", "command", "arguments", "result", "exit_code", "summary",
                "details"} <= set(entry)


def test_head_and_entries(log):
    assert log.head() is None
    assert list(log.entries()) == []
    made = add(log, 3)
    assert log.head() == (3, made[-1]["hash"])
    assert [e["seq"] for e in log.entries()] == [1, 2, 3]


def test_head_reads_only_the_tail_even_for_long_lines(log):
    add(log, 2, summary="x" * 20000)                 # lines far larger than one read block
    made = add(log, 1, summary="y" * 9000)
    assert log.head() == (3, made[0]["hash"])
    assert log.verify().ok


def test_unicode_and_undecodable_names_round_trip(log):
    add(log, 1, arguments={"path": "/srv/病历/" + b"\xff".decode("utf-8", "surrogateescape")},
        summary="备份完成\u2028next")
    report = log.verify()
    assert report.ok, report.problem
    assert "病历" in next(log.entries())["arguments"]["path"]


def test_secrets_redacted_defensively(log):
    entry = add(log, 1, arguments={
        "password": "hunter2", "db_passphrase": "pp", "api_token": "tok", "aws_secret": "s",
        "credentials": {"user": "x"}, "ssh_private_key": "KEY", "privatekey": "KEY2",
        "passphrase_file": "/etc/opskit/pass", "paths": ["/srv"],
        "var": ["user=bob", "password=hunter2", "--token=zqx-tok-value"],
        "nested": {"inner": {"secret_value": "s2", "ok": 1}},
    }, details={"token": "t", "count": 3})[0]
    args = entry["arguments"]
    for key in ("password", "db_passphrase", "api_token", "aws_secret", "credentials",
                "ssh_private_key", "privatekey"):
        assert args[key] == "***", key
    assert args["passphrase_file"] == "/etc/opskit/pass"      # a path, not the secret
    assert args["paths"] == ["/srv"]
    assert args["var"] == ["user=bob", "password=***", "--token=***"]
    assert args["nested"]["inner"] == {"secret_value": "***", "ok": 1}
    assert entry["details"] == {"token": "***", "count": 3}
    text = open(log.path, encoding="utf-8").read()
    for secret in ("hunter2", "tok\"", "KEY", "zqx-tok-value", "s2\""):
        assert secret not in text


def test_redact_secrets_keeps_none():
    assert redact_secrets({"password": None}) == {"password": None}


def test_short_write_is_undone(log, monkeypatch):
    add(log, 2)
    before = open(log.path, "rb").read()
    real_write = os.write

    def half_write(fd, data):
        return real_write(fd, bytes(data[: len(data) // 2]))

    monkeypatch.setattr(audit_mod.os, "write", half_write)
    with pytest.raises(OperationalError, match="short write"):
        add(log, 1)
    monkeypatch.setattr(audit_mod.os, "write", real_write)
    assert open(log.path, "rb").read() == before
    add(log, 1)
    assert log.verify().ok and log.head()[0] == 3


def test_append_refuses_to_extend_a_torn_last_line(log):
    add(log, 2)
    with open(log.path, "ab") as fh:
        fh.write(b'{"seq":3,"time":"2026')
    with pytest.raises(IntegrityError, match="incomplete line"):
        add(log, 1)
    report = log.verify()
    assert not report.ok and report.first_bad_line == 3 and "incomplete" in report.problem


def test_append_refuses_a_malformed_last_line(log):
    add(log, 2)
    with open(log.path, "ab") as fh:
        fh.write(b"not json\n")
    with pytest.raises(IntegrityError, match="not a valid entry"):
        add(log, 1)


# --- verify: intact ------------------------------------------------------------------

def test_verify_empty_and_missing(log):
    report = log.verify()
    assert report.ok and report.entries_checked == 0 and report.head is None
    assert report.describe() == "audit log is empty"


def test_verify_intact(log):
    made = add(log, 5)
    report = log.verify()
    assert report.ok
    assert report.entries_checked == 5
    assert report.head == (5, made[-1]["hash"])
    assert report.describe() == f"audit log intact: 5 entries, head {made[-1]['hash'][:12]}"


# --- verify: each kind of tampering -------------------------------------------------

def test_edited_field_detected(log):
    add(log, 5)
    raw = lines(log)
    entry = json.loads(raw[2])
    entry["exit_code"] = 0 if entry["exit_code"] else 3
    raw[2] = dump(entry)
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_line) == (3, 3)
    assert "edited" in report.problem
    assert report.entries_checked == 2
    assert "seq 3" in report.describe() and "line 3" in report.describe()


def test_edited_text_in_place_detected(log):
    add(log, 3, summary="backed up 10 files")
    raw = lines(log)
    raw[1] = raw[1].replace(b"backed up 10 files", b"backed up 11 files")
    write_lines(log, raw)
    report = log.verify()
    assert (report.ok, report.first_bad_seq) == (False, 2)


def test_edit_with_recomputed_hash_caught_by_next_prev(log):
    add(log, 5)
    raw = lines(log)
    entry = json.loads(raw[1])
    entry["operator"] = "nobody"
    raw[1] = dump(rehash(entry))
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_line) == (3, 3)
    assert "prev does not match" in report.problem and "seq 2" in report.problem


def test_deleted_middle_entry_detected(log):
    add(log, 5)
    raw = lines(log)
    del raw[2]
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_line) == (4, 3)
    assert "seq 3 missing" in report.problem and "deleted" in report.problem


def test_deleted_several_entries_named(log):
    add(log, 6)
    raw = lines(log)
    del raw[1:4]
    write_lines(log, raw)
    report = log.verify()
    assert "seq 2..4 missing" in report.problem


def test_deleted_first_entry_detected(log):
    add(log, 3)
    write_lines(log, lines(log)[1:])
    report = log.verify()
    assert (report.ok, report.first_bad_seq, report.first_bad_line) == (False, 2, 1)
    assert "seq 1 missing" in report.problem


def test_deleted_and_renumbered_entry_caught_by_prev(log):
    add(log, 4)
    raw = lines(log)
    nxt = json.loads(raw[2])
    nxt["seq"] = 2                                   # renumber seq 3 into the hole
    raw[2] = dump(rehash(nxt))
    del raw[1]
    write_lines(log, raw)
    report = log.verify()
    assert (report.ok, report.first_bad_seq, report.first_bad_line) == (False, 2, 2)
    assert "prev does not match" in report.problem


def test_swapped_entries_detected_as_reordered(log):
    add(log, 5)
    raw = lines(log)
    raw[1], raw[2] = raw[2], raw[1]
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_line) == (3, 2)
    assert "reordered" in report.problem and "line 3" in report.problem


def test_duplicated_entry_detected(log):
    add(log, 4)
    raw = lines(log)
    raw.insert(2, raw[1])
    write_lines(log, raw)
    report = log.verify()
    assert (report.ok, report.first_bad_seq, report.first_bad_line) == (False, 2, 3)
    assert "duplicated" in report.problem


def test_malformed_line_detected(log):
    add(log, 5)
    raw = lines(log)
    raw[2] = b"this is not json\n"
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok
    assert report.first_bad_line == 3 and report.first_bad_seq is None
    assert "not valid JSON" in report.problem and "seq 3 expected" in report.problem
    assert "line 3" in report.describe()


def test_blank_line_detected(log):
    add(log, 3)
    raw = lines(log)
    raw.insert(1, b"\n")
    write_lines(log, raw)
    report = log.verify()
    assert (report.ok, report.first_bad_line) == (False, 2)


@pytest.mark.parametrize("mutate, words", [
    (lambda e: e.pop("operator"), "field 'operator' is missing"),
    (lambda e: e.update(seq="3"), "field 'seq' has the wrong type"),
    (lambda e: e.update(exit_code=True), "field 'exit_code' has the wrong type"),
    (lambda e: e.update(hash="abc"), "'hash' is not 64"),
])
def test_wrong_fields_detected(log, mutate, words):
    add(log, 4)
    raw = lines(log)
    entry = json.loads(raw[2])
    mutate(entry)
    raw[2] = dump(entry)
    write_lines(log, raw)
    report = log.verify()
    assert (report.ok, report.first_bad_line) == (False, 3)
    assert words in report.problem


def test_not_canonical_line_detected(log):
    add(log, 3)
    raw = lines(log)
    raw[1] = (json.dumps(json.loads(raw[1]), sort_keys=True) + "\n").encode()  # spaces added
    write_lines(log, raw)
    report = log.verify()
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "canonical" in report.problem


def test_inserted_forged_entry_detected(log):
    add(log, 3)
    raw = lines(log)
    forged, line = build_entry(2, hashlib.sha256(raw[0].rstrip(b"\n")).hexdigest(),
                               {"operator": "x", "host": "h", "command": "c", "arguments": {},
                                "result": "ok", "exit_code": 0, "summary": "", "details": None})
    raw.insert(1, line + b"\n")
    write_lines(log, raw)
    report = log.verify()
    assert not report.ok
    assert report.first_bad_line == 3           # original seq 2 now follows a seq 2


# --- checkpoints ---------------------------------------------------------------------

def test_checkpoint_recorded_beside_the_log(log):
    made = add(log, 3)
    cp = log.checkpoint()
    assert (cp["seq"], cp["hash"]) == (3, made[-1]["hash"])
    assert cp["log"] == log.path and cp["time"].endswith("Z") and cp["host"]
    path = os.path.join(os.path.dirname(log.path), "checkpoints.jsonl")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    recorded = [json.loads(x) for x in open(path, encoding="utf-8")]
    assert recorded == [cp]
    report = log.verify()
    assert report.ok and report.checkpoints_checked == 1


def test_truncated_tail_detected_by_recorded_checkpoint(log):
    add(log, 5)
    log.checkpoint()
    write_lines(log, lines(log)[:3])
    assert log.verify(use_recorded=False).ok         # the file alone cannot show it ...
    report = log.verify()                            # ... the checkpoint does
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_line) == (4, 4)
    assert "log ends at seq 3" in report.problem and "seq 4..5 missing" in report.problem
    assert "truncated" in report.problem


def test_truncated_tail_detected_by_exported_checkpoint(log, tmp_path):
    add(log, 5)
    cp = log.checkpoint()
    exported = tmp_path / "offsite.json"
    exported.write_text(json.dumps(cp, indent=2))
    write_lines(log, lines(log)[:4])
    os.unlink(log.checkpoints_path)                  # the attacker removes the local copy too
    assert log.verify().ok
    report = log.verify(load_checkpoints(exported))
    assert not report.ok and "seq 5 missing" in report.problem and "truncated" in report.problem


def test_tail_rewritten_after_checkpoint_detected(log):
    add(log, 5)
    cp = log.checkpoint()
    write_lines(log, lines(log)[:3])
    add(log, 3, operator="mallory")                  # a clean chain 4, 5, 6 on top
    assert log.verify(use_recorded=False).ok
    report = log.verify(cp, use_recorded=False)
    assert not report.ok
    assert (report.first_bad_seq, report.first_bad_line) == (5, 5)
    assert "rewritten" in report.problem


def test_whole_log_rewritten_caught_only_by_checkpoint(log, tmp_path):
    add(log, 4)
    cp = log.checkpoint()
    raw = lines(log)
    prev, forged = GENESIS, []
    for line in raw:                                 # recompute the whole chain
        entry = json.loads(line)
        entry["operator"] = "nobody"
        entry, new = build_entry(entry["seq"], prev, entry)
        forged.append(new + b"\n")
        prev = hashlib.sha256(new).hexdigest()
    write_lines(log, forged)
    assert log.verify(use_recorded=False).ok         # documented limitation
    report = log.verify(cp, use_recorded=False)
    assert (report.ok, report.first_bad_seq) == (False, 4)


def test_missing_log_with_checkpoint_is_truncation(log):
    add(log, 2)
    log.checkpoint()
    os.unlink(log.path)
    report = log.verify()
    assert not report.ok and "log is empty or missing" in report.problem
    assert report.first_bad_seq == 1


def test_checkpoint_refuses_a_tampered_log(log):
    add(log, 3)
    raw = lines(log)
    del raw[1]
    write_lines(log, raw)
    with pytest.raises(IntegrityError, match="refusing to checkpoint"):
        log.checkpoint()
    assert not os.path.exists(log.checkpoints_path)


def test_checkpoint_of_empty_log_is_an_error(log):
    with pytest.raises(OperationalError, match="empty"):
        log.checkpoint()


def test_malformed_checkpoints_file_reported(log):
    add(log, 2)
    log.checkpoint()
    with open(log.checkpoints_path, "a") as fh:
        fh.write("garbage\n")
    report = log.verify()
    assert not report.ok and "checkpoints.jsonl line 2" in report.problem


def test_checkpoints_of_other_logs_in_same_dir_ignored(log, tmp_path):
    other = AuditLog(os.path.join(os.path.dirname(log.path), "other.log"))
    add(other, 5)
    other.checkpoint()
    add(log, 2)
    assert log.verify().ok
    assert other.verify().ok


def test_load_checkpoints_formats(tmp_path, log):
    add(log, 3)
    one = log.checkpoint()
    two = log.checkpoint(verify=False)
    f = tmp_path / "cps.json"
    f.write_text(json.dumps(one, indent=2) + "\n" + json.dumps(two) + "\n")
    assert [c["seq"] for c in load_checkpoints(f)] == [3, 3]
    f.write_text(json.dumps([one, two]))
    assert len(load_checkpoints(f)) == 2
    f.write_text('{"seq": "x"}')
    with pytest.raises(UsageError):
        load_checkpoints(f)
    with pytest.raises(UsageError, match="not found"):
        load_checkpoints(tmp_path / "missing.json")
    f.write_text("{nope")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_checkpoints(f)


def test_verify_rejects_invalid_given_checkpoint(log):
    with pytest.raises(UsageError):
        log.verify({"seq": 1, "hash": "zz"})


# --- selection -----------------------------------------------------------------------

def _synthetic_log(log, times_and_ops):
    """Write a valid chain with chosen times (append() always stamps 'now')."""
    os.makedirs(os.path.dirname(log.path), exist_ok=True)
    prev, out = GENESIS, []
    for seq, (when, operator, command) in enumerate(times_and_ops, 1):
        _, line = build_entry(seq, prev, {"time": when, "operator": operator, "host": "h",
                                          "command": command, "arguments": {}, "result": "ok",
                                          "exit_code": 0, "summary": "", "details": None})
        out.append(line + b"\n")
        prev = hashlib.sha256(line).hexdigest()
    write_lines(log, out)


def test_select_filters(log):
    _synthetic_log(log, [
        ("2026-10-30T10:00:00.000Z", "root", "backup run"),
        ("2026-11-01T09:00:00.000Z", "root as alice", "users freeze"),
        ("2026-11-02T09:00:00.000Z", "root (sudo from bob)", "backup list"),
        ("2026-11-03T09:00:00.000Z", "alice2", "backup run"),
    ])
    assert log.verify().ok
    since = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    assert [e["seq"] for e in log.select(since=since)[0]] == [2, 3, 4]
    assert [e["seq"] for e in log.select(command="backup")[0]] == [1, 3, 4]
    assert [e["seq"] for e in log.select(command="backup run")[0]] == [1, 4]
    assert [e["seq"] for e in log.select(operator="alice")[0]] == [2]
    assert [e["seq"] for e in log.select(operator="bob")[0]] == [3]
    assert [e["seq"] for e in log.select(operator="root")[0]] == [1, 2, 3]
    assert [e["seq"] for e in log.select(limit=2)[0]] == [3, 4]
    assert [e["seq"] for e in log.select(command="backup", limit=1, since=since)[0]] == [4]


def test_select_skips_and_counts_malformed_lines(log):
    add(log, 2)
    with open(log.path, "ab") as fh:
        fh.write(b"junk\n")
    entries, skipped = log.select()
    assert len(entries) == 2 and skipped == 1


def test_operator_matches():
    assert operator_matches("root as alice", "alice")
    assert operator_matches("root as alice", "root as alice")
    assert not operator_matches("root as alice2", "alice")
    assert not operator_matches("root as malice", "alice")


def test_parse_since():
    now = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_since("24h", now) == now - dt.timedelta(hours=24)
    assert parse_since("7d", now) == now - dt.timedelta(days=7)
    assert parse_since("90m", now) == now - dt.timedelta(minutes=90)
    assert parse_since("2w", now) == now - dt.timedelta(weeks=2)
    assert parse_since("2026-11-01T08:00Z", now) == dt.datetime(2026, 11, 1, 8, tzinfo=dt.timezone.utc)
    local = parse_since("2026-11-01", now)
    assert local.tzinfo is not None
    assert local == dt.datetime(2026, 11, 1).astimezone()
    for bad in ("yesterday", "7x", "", "2026-13-01"):
        with pytest.raises(UsageError):
            parse_since(bad, now)


# --- speed ---------------------------------------------------------------------------

def test_verify_streams_large_logs_quickly(log):
    n = 20000
    os.makedirs(os.path.dirname(log.path), exist_ok=True)
    prev = GENESIS
    with open(log.path, "wb") as fh:
        for seq in range(1, n + 1):
            _, line = build_entry(seq, prev, {
                "operator": "root as alice", "host": "db1", "command": "backup run",
                "arguments": {"paths": ["/srv/data"], "dry_run": False}, "result": "ok",
                "exit_code": 0, "summary": "backed up 1234 files", "details": {"n": seq}})
            fh.write(line + b"\n")
            prev = hashlib.sha256(line).hexdigest()
    start = time.monotonic()
    report = log.verify()
    elapsed = time.monotonic() - start
    assert report.ok and report.entries_checked == n
    assert elapsed < 4.0, f"verify of {n} entries took {elapsed:.1f}s"
    start = time.monotonic()
    assert log.head()[0] == n
    entry = add(log, 1)[0]
    assert time.monotonic() - start < 0.5                 # tail read, not a full scan
    assert entry["seq"] == n + 1


# --- who else could rewrite the log (R-AUD-3, R-DAT-1) ----------------------------------

@pytest.mark.parametrize("target,mode", [("file", 0o666), ("file", 0o620),
                                         ("dir", 0o777), ("dir", 0o770)])
def test_a_log_others_can_write_is_not_intact(log, target, mode):
    """chmod on a real log: anyone in the group or everyone can now recompute the
    whole chain, so 'intact' would prove nothing against them. Old verify said intact."""
    add(log, 3)
    assert log.verify().ok
    path = log.path if target == "file" else os.path.dirname(log.path)
    os.chmod(path, mode)
    report = log.verify()
    assert not report.ok and "writable by group or others" in report.problem, report
    assert report.entries_checked == 3                       # the chain itself is fine
    os.chmod(path, 0o600 if target == "file" else 0o700)
    assert log.verify().ok


def test_a_log_owned_by_another_user_is_not_intact(log, monkeypatch):
    add(log, 2)
    if os.geteuid() == 0:       # chown the real file to an ordinary user
        os.chown(log.path, 4242, -1)
    else:                       # we cannot chown: pretend to be another ordinary user
        owner = os.stat(log.path).st_uid
        monkeypatch.setattr(os, "geteuid", lambda: owner + 4242)
    report = log.verify()
    assert not report.ok and "owned by uid" in report.problem, report
