"""The account playbooks for real (issue #11): onboard, offboard (R-ACC-6) and
access-review (R-AUD-2) against a local sysroot host with a real account database.

They drive the 'users' and 'perms' commands of the CLI contract in the brief:

    opskit users plan  [--person ID]... [--hosts H1,H2 | --group G]
    opskit users apply [--person ID]... [--hosts H1,H2 | --group G] [--dry-run]
    opskit users freeze PERSON --reason departure|transfer [--ticket T] [--hosts ...|--group G]
    opskit perms snapshot [--hosts ...|--group G] [--db NAME]...
    opskit perms diff [--person ID] [--from SNAP --to SNAP]     (exit 1 on differences)
    opskit perms report --format table|csv|json|html|md [--out FILE]  (exit 1 on findings)

and 'perms report' storing every report under <state_dir>/perms/reports/ (a .json
with snapshot, generated, sha256, findings + the rendered file). The dry-run tests
of these playbooks are in test_playbook_cli.py.
"""
import json
import os

import pytest

from tests.harness.accounts import make_userdb_root
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e

ROLES = """
roles:
  claims-clerk:
    tier: operator
    description: Registers and settles claims
    linux:
      groups: [users]
posts:
  claims-desk:
    roles: [claims-clerk]
    host_groups: [app]
"""


def roster(status: str) -> str:
    return f"""
people:
  li.na:
    name: Li Na
    department: Claims Section
    post: claims-desk
    status: {status}
    backup: chen.jie
  chen.jie:
    name: Chen Jie
    department: Claims Section
    post: claims-desk
    status: active
    backup: li.na
"""


@pytest.fixture
def site(tmp_path, _isolated_opskit_home):
    root = make_userdb_root(tmp_path / "app1")
    (tmp_path / "inventory.yaml").write_text(
        f"hosts:\n  app1:\n    sysroot: {root}\n    groups: [app]\n")
    (tmp_path / "roles.yaml").write_text(ROLES)
    (tmp_path / "roster.yaml").write_text(roster("active"))
    config = tmp_path / "opskit.yaml"
    config.write_text("inventory: inventory.yaml\n")

    def opskit(*args):
        run = run_opskit("--config", str(config), *args, timeout=120)
        assert "Traceback" not in run.output, run.output
        return run
    opskit.root, opskit.tmp, opskit.home = root, tmp_path, _isolated_opskit_home
    return opskit


def _audit(prefix):
    return json.loads(run_opskit("audit", "show", "--command", prefix, "--json").stdout)


def _passwd(root, login):
    for line in open(os.path.join(root, "etc", "passwd")):
        if line.split(":")[0] == login:
            return line.strip().split(":")
    return None


def test_onboard_for_real(site):
    run = site("playbook", "run", "onboard", "--var", "person=li.na", "--var", "ticket=HR-7",
               "--json")
    assert run.exit_code == 0, run.output
    steps = json.loads(run.stdout)["steps"]
    assert [s["status"] for s in steps] == ["ok"] * 5, steps
    assert _passwd(site.root, "li.na") is not None              # provisioned from the roster
    assert "HR-7" in _audit("playbook signoff")[-1]["summary"]


def test_offboard_for_real_freezes_proves_and_signs_off(site):
    assert site("users", "apply").exit_code == 0                # li.na has an account
    assert _passwd(site.root, "li.na")[6] == "/bin/bash"
    # the person leaves: the roster says so, the playbook freezes and proves it (R-ACC-6)
    (site.tmp / "roster.yaml").write_text(roster("departing"))
    run = site("playbook", "run", "offboard", "--var", "person=li.na", "--var", "ticket=HR-9",
               "--json")
    assert run.exit_code == 0, run.output
    steps = json.loads(run.stdout)["steps"]
    assert [s["status"] for s in steps] == ["ok"] * 4, steps
    assert "0 difference(s)" in steps[2]["summary"]
    assert _passwd(site.root, "li.na")[6].endswith("nologin")   # frozen
    shadow = [ln.split(":") for ln in open(os.path.join(site.root, "etc", "shadow"))
              if ln.startswith("li.na:")][0]
    assert shadow[1].startswith("!") and shadow[7] == "1"       # locked, expired on day 1
    signoff = _audit("playbook signoff")[-1]
    assert signoff["details"]["signoff"]["by"] and "no access left" in signoff["summary"]
    commands = [e["command"] for e in _audit("")]
    assert "users freeze" in commands and "perms diff" in commands


def test_offboard_stops_before_the_signoff_while_access_is_left(site):
    assert site("users", "apply").exit_code == 0
    # the roster still says 'active': after the freeze the diff shows a difference (exit 1)
    run = site("playbook", "run", "offboard", "--var", "person=li.na", "--var", "ticket=HR-9",
               "--json")
    assert run.exit_code == 1, run.output
    steps = json.loads(run.stdout)["steps"]
    assert [s["status"] for s in steps] == ["ok", "ok", "FAILED", "not run"], steps
    assert not _audit("playbook signoff")


def test_access_review_stores_the_report_for_the_evidence_pack(site):
    assert site("users", "apply").exit_code == 0
    run = site("playbook", "run", "access-review", "--var", "quarter=2026-Q4", "--json")
    assert run.exit_code == 0, run.output
    steps = json.loads(run.stdout)["steps"]
    assert [s["status"] for s in steps] == ["ok", "ok", "ok"]
    assert steps[1]["exit"] in (0, 1)
    reports = site.home / "perms" / "reports"
    stored = [n for n in os.listdir(reports) if n.endswith(".json")]
    assert stored
    data = json.load(open(reports / stored[-1]))
    assert {"snapshot", "generated", "sha256", "findings"} <= set(data)
    assert any(n.endswith(".html") for n in os.listdir(reports))
    assert "2026-Q4" in _audit("playbook signoff")[-1]["summary"]
    # the evidence pack picks the stored report up (R-AUD-2); the pack is signed
    assert site("correct", "keygen", "--name", "auditor").exit_code == 0
    pack = site("evidence", "--out", str(site.tmp / "pack"), "--json")
    assert pack.exit_code in (0, 1), pack.output
    rule = next(r for r in json.loads(pack.stdout)["rules"] if r["rule"] == "R-ACC-4")
    items = [i for j in rule["judgements"] for i in j["evidence"]]
    files = " ".join(str(i.get("file") or i.get("path") or "") for i in items)
    assert stored[-1] in files, rule


def test_a_real_freeze_shows_in_the_snapshot_diff(site):
    """Issue #8's 'snapshot diff shows a freeze's effect', with the real 'users freeze'
    (R-ACC-6): what li.na could do before, and that it is gone after."""
    import subprocess
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "li.na@laptop",
                    "-f", str(site.tmp / "li")], check=True)
    key = (site.tmp / "li.pub").read_text().strip()

    def with_key(status):
        return roster(status).replace("    backup: chen.jie\n",
                                      f"    backup: chen.jie\n    ssh_keys: ['{key}']\n", 1)
    (site.tmp / "roster.yaml").write_text(with_key("active"))
    assert site("users", "apply").exit_code == 0
    before = json.loads(site("perms", "snapshot", "--json").stdout)
    (site.tmp / "roster.yaml").write_text(with_key("departed"))
    assert site("users", "freeze", "li.na", "--reason", "departure", "--ticket", "HR-11"
                ).exit_code == 0
    after = json.loads(site("perms", "snapshot", "--json").stdout)
    run = site("perms", "diff", "--from", before["id"], "--to", after["id"], "--person", "li.na",
               "--json")
    assert run.exit_code == 1, run.output                      # there are changes
    changes = {(c["kind"], c["item"]): (c["change"], c["before"], c["after"])
               for c in json.loads(run.stdout)["changes"] if c["where"] == "app1"}
    assert changes[("state", "expired")] == ("changed", "no", "yes")
    assert changes[("state", "password")][2] == "locked"
    assert changes[("state", "shell")][2].endswith("nologin")
    assert changes[("group", "users")][0] == "lost"
    assert [k for k, v in changes.items() if k[0] == "key" and v[0] == "lost"], changes
    # chen.jie, not frozen, did not change
    other = site("perms", "diff", "--from", before["id"], "--to", after["id"], "--person",
                 "chen.jie", "--json")
    assert other.exit_code == 0 and json.loads(other.stdout)["changes"] == []
