"""`opskit playbook run|list` as a user runs them (issue #11): every shipped playbook
as a dry run; restore-drill and incident-restore for real against a repository
replicated to an off-site site (R-BAK-5, R-BAK-3, R-BAK-2)."""
import json
import os

import pytest

from tests.harness.backup import BackupCli, assert_same_tree, restored_path
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e

DRY_RUNS = {
    "onboard": (["person=li.na", "ticket=HR-7"],
                [["users", "plan", "--person", "li.na"], ["users", "apply", "--person", "li.na"],
                 ["perms", "snapshot"], ["perms", "diff", "--person", "li.na"], None]),
    "offboard": (["person=zhang.wei", "ticket=HR-9", "reason=transfer"],
                 [["users", "freeze", "zhang.wei", "--reason", "transfer", "--ticket", "HR-9"],
                  ["perms", "snapshot"], ["perms", "diff", "--person", "zhang.wei"], None]),
    "access-review": (["quarter=2026-Q4"],
                      [["perms", "snapshot"], ["perms", "report", "--format", "html"], None]),
    "restore-drill": ([], [["backup", "check-site", "dr"],
                           ["backup", "drill", "--site", "dr", "--snapshot", "latest",
                            "--sample", "10"], None]),
    "incident-restore": (["target=/srv/restore", "ticket=INC-1"],
                         [["backup", "snapshots", "--repo", "dr"],
                          ["backup", "restore", "latest", "--repo", "dr", "--target",
                           "/srv/restore"],
                          ["backup", "drill", "--site", "dr", "--snapshot", "latest", "--all"],
                          None]),
}


@pytest.mark.parametrize("name", sorted(DRY_RUNS))
def test_every_shipped_playbook_dry_run_resolves_and_runs_nothing(name, opskit):
    given, expected = DRY_RUNS[name]
    args = [a for kv in given for a in ("--var", kv)]
    run = opskit("playbook", "run", name, *args, "--dry-run", "--json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert data["dry_run"] is True and data["file"].endswith(f"playbooks/{name}.yaml")
    assert [s["argv"] for s in data["steps"]] == expected
    assert all(s["status"] == "would run" and s["exit"] is None for s in data["steps"])
    assert data["steps"][-1]["signoff"]
    table = opskit("playbook", "run", name, *args, "--dry-run")
    assert "dry run, nothing was run" in table.stdout
    audit = json.loads(opskit("audit", "show", "--json").stdout)
    assert [e["command"] for e in audit] == ["playbook run", "playbook run", "audit show"][:len(audit)]
    assert not any(e["command"].startswith(("playbook step", "playbook signoff")) for e in audit)


def test_missing_or_unknown_variables_exit_2_naming_file_and_variable(opskit):
    run = opskit("playbook", "run", "offboard", "--var", "person=x")
    assert run.exit_code == 2
    assert "offboard.yaml: missing required variable 'ticket'" in run.stderr
    run = opskit("playbook", "run", "offboard", "--var", "person=x", "--var", "ticket=1",
                 "--var", "colour=red")
    assert run.exit_code == 2 and "unknown variable 'colour'" in run.stderr
    run = opskit("playbook", "run", "offboard", "--var", "person=x", "--var", "ticket=1",
                 "--var", "reason=fired")
    assert run.exit_code == 2 and "expected one of: departure, transfer" in run.stderr


def test_list_shows_the_shipped_playbooks(opskit):
    run = opskit("playbook", "list", "--json")
    assert run.exit_code == 0
    assert {r["playbook"] for r in json.loads(run.stdout)} == set(DRY_RUNS)


@pytest.fixture
def offsite(tmp_path):
    """A backed-up repository, replicated to a file:// off-site site named 'dr'."""
    site = tmp_path / "site"
    cli = BackupCli(tmp_path, extra=f"sites:\n  dr:\n    url: file://{site}\n")
    src = tmp_path / "src"
    (src / "claims").mkdir(parents=True)
    for i in range(12):
        (src / "claims" / f"c{i:02d}.csv").write_bytes(os.urandom(20_000 + i))
    snap = cli.backup(src)
    assert cli("replicate").exit_code == 0
    env = {"OPSKIT_PASSPHRASE": "correct horse battery staple"}

    def playbook(*args):
        run = run_opskit("--config", cli.config, "playbook", "run", *args, env=env, timeout=120)
        assert "Traceback" not in run.output, run.output
        return run
    playbook.cli, playbook.src, playbook.site, playbook.snap = cli, src, site, snap
    return playbook


def _audit(opskit, prefix):
    return json.loads(opskit("audit", "show", "--command", prefix, "--json").stdout)


def test_restore_drill_playbook_runs_for_real(offsite, opskit, _isolated_opskit_home):
    run = offsite("restore-drill", "--var", "sample=100", "--json")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert [s["status"] for s in data["steps"]] == ["ok", "ok", "ok"]
    assert [s["exit"] for s in data["steps"]] == [0, 0, 0]
    assert "drill PASS" in data["steps"][1]["summary"]
    drills = [n for n in os.listdir(_isolated_opskit_home / "drills") if n.endswith(".json")]
    report = json.load(open(_isolated_opskit_home / "drills" / drills[0]))
    assert report["site"] == "dr" and report["passed"] and report["files_verified"] == 12
    steps = _audit(opskit, "playbook step")
    assert [(e["arguments"]["step"], e["exit_code"]) for e in steps] == [(1, 0), (2, 0)]
    assert steps[1]["arguments"]["argv"][:4] == ["backup", "drill", "--site", "dr"]
    signoff = _audit(opskit, "playbook signoff")[-1]
    assert signoff["details"]["signoff"]["by"] and "R-BAK-5" in signoff["summary"]
    whole = _audit(opskit, "playbook run")[-1]
    assert whole["exit_code"] == 0 and whole["details"]["playbook"] == "restore-drill"
    # the drill's own entry is there too (the child opskit audits itself)
    assert _audit(opskit, "backup drill")[-1]["exit_code"] == 0


def test_incident_restore_playbook_restores_from_the_site(offsite, opskit, tmp_path):
    target = tmp_path / "restored"
    run = offsite("incident-restore", "--var", f"target={target}", "--var", "ticket=INC-42")
    assert run.exit_code == 0, run.output
    assert "all 4 step(s) done" in run.stdout
    assert_same_tree(os.fsencode(offsite.src), restored_path(target, os.fsencode(offsite.src)),
                     owners=False)
    signoff = _audit(opskit, "playbook signoff")[-1]
    assert "INC-42" in signoff["summary"] and str(target) in signoff["summary"]


def test_a_failing_step_stops_the_playbook_before_the_signoff(offsite, opskit):
    # damage the site: check-site fails (exit 1), nothing after it runs
    packs = [os.path.join(d, f) for d, _s, fs in os.walk(offsite.site / "data") for f in fs]
    os.unlink(max(packs, key=os.path.getsize))
    run = offsite("restore-drill", "--json")
    assert run.exit_code == 1, run.output
    data = json.loads(run.stdout)
    assert [s["status"] for s in data["steps"]] == ["FAILED", "not run", "not run"]
    assert data["steps"][0]["exit"] == 1
    assert not _audit(opskit, "playbook signoff")
    whole = _audit(opskit, "playbook run")[-1]
    assert whole["exit_code"] == 1 and "stopped at step 1" in whole["summary"]
    table = offsite("restore-drill")
    assert "FAILED" in table.stdout and "not run" in table.stdout


def test_secret_variables_are_not_written_to_the_audit_log(tmp_path, opskit):
    pb = tmp_path / "secret.yaml"
    pb.write_text("vars:\n  token: {required: true}\nsteps:\n  - run: [hosts, list]\n"
                  "  - signoff: 'used {{token}}'\n")
    run = opskit("playbook", "run", str(pb), "--var", "token=s3cr3t-value")
    assert run.exit_code == 0, run.output
    log = open(os.environ["OPSKIT_HOME"] + "/audit/audit.log").read()
    assert "s3cr3t-value" not in log and "s3cr3t-value" not in run.stdout
