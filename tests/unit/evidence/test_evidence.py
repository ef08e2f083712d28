"""The evidence pack (issue #21): one honest verdict per rule, on real files in a
state directory (the opskit sub-commands the pack runs as children are stood in
for by FakeOpskit). For each rule: a state that makes it met, and the ways it
must not be (stale, n/a, disabled, empty, same-host site, missed period, findings)."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys

import pytest

from opskit.core.audit import AuditLog
from opskit.core.errors import UsageError
from opskit.core.signing import generate
from opskit.evidence.model import SOURCES
from opskit.evidence.pack import build_pack
from opskit.evidence.periods import regularity
from opskit.evidence.rules import load_rules, parse_requirements, requirements_file, shipped
from opskit.evidence.verify_pack import verify
from tests.fixtures.evidence.state import (
    NOW, PERSON, SINCE, FakeOpskit, ago, audit_log, daily_snapshots, drill, good_state,
    ledger_texts, perms_report, policy_run, site_state, write_json)

IMPLEMENTED = {"R-BAK-1", "R-BAK-2", "R-BAK-3", "R-BAK-4", "R-BAK-5", "R-ACC-1", "R-ACC-2",
               "R-ACC-3", "R-ACC-4", "R-ACC-5", "R-ACC-6", "R-ACC-8", "R-MED-2", "R-NET-1",
               "R-NET-3", "R-NET-4", "R-NET-5", "R-DAT-1", "R-DAT-2", "R-DAT-3", "R-DAT-5",
               "R-AUD-1", "R-AUD-2", "R-AUD-3", "R-SEC-2"}
REGISTERS = {"R-INC-1", "R-AUD-4", "R-AUD-5", "R-AUD-6"}     # opskit.incidents: empty registers are n/a


@pytest.fixture
def good(tmp_path):
    return good_state(tmp_path)


def build(tmp_path, home, fake, signer, sites, name="pack", **kw):
    kw.setdefault("repo", str(home / "repo"))
    result = build_pack(str(tmp_path / name), state_dir=str(home),
                        audit_log=str(home / "audit" / "audit.log"), since=SINCE, run=fake,
                        signer=signer, now=NOW, sites=sites,
                        meta={"host": "h1", "operator": "auditor"}, **kw)
    return result, {r["rule"]: r for r in result.data["rules"]}


def test_every_rule_of_requirements_md_gets_a_verdict_and_a_good_state_is_met(good, tmp_path):
    home, fake, signer, _other, sites = good
    result, rules = build(tmp_path, home, fake, signer, sites)
    ids = [r.id for r in load_rules()[0]]
    assert len(ids) == 41 and list(rules) == ids
    bad = {r: v["reason"] for r, v in rules.items() if r in IMPLEMENTED and v["verdict"] != "met"}
    assert not bad, bad
    assert {r for r, v in rules.items() if v["implemented"]} == IMPLEMENTED | REGISTERS
    for rid in REGISTERS:                # nothing happened: not applicable, never met
        assert rules[rid]["verdict"] == "not applicable", rules[rid]
        assert "nothing recorded" in rules[rid]["reason"]
    for rid in set(ids) - IMPLEMENTED - REGISTERS:
        assert rules[rid]["verdict"] == "no evidence"
        assert rules[rid]["reason"].startswith("no evidence: not implemented by opskit") or \
            rules[rid]["reason"].startswith("not implemented by opskit")
    assert result.exit_code == 0, result.summary
    assert verify(str(tmp_path / "pack")) == ([], signer.fingerprint)


def test_shipped_rules_match_requirements_md_with_chinese_for_each():
    rules, _sources = shipped()
    path = requirements_file()
    if path:
        parsed = [rid for rid, _en, _src in parse_requirements(open(path).read())]
        assert parsed == list(rules)
    assert all(r.zh and r.en and r.source for r in rules.values())
    assert "异地" in rules["R-BAK-3"].zh_terms


def test_the_first_paragraph_of_issue_21_is_not_met_and_exits_1(good, tmp_path):
    """Antivirus and firewall checks switched off by a policy, every USB check n/a,
    the 'off-site' copy a file:// directory on the repository's disk, the drill a 10%
    sample of two files, an empty ledger and an audit log 0 days old."""
    home, _fake, signer, _other, _sites = good
    for name in os.listdir(home / "policy" / "runs"):
        os.unlink(home / "policy" / "runs" / name)
    off = "disabled by the policy (site.yaml:3)"
    for d in range(0, 93):
        policy_run(home, ago(days=d, minutes=45), results=[
            {"check": "av.realtime", "status": "n/a", "rule": "R-NET-4", "reason": off},
            {"check": "net.firewall-default-deny", "status": "n/a", "rule": "R-NET-5",
             "reason": off},
            {"check": "media.usb-storage-disabled", "status": "n/a", "rule": "R-MED-2",
             "reason": "no USB subsystem (container)"},
            {"check": "net.default-route", "status": "pass", "rule": "R-NET-1"}])
    shutil.rmtree(home / "drills")
    drill(home, ago(days=3), site="dr", total=2, verified=1)
    audit_log(home, first=ago(minutes=30), count=2)
    (home / "repo").mkdir()
    sites = [{"name": "dr", "url": f"file://{home / 'offsite'}"}]
    result, rules = build(tmp_path, home, FakeOpskit(texts=[]), signer, sites)
    assert result.exit_code == 1
    v = {r: rules[r]["verdict"] for r in rules}
    assert v["R-NET-4"] == v["R-NET-5"] == "not met"
    assert "switched off" in rules["R-NET-4"]["reason"] and "site.yaml:3" in \
        rules["R-NET-4"]["reason"]
    assert v["R-MED-2"] == "no evidence" and "all n/a" in rules["R-MED-2"]["reason"]
    assert v["R-BAK-3"] == "not met" and "same filesystem" in rules["R-BAK-3"]["reason"]
    assert v["R-BAK-5"] == "not met" and "verified 1 of 2 files" in rules["R-BAK-5"]["reason"]
    assert v["R-DAT-1"] == "not met" and "not covered" in rules["R-DAT-1"]["reason"]
    for rid in ("R-DAT-2", "R-DAT-3", "R-DAT-5", "R-SEC-2"):
        assert v[rid] == "no evidence", rid
    assert v["R-AUD-3"] == "not met"
    for rid in ("R-NET-4", "R-NET-5", "R-MED-2", "R-BAK-3", "R-BAK-5", "R-DAT-1"):
        assert rid in result.summary


# --- backups --------------------------------------------------------------------------

@pytest.mark.parametrize("case,rules_,words", [
    ("full_missed", ["R-BAK-4"], "MISSED (no full backup for longer than 7 days)"),
    ("day_missed", ["R-BAK-4", "R-BAK-2"], "MISSED (no backup for longer than 1 day)"),
    ("stale", ["R-BAK-4", "R-BAK-2"], "2026-11-22"),
    ("no_passphrase", ["R-BAK-4", "R-BAK-1"], "no passphrase"),
])
def test_backups_not_met_when_a_period_is_missed(good, tmp_path, case, rules_, words):
    home, fake, signer, _o, sites = good
    if case == "full_missed":
        fake.snapshots = daily_snapshots(full_every=10)
    elif case == "day_missed":
        fake.snapshots = daily_snapshots(skip=(40, 41))
    elif case == "stale":
        fake.snapshots = daily_snapshots(skip=(0, 1, 2))
    else:
        fake.snapshots = "error"
    result, rules = build(tmp_path, home, fake, signer, sites)
    assert result.exit_code == 1
    for rid in rules_:
        assert rules[rid]["verdict"] in ("not met", "no evidence"), rid
        assert words in rules[rid]["reason"], rules[rid]["reason"]
    if case == "day_missed":
        gaps = [j["periods"]["gaps"] for j in rules["R-BAK-4"]["judgements"] if j["periods"]]
        assert any(g and g[0]["from"].startswith("2026-10-1") for g in gaps), gaps


@pytest.mark.parametrize("url,endpoint,words", [
    ("file://{home}/offsite", None, "same filesystem"),
    ("sftp://backup@localhost/srv", None, "is this host"),
    ("sftp://backup@127.0.0.1:2222/srv", None, "is this host"),
    ("s3://bucket/opskit", "http://127.0.0.1:9000", "is this host"),
])
def test_a_site_on_the_same_host_or_filesystem_is_not_off_site(good, tmp_path, url, endpoint,
                                                              words):
    home, fake, signer, _o, _sites = good
    (home / "repo").mkdir()
    sites = [{"name": "dr", "url": url.format(home=home), "endpoint_url": endpoint}]
    result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-BAK-3"]["verdict"] == "not met" and words in rules["R-BAK-3"]["reason"]
    assert rules["R-BAK-5"]["verdict"] == "not met"       # drills from it do not count either
    assert result.exit_code == 1


def test_a_file_site_on_another_filesystem_counts(good, tmp_path):
    home, fake, signer, _o, _sites = good
    other = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if other is None or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("no second filesystem here (/dev/shm): the off-site test needs one", pytrace=False)
    (home / "repo").mkdir()
    _result, rules = build(tmp_path, home, fake, signer,
                           [{"name": "dr", "url": f"file://{other}/opskit-dr-test"}])
    assert rules["R-BAK-3"]["verdict"] == "met", rules["R-BAK-3"]["reason"]


@pytest.mark.parametrize("change,words", [
    ({"verified": ago(days=100)}, "not verified"),
    ({"ok": False}, "FAILED"),
    ({"replicated": ago(hours=30)}, "more than 26 h ago"),
    ({"damaged": ["data/ab"]}, "damaged"),
])
def test_off_site_copy_must_be_fresh_and_verified_in_the_period(good, tmp_path, change, words):
    home, fake, signer, _o, sites = good
    site_state(home, **change)
    _result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-BAK-3"]["verdict"] == "not met" and words in rules["R-BAK-3"]["reason"]


def test_no_site_configured_is_not_met(good, tmp_path):
    home, fake, signer, _o, _sites = good
    _result, rules = build(tmp_path, home, fake, signer, [])
    assert rules["R-BAK-3"]["verdict"] == "not met"
    assert "no off-site site configured" in rules["R-BAK-3"]["reason"]


@pytest.mark.parametrize("case,words", [
    ("local", "not from a configured off-site site"),
    ("local_repo", "used the local repository"),
    ("sample", "verified 1 of 2 files"),
    ("failed", "FAILED"),
    ("missed", "MISSED"),
])
def test_drills_count_for_r_bak_5_only_from_a_site_and_every_period(good, tmp_path, case,
                                                                   words):
    home, fake, signer, _o, sites = good
    shutil.rmtree(home / "drills")
    for m in range(4):
        when = ago(days=30 * m + 2)
        if case == "local":
            drill(home, when, site="local")
        elif case == "local_repo":
            drill(home, when, repository=str(home / "repo"))
        elif case == "sample":
            drill(home, when, total=2, verified=1)
        elif case == "missed" and m == 1:
            continue
        else:
            drill(home, when)
    if case == "failed":
        drill(home, ago(days=1), passed=False)
    _result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-BAK-5"]["verdict"] == "not met"
    assert words in rules["R-BAK-5"]["reason"], rules["R-BAK-5"]["reason"]


# --- policy checks ----------------------------------------------------------------------

def _replace_newest_run(home, results):
    policy_run(home, ago(minutes=5), results=results)


@pytest.mark.parametrize("status,extra,verdict,words", [
    ("fail", {"findings": [{"message": "usb-storage module loaded"}]}, "not met",
     "usb-storage module loaded"),
    ("n/a", {"reason": "disabled by the policy (policies/site.yaml:7)"}, "not met",
     "switched off"),
    ("n/a", {"reason": "no USB subsystem"}, "no evidence", "all n/a"),
    ("error", {"reason": "cannot read /proc/modules"}, "no evidence", "cannot read"),
])
def test_policy_rule_met_only_from_a_pass(good, tmp_path, status, extra, verdict, words):
    home, fake, signer, _o, sites = good
    results = [{"check": "media.usb-storage-disabled", "status": status, "rule": "R-MED-2",
                **extra},
               {"check": "net.default-route", "status": "pass", "rule": "R-NET-1"}]
    _replace_newest_run(home, results)
    result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-MED-2"]["verdict"] == verdict
    assert words in rules["R-MED-2"]["reason"], rules["R-MED-2"]["reason"]
    assert rules["R-NET-1"]["verdict"] == "met"
    assert result.exit_code == 1


def test_policy_missed_day_and_stale_run_are_not_met(good, tmp_path):
    home, fake, signer, _o, sites = good
    runs = home / "policy" / "runs"
    for name in sorted(os.listdir(runs))[40:43]:          # three days in October
        os.unlink(runs / name)
    _result, rules = build(tmp_path, home, fake, signer, sites)
    for rid in ("R-MED-2", "R-NET-1", "R-AUD-2"):
        assert rules[rid]["verdict"] == "not met" and "MISSED" in rules[rid]["reason"], rid
    shutil.rmtree(runs)
    policy_run(home, ago(hours=30))
    _result, rules = build(tmp_path, home, fake, signer, sites, name="p2")
    assert rules["R-NET-1"]["verdict"] == "not met"


def test_policy_unreachable_host_is_no_evidence(good, tmp_path):
    home, fake, signer, _o, sites = good
    write_json(home / "policy" / "runs" / (ago(minutes=1).strftime("%Y%m%dT%H%M%S.%fZ")
                                           + "-ffffff.json"),
               {"started": "x", "hosts": [
                   {"host": "db1", "status": "ok", "results": [
                       {"check": "net.wireless", "status": "pass", "rule": "R-NET-3"}]},
                   {"host": "db2", "status": "unreachable", "error": "timed out"}]})
    _result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-NET-3"]["verdict"] == "no evidence"
    assert "db2 unreachable" in rules["R-NET-3"]["reason"]


# --- permission reviews ----------------------------------------------------------------------

def test_perms_findings_make_their_rule_not_met_and_only_it(good, tmp_path):
    home, fake, signer, _o, sites = good
    perms_report(home, ago(hours=2), findings=[
        {"rule": "R-ACC-2", "check": "sod-conflict", "severity": "high",
         "message": "wu.xia holds claims-rw and refund"}])
    result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-ACC-2"]["verdict"] == "not met"
    assert "wu.xia holds claims-rw and refund" in rules["R-ACC-2"]["reason"]
    assert rules["R-ACC-4"]["verdict"] == "met"
    assert result.exit_code == 1


@pytest.mark.parametrize("case,verdict,words", [
    ("tampered", "no evidence", "does not match its SHA-256"),
    ("empty", "no evidence", "collected no host"),
    ("missed", "not met", "MISSED"),
    ("none", "not met", "no stored 'opskit perms report'"),
])
def test_perms_report_must_be_genuine_non_empty_and_weekly(good, tmp_path, case, verdict, words):
    home, fake, signer, _o, sites = good
    folder = home / "perms" / "reports"
    if case == "tampered":
        perms_report(home, ago(hours=2))
        newest = sorted(os.listdir(folder))[-1]
        data = json.loads((folder / newest).read_text())
        data["summary"]["hosts"] = 9
        (folder / newest).write_text(json.dumps(data))
    elif case == "empty":
        perms_report(home, ago(hours=2), hosts=0)
        newest = sorted(os.listdir(folder))[-1]
        data = json.loads((folder / newest).read_text())
        data["summary"]["databases"] = 0
        from opskit.perms.report import content_sha256
        data["sha256"] = content_sha256({k: data[k] for k in (
            "snapshot", "snapshot_sha256", "snapshot_created", "generated", "summary",
            "findings", "warnings")})
        (folder / newest).write_text(json.dumps(data))
    elif case == "missed":
        for name in sorted(os.listdir(folder))[4:6]:
            os.unlink(folder / name)
    else:
        shutil.rmtree(folder)
    _result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-ACC-4"]["verdict"] == verdict
    assert words in rules["R-ACC-4"]["reason"], rules["R-ACC-4"]["reason"]


# --- ledger and audit log ---------------------------------------------------------------

@pytest.mark.parametrize("case,rules_,verdict,words", [
    ("empty", ["R-DAT-1", "R-DAT-2", "R-DAT-5"], "no evidence", "no correction request"),
    ("broken", ["R-DAT-1", "R-DAT-3"], "not met", "verification FAILED"),
    ("no_ticket", ["R-DAT-5"], "not met", "without a voucher or ticket: CR-1"),
    ("self_approved", ["R-DAT-2", "R-DAT-3", "R-SEC-2"], "not met",
     "without approval by a second person"),
    ("old", ["R-DAT-2"], "no evidence", "no correction request since"),
])
def test_ledger_rules(good, tmp_path, case, rules_, verdict, words):
    home, fake, signer, other, sites = good
    if case == "empty":
        fake.texts = []
    elif case == "broken":
        fake.ledger_ok = False
    elif case == "no_ticket":
        fake.texts = ledger_texts(signer, other, ticket="")
    elif case == "self_approved":
        fake.texts = ledger_texts(signer, other, approver=False)
    else:
        fake.texts = ledger_texts(signer, other, when=ago(days=200))
    _result, rules = build(tmp_path, home, fake, signer, sites)
    for rid in rules_:
        assert rules[rid]["verdict"] == verdict, (rid, rules[rid]["reason"])
        assert words in rules[rid]["reason"], rules[rid]["reason"]


@pytest.mark.parametrize("case,verdict,words", [
    ("young", "not met", "is not covered"),
    ("tampered", "not met", "R-AUD-3: audit log verification FAILED"),
    ("missing", "no evidence", "no audit log"),
])
def test_audit_log_must_be_intact_and_cover_the_period(good, tmp_path, case, verdict, words):
    home, fake, signer, _o, sites = good
    path = home / "audit" / "audit.log"
    if case == "young":
        audit_log(home, first=ago(days=5))
    elif case == "tampered":
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0], lines[1].replace("backup run", "backup RUN"),
                                   *lines[2:]]) + "\n")
    if case == "missing":
        os.unlink(path)
    result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-AUD-3"]["verdict"] == verdict
    assert words in rules["R-AUD-3"]["reason"], rules["R-AUD-3"]["reason"]
    assert result.exit_code == 1


ACCESS = {"ok": True, "store": "/s/access", "requests": 2, "decisions": 7, "warning": None,
          "findings": []}
FORGED = {"request": "AR-0002", "entry": "event 3 (approve by lead.one)", "rule": "R-ACC-5",
          "problem": "a second approval by the same person"}
UNMATCHED = {"request": "AR-0001", "entry": "audit entry seq 9 (access approve)",
             "rule": "R-ACC-3", "problem": "AR-0001 holds no such signed event"}


@pytest.mark.parametrize("access,verdicts,words", [
    (ACCESS, ("met", "met"), "2 access request(s) and 7 decision(s)"),
    ({**ACCESS, "ok": False, "findings": [FORGED, UNMATCHED]}, ("not met", "not met"),
     "AR-0002 event 3 (approve by lead.one): a second approval by the same person"),
    ({**ACCESS, "ok": False, "findings": [UNMATCHED]}, ("not met", "met"),
     "1 forged or unmatched access decision(s): AR-0001 audit entry seq 9"),
    ({**ACCESS, "ok": False, "warning": "the roster is not available (x)"},
     ("no evidence", "no evidence"), "not re-checked: the roster is not available"),
    ("error", ("no evidence", "no evidence"), "cannot re-check the access decisions"),
])
def test_the_audit_source_reports_the_access_decisions_re_check(good, tmp_path, access,
                                                               verdicts, words):
    """R-ACC-3 / R-ACC-5 from 'opskit access verify': a forged approval is not met in the
    audit source, whatever the permission reviews say; no roster is never met."""
    home, fake, signer, _o, sites = good
    fake.access = access
    result, rules = build(tmp_path, home, fake, signer, sites)
    for rid, verdict in zip(("R-ACC-3", "R-ACC-5"), verdicts):
        assert rules[rid]["verdict"] == verdict, (rid, rules[rid]["reason"])
    assert words in rules["R-ACC-3"]["reason"], rules["R-ACC-3"]["reason"]
    assert result.exit_code == (0 if verdicts == ("met", "met") else 1)
    if access != "error":
        carried = json.loads((tmp_path / "pack" / "audit" / "access-verify.json").read_text())
        assert carried["decisions"] == 7


# --- sealed, signed, self-verifying -------------------------------------------------------

@pytest.fixture
def sealed(good, tmp_path):
    home, fake, signer, other, sites = good
    build(tmp_path, home, fake, signer, sites)
    return tmp_path / "pack", signer, other


def test_untouched_pack_verifies_also_with_the_shipped_verify_py(sealed):
    out, signer, _other = sealed
    text = (out / "verify.py").read_text()
    assert len(text.splitlines()) < 100 and "opskit" not in \
        "".join(line for line in text.splitlines() if line.startswith(("import", "from")))
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-I", "verify.py"], cwd=out, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0 and signer.fingerprint in proc.stdout, proc.stdout + proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    anchor = manifest["audit_anchor"]
    last = json.loads((out / "audit" / "audit.log").read_text().splitlines()[-1])
    assert last["command"] == "evidence seal" and last["seq"] == anchor["seq"]
    assert {f["file"] for f in manifest["files"]} >= {"index.html", "verify.py", "rules.json",
                                                      "audit/audit.log"}


@pytest.mark.parametrize("tamper,named", [
    ("edit_byte", "index.html: CHANGED"),
    ("missing", "drills/"),
    ("added", "extra.txt: ADDED"),
    ("forged_sig", "manifest.sig"),
    ("edited_manifest", "manifest.sig"),
    ("audit_edited", "audit/audit.log"),
    ("ledger_edited", "corrections/ledger-redacted.json"),
])
def test_a_tampered_pack_fails_naming_the_file(sealed, tmp_path, tamper, named):
    out, signer, other = sealed
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if tamper == "edit_byte":
        data = bytearray((out / "index.html").read_bytes())
        data[100] ^= 1
        (out / "index.html").write_bytes(bytes(data))
    elif tamper == "missing":
        os.unlink(out / next(f["file"] for f in manifest["files"]
                             if f["file"].startswith("drills/")))
    elif tamper == "added":
        (out / "extra.txt").write_text("x")
    elif tamper == "forged_sig":
        seal = json.loads((out / "manifest.sig").read_text())
        from opskit.evidence.verify_pack import PACK_CONTEXT
        seal.update(key=other.public_b64, sig=other.sign(manifest_path.read_bytes(),
                                                         context=PACK_CONTEXT))
        (out / "manifest.sig").write_text(json.dumps(seal))
        problems, _ = verify(str(out), signer.public_b64)          # pinned: refused
        assert any("another key" in p for p in problems)
        return
    elif tamper == "edited_manifest":
        manifest_path.write_text(manifest_path.read_text().replace('"met"', '"MET"', 1))
    elif tamper == "audit_edited":
        lines = (out / "audit" / "audit.log").read_text().splitlines()
        lines[1] = lines[1].replace("backup run", "backup RUN")
        (out / "audit" / "audit.log").write_text("\n".join(lines) + "\n")
        # even re-listing the new hash in the manifest leaves the chain broken
    else:
        path = out / "corrections" / "ledger-redacted.json"
        path.write_text(path.read_text().replace('"bob"', '"eve"'))
    problems, _ = verify(str(out))
    assert problems and any(named in p for p in problems), problems
    proc = subprocess.run([sys.executable, "verify.py"], cwd=out, capture_output=True, text=True)
    assert proc.returncode == 1 and named in proc.stdout


def test_verify_checks_the_audit_and_ledger_chains_not_just_hashes(sealed):
    """Re-hash a changed ledger and audit log into a re-signed manifest: the chains
    still name the file (a forger with the key but not the ledger signers' keys)."""
    out, signer, _other = sealed
    path = out / "corrections" / "ledger-redacted.json"
    data = json.loads(path.read_text())
    data["entries"][1]["actor"] = "eve"
    data["entries"][1]["hash"] = "0" * 64
    path.write_text(json.dumps(data))
    manifest = json.loads((out / "manifest.json").read_text())
    import hashlib
    for f in manifest["files"]:
        if f["file"] == "corrections/ledger-redacted.json":
            f["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    raw = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    (out / "manifest.json").write_bytes(raw)
    from opskit.evidence.verify_pack import PACK_CONTEXT
    seal = json.loads((out / "manifest.sig").read_text())
    seal["sig"] = signer.sign(raw, context=PACK_CONTEXT)
    (out / "manifest.sig").write_text(json.dumps(seal))
    problems, _ = verify(str(out))
    assert any("ledger chain broken at seq 2" in p for p in problems), problems


# --- privacy and language -----------------------------------------------------------

def test_personal_data_stays_out_unless_include_data_which_the_audit_log_records(good, tmp_path):
    home, fake, signer, _o, sites = good

    def blob(out):
        return b"".join(open(os.path.join(d, n), "rb").read()
                        for d, _, names in os.walk(out) for n in names)
    build(tmp_path, home, fake, signer, sites, name="private")
    data = blob(tmp_path / "private")
    assert PERSON["id_card_no"].encode() not in data and "张三丰".encode() not in data
    red = json.loads((tmp_path / "private" / "corrections" / "ledger-redacted.json").read_text())
    before = red["entries"][0]["body"]["before"]
    assert before["rows"] == 1 and before["row_keys"] == [{"id": 7}] and len(before["sha256"]) == 64
    build(tmp_path, home, fake, signer, sites, name="full", include_data=True)
    assert PERSON["id_card_no"].encode() in blob(tmp_path / "full")
    assert verify(str(tmp_path / "full"))[0] == []
    entries = list(AuditLog(home / "audit" / "audit.log").entries())
    seals = [e for e in entries if e["command"] == "evidence seal"]
    assert [e["details"]["include_data"] for e in seals] == [False, True]


def test_chinese_and_english_pages(good, tmp_path):
    home, fake, signer, _o, sites = good
    build(tmp_path, home, fake, signer, sites, name="en")
    build(tmp_path, home, fake, signer, sites, name="zh", lang="zh-CN")
    en = (tmp_path / "en" / "index.html").read_text()
    zh = (tmp_path / "zh" / "index.html").read_text()
    for page in (en, zh):       # every rule with its Chinese and English text and source
        assert "系统数据的备份异地存放" in page and "kept off-site" in page and "S1 #2; S2 §5.2" in page
    assert "Rules, evidence and verdicts" in en and '<html lang="en">' in en
    assert "规则、证据与结论" in zh and "Rules, evidence and verdicts" not in zh
    assert '<html lang="zh-CN">' in zh and "满足" in zh and "<script" not in zh


ENGLISH_REASONS = ["in the period", "newest run", "snapshots in", "not implemented by opskit",
                   "check(s) passed", "newest report", "recoverable:", "drill from",
                   "MISSED", "does not count", "the ledger holds no correction request",
                   "nothing shows the rule followed", "not applicable: nothing recorded",
                   "kept since", "audit log intact", "replicated", "periods", "no policy check"]
CHINESE_REASONS = ["审计期内", "最近一次运行", "opskit 未实现此项检查", "项检查通过", "可恢复性",
                   "缺失（超过 31 天没有从异地站点进行的灾难恢复演练）", "不计入",
                   "台账中没有更正申请", "不适用：自", "审计日志完整", "个周期已覆盖"]


def test_a_chinese_pack_gives_its_reasons_in_chinese_too(good, tmp_path):
    """--lang zh-CN: the generated reasons (with their dates, hosts and counts) are
    translated gettext messages, for met, not met, no evidence and n/a rules alike;
    rules.json and the English page keep the English."""
    home, _fake, signer, _o, sites = good
    shutil.rmtree(home / "drills")                       # R-BAK-5 not met: a missed period
    drill(home, ago(days=3), total=2, verified=1)
    fake = FakeOpskit(texts=[])                          # R-DAT-2/3/5 no evidence
    _, rules = build(tmp_path, home, fake, signer, sites, name="zh", lang="zh-CN")
    verdicts = {v["verdict"] for v in rules.values()}
    assert {"met", "not met", "no evidence", "not applicable"} <= verdicts
    zh = (tmp_path / "zh" / "index.html").read_text()
    english = [p for p in ENGLISH_REASONS if p in zh]
    assert not english, english
    missing = [p for p in CHINESE_REASONS if p not in zh]
    assert not missing, missing
    assert "2 个文件中的 1 个" in zh and "db1" in zh     # placeholders keep their data
    stored = json.loads((tmp_path / "zh" / "rules.json").read_text())
    assert any("verified 1 of 2 files" in r["reason"] for r in stored)
    _, rules = build(tmp_path, home, fake, signer, sites, name="en")
    en = (tmp_path / "en" / "index.html").read_text()
    assert "verified 1 of 2 files" in en and "审计期内" not in en


def test_every_reason_message_has_a_chinese_translation_with_the_same_placeholders():
    """Babel extracts every T("...") of opskit/evidence; each needs a msgstr in the
    zh_CN catalogue naming exactly the placeholders of its msgid."""
    import string
    from babel.messages.extract import extract_from_dir
    from opskit.evidence.i18n import translations
    package = os.path.dirname(os.path.abspath(build_pack.__code__.co_filename))
    found = {m for _f, _l, m, _c, _x in extract_from_dir(
        package, method_map=[("**.py", "python")], keywords={"T": None}) if m}
    assert len(found) > 80
    _ = translations("zh-CN").gettext
    names = lambda text: {f for _t, f, _s, _c in string.Formatter().parse(text) if f}
    untranslated = sorted(m for m in found if _(m) == m)
    assert not untranslated, untranslated
    wrong = sorted(m for m in found if names(_(m)) != names(m))
    assert not wrong, wrong


# --- rules the site declares not applicable (config evidence.not_applicable) ---------

WIRELESS = "no wireless hardware in the data centre (asset register 2026-11)"


def test_a_declared_rule_is_not_applicable_with_its_reason_in_the_page_and_audit_entry(
        good, tmp_path):
    home, fake, signer, _o, sites = good
    declared = {"R-NET-3": WIRELESS, "R-ACC-7": "no business system of ours: MFA is the "
                                                "hospital's", "<name>": None}
    result, rules = build(tmp_path, home, fake, signer, sites, not_applicable=declared)
    assert result.exit_code == 0, result.summary
    for rid in ("R-NET-3", "R-ACC-7"):           # implemented or not: the site's call
        assert rules[rid]["verdict"] == "not applicable", rules[rid]
        assert rules[rid]["declared_not_applicable"]["refused"] is False
    assert WIRELESS in rules["R-NET-3"]["reason"]
    assert "<name>" not in json.dumps(result.data["not_applicable"])
    page = (tmp_path / "pack" / "index.html").read_text()
    assert f"not applicable ({WIRELESS})" in page
    seal = list(AuditLog(home / "audit" / "audit.log").entries())[-1]
    assert seal["command"] == "evidence seal"
    assert {"rule": "R-NET-3", "reason": WIRELESS, "refused": False} in \
        seal["details"]["not_applicable"]
    assert {d["rule"] for d in seal["details"]["not_applicable"]} == {"R-NET-3", "R-ACC-7"}
    _, zh = build(tmp_path, home, fake, signer, sites, name="zh", lang="zh-CN",
                  not_applicable=declared)
    assert f"不适用 ({WIRELESS})" in (tmp_path / "zh" / "index.html").read_text()


def test_a_declaration_never_turns_findings_into_not_applicable(good, tmp_path):
    home, fake, signer, _o, sites = good
    _replace_newest_run(home, [
        {"check": "net.wireless", "status": "fail", "rule": "R-NET-3",
         "findings": [{"message": "wlan0 is up"}]},
        *[{"check": c, "status": "pass", "rule": r, "findings": []}
          for c, r in (("av.realtime", "R-NET-4"), ("net.default-route", "R-NET-1"))]])
    result, rules = build(tmp_path, home, fake, signer, sites,
                          not_applicable={"R-NET-3": WIRELESS, "R-NET-4": "no Windows here"})
    assert result.exit_code == 1
    assert rules["R-NET-3"]["verdict"] == "not met"
    assert "wlan0 is up" in rules["R-NET-3"]["reason"]
    assert "declaration 'not applicable (" + WIRELESS + ")' is refused" in \
        rules["R-NET-3"]["reason"]
    assert rules["R-NET-3"]["declared_not_applicable"]["refused"] is True
    assert rules["R-NET-4"]["verdict"] == "not applicable"     # no finding: accepted
    seal = list(AuditLog(home / "audit" / "audit.log").entries())[-1]
    assert {"rule": "R-NET-3", "reason": WIRELESS, "refused": True} in \
        seal["details"]["not_applicable"]
    assert "R-NET-3" in seal["details"]["not_met"]


@pytest.mark.parametrize("declared,words", [
    ({"R-NOPE-1": "x"}, "evidence.not_applicable.R-NOPE-1: no such rule"),
    ({"R-NET-3": "  "}, "evidence.not_applicable.R-NET-3: a reason is required"),
])
def test_a_declaration_must_name_a_rule_and_a_reason(good, tmp_path, declared, words):
    home, fake, signer, _o, sites = good
    with pytest.raises(UsageError, match=words):
        build(tmp_path, home, fake, signer, sites, not_applicable=declared)


# --- periods follow the configured schedule -----------------------------------------

def _schedule(jobs: str):
    from opskit.core.yamlfile import parse_yaml
    from opskit.schedule.jobs import parse_schedule
    return parse_schedule(parse_yaml("version: 1\njobs:\n" + jobs, "site-schedule.yaml"))


WEEKLY_DRILL = """  drill:
    command: [backup, drill, --site, dr]
    every: week
  full:
    command: [backup, run, --full]
    every: month
  perms:
    command: [perms, snapshot]
    every: week
  report:
    command: [perms, report]
    after: [perms]
"""


def test_periods_follow_the_schedule_a_weekly_drill_job_means_7_days(good, tmp_path):
    home, fake, signer, _o, sites = good
    _, monthly = build(tmp_path, home, fake, signer, sites, name="default")
    assert monthly["R-BAK-5"]["verdict"] == "met"          # embedded schedule: monthly drill
    assert monthly["R-BAK-5"]["judgements"][0]["periods"]["every_days"] == 31
    _, rules = build(tmp_path, home, fake, signer, sites, schedule=_schedule(WEEKLY_DRILL))
    bak5 = rules["R-BAK-5"]
    assert bak5["verdict"] == "not met"                    # drills 30 days apart
    assert bak5["judgements"][0]["periods"]["every_days"] == 7
    assert "longer than 7 days" in bak5["reason"] and "schedule job 'drill'" in bak5["reason"]
    assert rules["R-ACC-1"]["verdict"] == "met"            # 'after' job: weekly like perms


def test_the_regulation_floor_wins_over_a_lax_schedule(good, tmp_path):
    """R-BAK-4: a full backup at least every 7 days, whatever the schedule says; a
    duty no job runs keeps its floor too."""
    home, _fake, signer, _o, sites = good
    snaps = daily_snapshots(full_every=30)                 # monthly fulls, as scheduled
    _, rules = build(tmp_path, home, FakeOpskit(snapshots=snaps, texts=ledger_texts(
        signer, _o)), signer, sites, schedule=_schedule(WEEKLY_DRILL))
    full = [j for j in rules["R-BAK-4"]["judgements"] if j["periods"]["duty"] == "full backup"]
    assert full[0]["periods"]["every_days"] == 7 and full[0]["verdict"] == "not met"
    assert "runs every 31 d: judged per 7 d" in full[0]["reason"]
    policy = rules["R-NET-1"]["judgements"][0]["periods"]
    assert policy["every_days"] == 1                       # no policy job: daily floor
    assert "no job of the schedule" in rules["R-NET-1"]["reason"]


def test_out_dir_must_be_new_or_empty(good, tmp_path):
    home, fake, signer, _o, sites = good
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep")
    with pytest.raises(UsageError, match="not an empty directory"):
        build(tmp_path, home, fake, signer, sites, name="busy")
    assert (busy / "x").read_text() == "keep"


def test_sources_are_a_registry_a_new_one_is_one_function(good, tmp_path):
    from opskit.evidence.model import MET, judge, source
    home, fake, signer, _o, sites = good
    try:
        @source("incidents-test", "R-INC-1")
        def incidents(ctx):
            return [judge("R-INC-1", MET, "2 incidents, each reported within 2 h")]
        _r, rules = build(tmp_path, home, fake, signer, sites)
        assert rules["R-INC-1"]["verdict"] == "met" and rules["R-INC-1"]["implemented"]
    finally:
        SOURCES.pop("incidents-test", None)


# --- regularity ---------------------------------------------------------------------

def test_regularity_names_gaps_with_dates():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=28)
    weekly = [start + dt.timedelta(days=d) for d in (1, 8, 15, 22)]
    assert regularity("full", weekly, 7 * 86400, 3600, start, end).ok
    missed = regularity("full", [weekly[0], weekly[3]], 7 * 86400, 3600, start, end)
    assert not missed.ok and missed.gaps == [
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-23T00:00:00Z", "days": 21.0}]
    assert "2026-01-02 .. 2026-01-23" in missed.describe()
    assert [p["count"] for p in missed.periods] == [1, 0, 0, 1]
    empty = regularity("full", [], 7 * 86400, 0, start, end)
    assert not empty.ok and empty.count == 0


def test_incident_register_is_one_more_source_a_missed_deadline_is_not_met(good, tmp_path):
    from opskit.incidents import incidents
    home, fake, signer, _o, sites = good
    when = ago(days=10)
    incidents.open_incident(str(home), actor="alice", grade="major", type="intrusion",
                            place="db01", scope="claims DB", description="odd login",
                            detected_at=when, now=when)          # never reported: 2 h missed
    result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-INC-1"]["verdict"] == "not met" and "missed" in rules["R-INC-1"]["reason"]
    assert rules["R-AUD-4"]["verdict"] == "not applicable"      # still nothing recorded there
    assert result.exit_code == 1 and "R-INC-1" in result.summary


def _mlps3_run(home, when, statuses):
    from tests.fixtures.evidence.state import write_json, z
    rid = when.strftime("%Y%m%dT%H%M%S.%fZ") + "-mlps03"
    results = [{"check": f"mlps.item{i}", "status": s, "rule": "R-SEC-1", "findings": []}
               for i, s in enumerate(statuses)]
    write_json(home / "policy" / "runs" / f"{rid}.json",
               {"id": rid, "started": z(when), "profile": "mlps3", "exit_code": 0,
                "hosts": [{"host": "db1", "status": "ok", "results": results}]})


def test_r_sec_1_comes_from_mlps3_runs_and_they_never_stand_in_for_the_baseline(good, tmp_path):
    home, fake, signer, _other, sites = good
    _result, rules = build(tmp_path, home, fake, signer, sites, name="none")
    assert rules["R-SEC-1"]["verdict"] == "no evidence"            # the profile never ran
    _mlps3_run(home, ago(minutes=5), ["pass", "manual", "fail"])   # newer than every baseline run
    _result, rules = build(tmp_path, home, fake, signer, sites, name="failed")
    assert rules["R-SEC-1"]["verdict"] == "not met" and "mlps.item2" in rules["R-SEC-1"]["reason"]
    assert rules["R-MED-2"]["verdict"] == "met"      # judged from the newest *baseline* run
    _mlps3_run(home, ago(minutes=1), ["pass", "manual", "pass"])
    _result, rules = build(tmp_path, home, fake, signer, sites, name="passed")
    assert rules["R-SEC-1"]["verdict"] == "met" and "1 manual" in rules["R-SEC-1"]["reason"]


# --- signed audit checkpoints (#28 item 7): carried in the pack, judged against ----------

def _anchor(home, signer, drop=0):
    """Sign a checkpoint of the log's head as the scheduled job does; then (an attacker)
    cut ``drop`` entries off the end and remove the unsigned local checkpoints."""
    from opskit.core.anchors import sign_checkpoint, write_anchor
    log = AuditLog(str(home / "audit" / "audit.log"))
    path = write_anchor(log.anchors_dir, sign_checkpoint(log.checkpoint(), signer))
    os.unlink(log.checkpoints_path)
    if drop:
        lines = open(log.path, "rb").read().splitlines(keepends=True)
        open(log.path, "wb").write(b"".join(lines[:-drop]))
    return path


def test_signed_checkpoints_are_carried_and_judged_against(good, tmp_path):
    home, fake, signer, _o, sites = good
    path = _anchor(home, signer)
    result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-AUD-3"]["verdict"] == "met", rules["R-AUD-3"]["reason"]
    assert "checked against 1 signed checkpoint(s)" in rules["R-AUD-3"]["reason"]
    carried = tmp_path / "pack" / "audit" / "anchors" / os.path.basename(path)
    assert carried.read_bytes() == open(path, "rb").read()
    assert verify(str(tmp_path / "pack")) == ([], signer.fingerprint)


def test_tail_cut_below_the_newest_signed_checkpoint_is_not_met(good, tmp_path):
    home, fake, signer, _o, sites = good
    _anchor(home, signer, drop=2)
    result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-AUD-3"]["verdict"] == "not met"
    assert "truncated" in rules["R-AUD-3"]["reason"]
    assert "signed checkpoint" in rules["R-AUD-3"]["reason"]
    assert result.exit_code == 1


def test_without_the_signed_checkpoint_the_same_cut_passes_unseen(good, tmp_path):
    home, fake, signer, _o, sites = good
    path = _anchor(home, signer, drop=2)
    os.unlink(path)
    _result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-AUD-3"]["verdict"] == "met"          # the limit the anchors close
    assert "no signed checkpoint" in rules["R-AUD-3"]["reason"]


@pytest.mark.parametrize("case,words", [("altered", "bad signature"),
                                        ("stranger", "signed by unknown key")])
def test_a_bad_signed_checkpoint_is_itself_not_met(good, tmp_path, case, words):
    home, fake, signer, other, sites = good
    path = _anchor(home, other if case == "stranger" else signer)
    if case == "altered":
        anchor = json.load(open(path))
        anchor["checkpoint"]["seq"] -= 1
        open(path, "w").write(json.dumps(anchor))
    _result, rules = build(tmp_path, home, fake, signer, sites)
    assert rules["R-AUD-3"]["verdict"] == "not met"
    assert words in rules["R-AUD-3"]["reason"], rules["R-AUD-3"]["reason"]
    _result, rules = build(tmp_path, home, fake, signer, sites, name="trusting",
                           anchor_keys={other.public_raw: "other"})
    assert (rules["R-AUD-3"]["verdict"] == "met") == (case == "stranger")


def _archive_record(home, step, approved_by, when):
    from opskit.archives import register as archive_register
    return archive_register.append(str(home), {
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "step": step, "command": f"test {step}",
        "repository": "r1", "snapshot": "ab" * 32, "purpose": "court order 7",
        "actor": "wang", "approved_by": approved_by})


def test_r_aud_6_from_the_archive_register(good, tmp_path):
    """Archive control (R-AUD-6): silent with nothing read or destroyed; met when every
    read and destruction carries its approvers; not met on an unapproved one or a
    tampered register."""
    home, fake, signer, _other, sites = good
    _result, rules = build(tmp_path, home, fake, signer, sites, name="quiet")
    assert rules["R-AUD-6"]["verdict"] == "not applicable"
    _archive_record(home, "drill", [], ago(days=3))                 # exempt, registered
    _archive_record(home, "access", ["li"], ago(days=2))
    _archive_record(home, "destroy", ["li"], ago(days=1))
    _result, rules = build(tmp_path, home, fake, signer, sites, name="approved")
    assert rules["R-AUD-6"]["verdict"] == "met", rules["R-AUD-6"]
    assert "1 archive read(s) and 1 destruction(s)" in rules["R-AUD-6"]["reason"]
    _archive_record(home, "access", [], ago(hours=5))               # slipped past the gate
    _result, rules = build(tmp_path, home, fake, signer, sites, name="unapproved")
    assert rules["R-AUD-6"]["verdict"] == "not met"
    path = home / "incidents" / "archives.jsonl"
    path.write_text(path.read_text().replace("court order 7", "court order 8", 1))
    _result, rules = build(tmp_path, home, fake, signer, sites, name="tampered")
    assert rules["R-AUD-6"]["verdict"] == "not met" and "line 1" in rules["R-AUD-6"]["reason"]


# --- the off-site anchor directory (audit.anchor_dir) made to look empty --------------

def _offsite(home, signer, tmp_path, drop=2):
    """Sign a checkpoint of the head into an off-site directory (audit.anchor_dir) and
    the local copy, as the scheduled job does; then (root on this machine) cut ``drop``
    entries off the end and remove every checkpoint kept beside the log."""
    from opskit.core.anchors import sign_checkpoint, write_anchor
    log = AuditLog(str(home / "audit" / "audit.log"))
    anchor = sign_checkpoint(log.checkpoint(), signer)
    off = tmp_path / "offsite"
    write_anchor(str(off), anchor)
    write_anchor(log.anchors_dir, anchor)
    os.unlink(log.checkpoints_path)
    shutil.rmtree(log.anchors_dir)
    lines = open(log.path, "rb").read().splitlines(keepends=True)
    open(log.path, "wb").write(b"".join(lines[:-drop]))
    return off, [str(off), log.anchors_dir]


def test_the_offsite_anchor_catches_the_cut_when_it_is_there(good, tmp_path):
    home, fake, signer, _o, sites = good
    _off, dirs = _offsite(home, signer, tmp_path)
    _result, rules = build(tmp_path, home, fake, signer, sites, anchor_dirs=dirs)
    assert rules["R-AUD-3"]["verdict"] == "not met"
    assert "truncated" in rules["R-AUD-3"]["reason"]


@pytest.mark.parametrize("how", ["removed", "unmounted", "host renamed"])
def test_a_configured_anchor_dir_with_nothing_of_this_log_is_not_met(good, tmp_path,
                                                                     monkeypatch, how):
    """R-AUD-3, R-DAT-1, R-AUD-1: root cuts the tail and wipes the local checkpoints,
    then hides the off-site anchors without touching them: the directory moved away,
    the mount unmounted (an empty mount point), or the host renamed so every anchor
    counts as another host's. The pack used to say 'met' with 'no signed checkpoint'."""
    home, fake, signer, _o, sites = good
    off, dirs = _offsite(home, signer, tmp_path)
    if how == "removed":
        off.rename(tmp_path / "hidden")
    elif how == "unmounted":
        off.rename(tmp_path / "hidden")
        off.mkdir()
    else:
        import socket
        monkeypatch.setattr(socket, "gethostname", lambda: "renamed-host")
    _result, rules = build(tmp_path, home, fake, signer, sites, anchor_dirs=dirs)
    for rid in ("R-AUD-3", "R-DAT-1", "R-AUD-1"):
        assert rules[rid]["verdict"] == "not met", (rid, rules[rid]["reason"])
        assert str(off) in rules[rid]["reason"], rules[rid]["reason"]
