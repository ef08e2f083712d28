"""`opskit perms snapshot|snapshots|diff|report` as an administrator and an
auditor run them: recorded hosts plus the real insurance database; a
transfer and its freeze (R-ACC-6) shown by the snapshot diff."""
import hashlib
import json
import os

import pytest

from tests.fixtures.perms.trees import Org
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e


@pytest.fixture
def setup(tmp_path, perms_pg):
    org = Org(tmp_path / "org")
    org.save(databases={"insurance": perms_pg.entry(tmp_path)})
    home = tmp_path / "home"

    def opskit(*args):
        return run_opskit("--config", org.config, *args, env={"OPSKIT_HOME": str(home)},
                          timeout=120)
    opskit.org, opskit.home, opskit.pg = org, home, perms_pg
    return opskit


def test_snapshot_diff_and_every_report_format(setup, tmp_path):
    snap = setup("perms", "snapshot")
    assert snap.exit_code == 0, snap.output
    sid = snap.stdout.splitlines()[0]
    assert sid in snap.stdout.split("stored as ")[1]
    listed = json.loads(setup("perms", "snapshots", "--json").stdout)
    assert [m["id"] for m in listed] == [sid] and listed[0]["databases"] == ["insurance"]
    diff = setup("perms", "diff")
    assert diff.exit_code == 0, diff.output
    assert "0 difference(s)" in diff.stdout
    # explicit selection; the newest snapshot is what the reports use by default
    again = setup("perms", "snapshot", "--hosts", "app1,db1", "--db", "insurance")
    assert again.exit_code == 0
    for fmt, ext in (("html", "html"), ("md", "md"), ("csv", "csv"), ("json", "json"),
                     ("table", "txt")):
        out = tmp_path / f"report.{ext}"
        run = setup("perms", "report", "--format", fmt, "--out", str(out))
        assert run.exit_code in (0, 1), run.output
        assert oct(os.stat(out).st_mode & 0o777) == oct(0o600)   # sudo rights, keys: owner only
        text = out.read_text()
        records = sorted(p for p in os.listdir(setup.home / "perms" / "reports")
                         if p.endswith(".json") and not p.endswith(".report.json"))
        record = json.loads((setup.home / "perms" / "reports" / records[-1]).read_text())
        assert record["format"] == fmt and record["snapshot"] == again.stdout.splitlines()[0]
        if fmt == "csv":    # one table, the findings (#22 item 6): the record's
            assert text.startswith("rule,severity,")   # rendered_sha256 ties it to its snapshot
        else:
            assert record["sha256"] in text and record["snapshot"] in text
        stored = (setup.home / "perms" / "reports" / record["rendered"]).read_bytes()
        assert stored == out.read_bytes()
        assert hashlib.sha256(stored).hexdigest() == record["rendered_sha256"]
        assert run.exit_code == (1 if record["findings"] else 0)
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "http" not in page.replace(
        "http-equiv", "")
    js = json.loads(setup("perms", "report", "--json").stdout)
    assert {"snapshot", "generated", "sha256", "findings", "summary"} <= set(js)
    audit = [json.loads(line) for line in
             (setup.home / "audit" / "audit.log").read_text().splitlines()]
    reports = [e for e in audit if e["command"] == "perms report"]
    assert reports and reports[-1]["details"]["sha256"] == js["sha256"]


def test_transfer_then_freeze_shows_in_the_diff(setup):
    org, pg = setup.org, setup.pg
    first = setup("perms", "snapshot")
    assert first.exit_code == 0, first.output
    s1 = first.stdout.splitlines()[0]
    # wu.xia transfers out of the claims desk: the roster says so, nothing is frozen yet
    org.roster["people"]["wu.xia"]["status"] = "transferred"
    org.save(databases={"insurance": pg.entry(setup.home.parent)})
    diff = setup("perms", "diff", "--person", "wu.xia", "--json")
    assert diff.exit_code == 1, diff.output
    rows = json.loads(diff.stdout)["differences"]
    assert {(r["where"], r["kind"]) for r in rows} >= {("app1", "state"), ("db:insurance",
                                                                           "pg-role")}
    report = setup("perms", "report", "--format", "json")
    nf = [f for f in json.loads(report.stdout)["findings"]
          if f["check"] == "not-frozen" and f["person"] == "wu.xia"]
    assert {f["where"] for f in nf} == {"app1", "db:insurance"}
    assert all(f["rule"] == "R-ACC-6" and f["severity"] == "high" for f in nf)
    # found by opskit itself: a security event opens an incident (#25), once
    assert "opened incident INC-0001 (R-INC-1)" in report.stderr and "wu.xia" not in report.stderr
    shown = json.loads(setup("incident", "show", "INC-0001", "--json").stdout)
    assert shown["type"] == "departed-not-frozen" and "wu.xia" in shown["scope"]
    again = setup("perms", "report", "--format", "json")
    assert "incident still open INC-0001" in again.stderr
    # the freeze: lock + expire + nologin + keys moved + sudo/crontab removed; database
    # login and memberships revoked
    org.keys("app1", "wu.xia", [org.roster["people"]["huang.lei"]["ssh_keys"][0]])
    mid = setup("perms", "snapshot")
    s_mid = mid.stdout.splitlines()[0]
    org.freeze("app1", "wu.xia")
    with pg.changed('ALTER ROLE "wu.xia" NOLOGIN; REVOKE ins_claims_rw, ins_refund FROM "wu.xia"',
                    'ALTER ROLE "wu.xia" LOGIN; GRANT ins_claims_rw, ins_refund TO "wu.xia"'):
        second = setup("perms", "snapshot")
    assert second.exit_code == 0
    s2 = second.stdout.splitlines()[0]
    after = setup("perms", "diff", "--person", "wu.xia")
    assert after.exit_code == 0, after.output
    changes = setup("perms", "diff", "--from", s1, "--to", s2, "--person", "wu.xia", "--json")
    assert changes.exit_code == 1
    got = {(c["where"], c["kind"], c["item"], c["change"], c["before"], c["after"])
           for c in json.loads(changes.stdout)["changes"]}
    assert ("app1", "state", "password", "changed", "set", "locked") in got
    assert ("app1", "state", "expired", "changed", "no", "yes") in got
    assert ("app1", "state", "shell", "changed", "/bin/bash", "/usr/sbin/nologin") in got
    assert ("db:insurance", "pg-attr", "LOGIN", "changed", "yes", "no") in got
    assert ("db:insurance", "pg-member", "ins_refund", "lost", "yes", "") in got
    assert all(c["person"] == "wu.xia" for c in json.loads(changes.stdout)["changes"])
    keys = setup("perms", "diff", "--from", s_mid, "--to", s2, "--person", "wu.xia", "--json")
    assert any(c["kind"] == "key" and c["change"] == "lost"
               for c in json.loads(keys.stdout)["changes"])
    table = setup("perms", "diff", "--from", s1[:22], "--to", s2)
    assert "wu.xia" in table.stdout and "locked" in table.stdout
    same = setup("perms", "diff", "--from", s2, "--to", s2)
    assert same.exit_code == 0 and "0 change(s)" in same.stdout


def test_errors_are_one_line_with_exit_codes(setup):
    none = setup("perms", "diff")
    assert none.exit_code == 2 and "no permission snapshot stored yet" in none.stderr
    assert "Traceback" not in none.output
    first = setup("perms", "snapshot", "--hosts", "app1")
    sid = first.stdout.splitlines()[0]
    assert setup("perms", "report", "--snapshot", "nope").exit_code == 2
    to_only = setup("perms", "diff", "--to", sid)
    assert to_only.exit_code == 2 and "--to needs --from" in to_only.stderr
    bad_db = setup("perms", "snapshot", "--db", "claims-archive")
    assert bad_db.exit_code == 2 and "unknown database 'claims-archive'" in bad_db.stderr
    assert setup("perms", "snapshot", "--hosts", "nohost").exit_code == 2
    assert setup("perms", "report", "--format", "pdf").exit_code == 2
    path = setup.home / "perms" / "snapshots" / f"{sid}.json"
    path.write_bytes(path.read_bytes().replace(b'"huang.lei"', b'"huang.lay"'))
    tampered = setup("perms", "report")
    assert tampered.exit_code == 1 and "changed after it was taken" in tampered.stderr
    os.unlink(setup.org.base + "/roster.yaml")
    second = setup("perms", "snapshot", "--hosts", "app1")
    assert second.exit_code == 0                       # collecting needs no roster
    missing = setup("perms", "report")
    assert missing.exit_code == 2 and "roster.yaml" in missing.stderr
