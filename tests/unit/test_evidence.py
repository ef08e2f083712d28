"""The evidence pack's verdicts (R-AUD-2): fresh, stale, missing, findings -- on real
files in a state directory, with the clock and the opskit sub-commands injected."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import pytest

from opskit.core.audit import AuditLog
from opskit.core.errors import UsageError
from opskit.evidence.pack import CHECKS, build_pack
from opskit.evidence.report import render_html

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.timezone.utc)
SINCE = NOW - dt.timedelta(days=92)


def ago(**kw) -> str:
    return (NOW - dt.timedelta(**kw)).isoformat().replace("+00:00", "Z")


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(data, fh)


class FakeOpskit:
    """Canned answers for the opskit sub-commands the pack runs."""

    def __init__(self, snapshots=None, sites=None, ledger_ok=True):
        self.snapshots = snapshots if snapshots is not None else [
            {"id": "a" * 64, "time": ago(days=5), "full": True, "parent": None},
            {"id": "b" * 64, "time": ago(hours=3), "full": False, "parent": "a" * 64}]
        self.sites = sites if sites is not None else [
            {"site": "dr", "last replicated": ago(hours=2), "status": "ok"}]
        self.ledger_ok = ledger_ok
        self.calls = []

    def __call__(self, args):
        self.calls.append(args)
        if args[:2] == ["backup", "snapshots"]:
            if self.snapshots == "error":
                return 2, "", "opskit: error: no passphrase given and no terminal to ask on\n"
            return 0, json.dumps(self.snapshots), ""
        if args[:2] == ["backup", "sites"]:
            return 0, json.dumps(self.sites), ""
        if args[:2] == ["correct", "verify"]:
            return (0 if self.ledger_ok else 1), json.dumps(
                {"ok": self.ledger_ok, "entries_checked": 3, "signatures_checked": 6,
                 "problem": None if self.ledger_ok else "entry 2: signature does not verify"}), ""
        if args[:2] == ["correct", "export"]:
            out = args[args.index("--out") + 1]
            with open(out, "w") as fh:
                fh.write('{"entries": []}\n')
            return 0, "", ""
        return 2, "", f"opskit: error: unexpected {args}\n"


@pytest.fixture
def state(tmp_path):
    """A state directory holding fresh, clean evidence for every covered rule."""
    home = tmp_path / "state"
    write_json(home / "drills" / "20261101T050000Z-dr-aaaaaaaa.json",
               {"time": ago(days=21), "site": "dr", "snapshot": "a" * 64, "passed": True,
                "verdict": "PASS"})
    (home / "drills" / "20261101T050000Z-dr-aaaaaaaa.md").write_text("# drill PASS\n")
    write_json(home / "policy" / "runs" / "r1.json",
               {"id": "r1", "started": ago(minutes=40), "exit_code": 0,
                "counts": {"pass": 9, "fail": 0}, "hosts": [{"host": "db1"}]})
    write_json(home / "perms" / "reports" / "20261120-rep.json",
               {"snapshot": "S1", "generated": ago(days=2), "sha256": "0" * 64,
                "findings": []})
    (home / "perms" / "reports" / "20261120-rep.html").write_text("<html>report</html>")
    log = AuditLog(home / "audit" / "audit.log")
    for i in range(3):
        log.append(operator="root", host="h", command="backup run", result="ok", exit_code=0)
    return home


def pack(state, tmp_path, fake=None, now=NOW, name="pack"):
    fake = fake or FakeOpskit()
    result = build_pack(str(tmp_path / name), state_dir=str(state),
                        audit_log=str(state / "audit" / "audit.log"), since=SINCE, run=fake,
                        now=now, meta={"host": "h1", "operator": "auditor"})
    return result, {c["check"]: c for c in result.data["checks"]}


def test_fresh_clean_evidence_for_every_rule_exits_0_with_hashes(state, tmp_path):
    result, checks = pack(state, tmp_path)
    assert result.exit_code == 0, result.summary
    assert {c.key for c in CHECKS} == set(checks)
    assert all(c["verdict"] == "ok" for c in checks.values()), checks
    out = tmp_path / "pack"
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["files"]:
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    # copied verbatim: same hash as the original
    original = state / "drills" / "20261101T050000Z-dr-aaaaaaaa.json"
    drill = next(f for f in checks["restore-drill"]["evidence"] if f["file"].endswith(".json"))
    assert drill["sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
    assert {f["file"] for f in checks["permission-report"]["evidence"]} == {
        "perms/20261120-rep.json", "perms/20261120-rep.html"}
    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert any(line.endswith("  manifest.json") for line in sums)
    html = (out / "index.html").read_text()
    assert html.index("ALL COVERED RULES") < html.index("<h2>Rules, evidence")   # summary first
    assert "R-BAK-5" in html and "<script" not in html and "http" not in html.split("<body>")[1]


@pytest.mark.parametrize("edit,check,words", [
    ("drill_old", "restore-drill", "R-BAK-5, R-BAK-2: newest restore drill is 40 d old"),
    ("full_old", "backup-full", "R-BAK-4: newest full backup is 9 d old"),
    ("policy_old", "policy-check", "older than 26 h"),
    ("perms_old", "permission-report", "older than 8 d"),
])
def test_a_stale_rule_is_flagged_by_name_and_exits_1(state, tmp_path, edit, check, words):
    fake = FakeOpskit()
    if edit == "drill_old":
        write_json(state / "drills" / "20261101T050000Z-dr-aaaaaaaa.json",
                   {"time": ago(days=40), "site": "dr", "snapshot": "a" * 64, "passed": True})
    elif edit == "full_old":
        fake.snapshots[0]["time"] = ago(days=9)
    elif edit == "policy_old":
        write_json(state / "policy" / "runs" / "r1.json",
                   {"id": "r1", "started": ago(hours=30), "exit_code": 0, "counts": {}})
    else:
        write_json(state / "perms" / "reports" / "20261120-rep.json",
                   {"snapshot": "S1", "generated": ago(days=9), "findings": []})
    result, checks = pack(state, tmp_path, fake)
    assert result.exit_code == 1
    assert checks[check]["verdict"] == "stale"
    assert words in checks[check]["reason"], checks[check]["reason"]
    assert [c for c, v in checks.items() if v["verdict"] != "ok"] == [check]
    assert check in result.summary
    html = (tmp_path / "pack" / "index.html").read_text()
    assert "ATTENTION" in html and "STALE" in html


def test_missing_evidence_and_findings_are_flagged(state, tmp_path):
    os.unlink(state / "policy" / "runs" / "r1.json")
    write_json(state / "drills" / "20261120T050000Z-dr-bbbbbbbb.json",
               {"time": ago(days=2), "site": "dr", "snapshot": "b" * 64, "passed": False,
                "verdict": "FAIL: 2 files failed verification"})
    fake = FakeOpskit(snapshots="error", sites=[], ledger_ok=False)
    result, checks = pack(state, tmp_path, fake)
    assert result.exit_code == 1
    assert checks["policy-check"]["verdict"] == "missing"
    assert checks["backup-incremental"]["verdict"] == "missing"
    assert "no passphrase" in checks["backup-incremental"]["reason"]
    assert checks["replication"]["verdict"] == "missing"
    assert "no off-site site configured" in checks["replication"]["reason"]
    assert checks["restore-drill"]["verdict"] == "findings"          # the newest drill failed
    assert "FAILED" in checks["restore-drill"]["reason"]
    assert checks["correction-ledger"]["verdict"] == "findings"
    assert checks["audit-log"]["verdict"] == "ok"


def test_a_tampered_audit_log_is_a_finding(state, tmp_path):
    path = state / "audit" / "audit.log"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"backup run"', '"backup RUN"')
    path.write_text("\n".join(lines) + "\n")
    result, checks = pack(state, tmp_path)
    assert result.exit_code == 1 and checks["audit-log"]["verdict"] == "findings"
    assert "R-AUD-3" in checks["audit-log"]["reason"]


def test_evidence_before_since_does_not_count(state, tmp_path):
    result = build_pack(str(tmp_path / "p"), state_dir=str(state),
                        audit_log=str(state / "audit" / "audit.log"),
                        since=NOW - dt.timedelta(days=7), run=FakeOpskit(), now=NOW)
    checks = {c["check"]: c for c in result.data["checks"]}
    assert checks["restore-drill"]["verdict"] == "missing"
    assert "before --since" in checks["restore-drill"]["reason"]


def test_out_dir_must_be_new_or_empty(state, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep")
    with pytest.raises(UsageError, match="not an empty directory"):
        build_pack(str(busy), state_dir=str(state), audit_log=str(state / "audit" / "audit.log"),
                   since=SINCE, run=FakeOpskit(), now=NOW)
    assert (busy / "x").read_text() == "keep"


def test_html_escapes_everything():
    manifest = {"generated": "g", "since": "s", "host": "<h>", "operator": "o&",
                "summary": {"ok": False, "counts": {"ok": 0, "findings": 1, "stale": 0,
                                                    "missing": 0}},
                "checks": [{"check": "x", "rules": ["R-X"], "title": "<script>alert(1)</script>",
                            "interval": "1 d", "basis": "b", "verdict": "findings",
                            "reason": "<b>", "newest": None, "age_s": None, "evidence": []}],
                "files": []}
    text = render_html(manifest)
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;h&gt;" in text
