"""The incident, event, error and approve-op commands as a user runs them, the R-SEC-2
gate on 'backup forget', and a failed drill opening an incident (#25)."""
import datetime as dt
import json
import os

import pytest

from opskit.core.signing import generate
from tests.harness.backup import BackupCli
from tests.harness.backup import write as _write

pytestmark = pytest.mark.e2e

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def ago(hours):
    return (NOW - dt.timedelta(hours=hours)).isoformat()


def _json(run, code=0):
    assert run.exit_code == code, run.output
    assert "Traceback" not in run.output
    return json.loads(run.stdout)


def test_incident_life_with_stated_times_and_overdue(opskit):
    opened = _json(opskit("incident", "open", "--grade", "major", "--type", "intrusion",
                          "--place", "db01", "--scope", "claims DB", "--description",
                          "unknown login", "--detected-at", ago(10), "--json"))
    iid = opened["id"]
    assert iid == "INC-0001" and opened["grade"] == "major"
    opskit("incident", "report", iid, "--to", "security", "--recipient", "sec duty",
           "--at", ago(9))                                   # 1 h after detection: kept
    run = opskit("incident", "overdue", "--json")
    missed = _json(run, 1)["missed"]
    assert [m["deadline"] for m in missed] == ["report-superior"]   # major: 1 h, not done
    assert "INC-0001 report-superior" in opskit("incident", "overdue").stdout
    closing = opskit("incident", "close", iid, "--analysis", "a", "--rectification", "r",
                     "--effect", "e")
    assert closing.exit_code == 2 and "report-superior" in closing.stderr
    opskit("incident", "report", iid, "--to", "superior", "--recipient", "boss", "--at", ago(8))
    opskit("incident", "update", iid, "--measures", "account locked", "--at", ago(7))
    done = _json(opskit("incident", "close", iid, "--analysis", "a", "--rectification", "r",
                        "--effect", "e", "--json"))
    states = {d["deadline"]: d["state"] for d in done["deadlines"]}
    assert states == {"report-security": "kept", "report-superior": "missed",
                      "first-response": "kept", "rectification": "kept"}
    # as of one hour after detection, nothing was missed yet
    assert opskit("incident", "overdue", "--at", ago(9.5)).exit_code == 0
    listed = _json(opskit("incident", "list", "--json"))
    assert listed[0]["state"] == "closed" and listed[0]["missed"] == ["report-superior"]
    audit = _json(opskit("audit", "show", "--command", "incident", "--json"))
    assert {"incident open", "incident report", "incident close"} <= {a["command"] for a in audit}
    assert opskit("incident", "verify").exit_code == 0
    prom = os.path.join(os.environ["OPSKIT_HOME"], "schedule", "metrics", "opskit_incidents.prom")
    assert 'opskit_incidents_open{grade="major"} 0' in open(prom).read()


def test_a_future_detection_time_is_a_usage_error(opskit):
    run = opskit("incident", "open", "--grade", "general", "--type", "t", "--place", "p",
                 "--scope", "s", "--description", "d", "--detected-at", ago(-5))
    assert run.exit_code == 2 and "future" in run.stderr


def test_event_prune_refuses_the_retention_floor(opskit):
    _json(opskit("event", "record", "--at", ago(30), "--place", "server room", "--type", "USB",
                 "--scope", "db01", "--measures", "removed", "--responsible", "zhang",
                 "--json"))
    rows = _json(opskit("event", "list", "--json"))
    assert rows[0]["in_time"] is False                       # 30 h after: late
    run = opskit("event", "prune", "--before", ago(24 * 100))
    assert run.exit_code == 2 and "183 days" in run.stderr and "R-AUD-4" in run.stderr
    assert len(_json(opskit("event", "list", "--json"))) == 1
    missing = opskit("event", "record", "--place", "x", "--type", "y", "--scope", "z",
                     "--measures", "m")
    assert missing.exit_code == 2 and "responsible" in missing.output


@pytest.fixture
def people(tmp_path):
    keys = {n: generate(str(tmp_path / "keys" / n), n) for n in ("li", "wang", "zhao")}
    cfg = tmp_path / "opskit.yaml"
    cfg.write_text("incidents:\n  supervisors:\n    li: " + keys["li"][1] + "\n"
                   "    wang: " + keys["wang"][1] + "\n  reviewers:\n"
                   "    li: " + keys["li"][1] + "\n    zhao: " + keys["zhao"][1] + "\n"
                   "backup:\n  retention:\n    floor_days: 0\n")
    return cfg, {n: k[0].path for n, k in keys.items()}


def test_business_error_review_is_signed_and_refusals_are_exit_2(opskit, people):
    cfg, key = people
    as_ = lambda who, *a: opskit("--config", cfg, "--operator", who, *a)  # noqa: E731
    err = _json(as_("wang", "error", "report", "--grade", "重大", "--description", "paid twice",
                    "--occurred-at", ago(2), "--json"))
    eid = err["id"]
    selfie = as_("wang", "error", "review", eid, "--key", key["wang"])
    assert selfie.exit_code == 2 and "self-approval" in selfie.stderr
    stranger = as_("zhao", "error", "review", eid, "--key", key["zhao"])
    assert stranger.exit_code == 2 and "not registered" in stranger.stderr
    assert as_("wang", "error", "close", eid).exit_code == 2
    _json(as_("li", "error", "review", eid, "--key", key["li"], "--json"))
    twice = as_("li", "error", "review", eid, "--key", key["li"])
    assert twice.exit_code == 2 and "same key twice" in twice.stderr
    _json(as_("wang", "error", "rectify", eid, "--measures", "reversed", "--owner", "wang",
              "--effect", "balances match", "--correction", "CR-3", "--json"))
    done = _json(as_("wang", "error", "close", eid, "--json"))
    assert done["state"] == "closed" and done["corrections"] == ["CR-3"]
    assert done["reviewed_by"] == ["li"] and done["missed"] == []


def test_backup_forget_needs_a_second_persons_approval(opskit, people, tmp_path):
    cfg, key = people
    env = {"OPSKIT_PASSPHRASE": "correct horse battery"}
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / "f").write_bytes(os.urandom(1000))
        assert opskit("--config", cfg, "backup", "run", src, env=env).exit_code == 0
    as_ = lambda who, *a: opskit("--config", cfg, "--operator", who, *a, env=env)  # noqa: E731
    dry = _json(as_("wang", "backup", "forget", "--keep-last", "1", "--dry-run", "--json"))
    review = dry["two_person_review"]
    assert review["status"] == "approval needed" and review["for"] == "wang"
    subject = review["subject"]
    refused = as_("wang", "backup", "forget", "--keep-last", "1")
    assert refused.exit_code == 2 and "R-SEC-2" in refused.stderr
    assert "opskit approve-op" in refused.stderr
    assert len(_json(as_("wang", "backup", "snapshots", "--json"))) == 3    # nothing dropped
    own = as_("wang", "approve-op", "backup forget", "--subject", subject, "--for", "wang",
              "--key", key["wang"])
    assert own.exit_code == 2 and "not registered" in own.stderr
    selfie = as_("zhao", "approve-op", "backup forget", "--subject", subject, "--for", "zhao",
                 "--key", key["zhao"])
    assert selfie.exit_code == 2 and "self-approval" in selfie.stderr
    _json(as_("li", "approve-op", "backup forget", "--subject", subject, "--for", "wang",
              "--key", key["li"], "--json"))
    twice = as_("li", "approve-op", "backup forget", "--subject", subject, "--for", "wang",
                "--key", key["li"])
    assert twice.exit_code == 2 and "same key twice" in twice.stderr
    # approved for wang: zhao may not use it
    assert as_("zhao", "backup", "forget", "--keep-last", "1").exit_code == 2
    done = _json(as_("wang", "backup", "forget", "--keep-last", "1", "--json"))
    assert len(done["forgotten"]) == 2 and done["two_person_review"]["approved_by"] == ["li"]
    audit = _json(opskit("audit", "show", "--command", "backup forget", "--json"))
    assert audit[-1]["details"]["two_person_review"]["approved_by"] == ["li"]


def test_a_damaged_pack_fails_the_drill_and_opens_an_incident(tmp_path, opskit):
    cli = BackupCli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        _write(src / f"f{i}.bin", os.urandom(200_000))
    cli.backup(src)
    packs = [os.path.join(dp, f) for dp, _d, fs in os.walk(os.path.join(cli.repo, "data"))
             for f in fs if os.path.getsize(os.path.join(dp, f)) > 100_000]
    for pack in packs:
        with open(pack, "r+b") as fh:
            fh.seek(100)
            b = fh.read(1)
            fh.seek(100)
            fh.write(bytes([b[0] ^ 0xFF]))
    run = cli("drill", "--all", "--json")
    report = _json(run, 1)
    assert not report["passed"] and report["incident"] == "INC-0001"
    inc = _json(opskit("incident", "show", "INC-0001", "--json"))
    assert inc["automatic"] and inc["type"] == "drill-failed" and "failed" in inc["scope"]
    attached = inc["evidence"]
    assert attached["source"] == report["report_json"]
    assert json.load(open(attached["copy"]))["verdict"] == report["verdict"]


def test_a_passing_drill_opens_no_incident(tmp_path, opskit):
    cli = BackupCli(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    _write(src / "a.bin", os.urandom(50_000))
    cli.backup(src)
    assert "incident" not in _json(cli("drill", "--all", "--json"))
    assert _json(opskit("incident", "list", "--json")) == []
