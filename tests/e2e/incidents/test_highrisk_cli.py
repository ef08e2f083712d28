"""Two-person review (R-SEC-2, #25 item 5) on the high-risk operations beyond 'backup
forget': each refused without a second person's approval, shown by --dry-run, and run
once with one; an operation that is not high-risk in its plan runs without."""
import json

import pytest

from opskit.core.signing import generate
from tests.harness.accounts import make_userdb_root, passwd_line, write_model
from tests.harness.cli import json_of as _json
from tests.harness.cli import run_opskit

pytestmark = pytest.mark.e2e

ROSTER = """\
people:
  zhang.wei:
    post: system-maintainer
  head:
    post: audit-desk
"""


@pytest.fixture
def reviewers(tmp_path):
    """incidents: section naming li as reviewer; (config text, li's key path, wang's)."""
    keys = {n: generate(str(tmp_path / "keys" / n), n) for n in ("li", "wang")}
    text = "incidents:\n  reviewers:\n    li: " + keys["li"][1] + "\n"
    return text, keys["li"][0].path, keys["wang"][0].path


def _approve(config, operation, subject, for_person, key):
    return _json(run_opskit("--config", config, "--operator", "li", "approve-op", operation,
                            "--subject", subject, "--for", for_person, "--key", key, "--json"))


def test_users_apply_granting_admin_rights_needs_an_approval(tmp_path, reviewers):
    text, li_key, wang_key = reviewers
    root = make_userdb_root(tmp_path / "app1")
    config = write_model(tmp_path / "cfg", ROSTER,
                         f"hosts:\n  app1:\n    sysroot: {root}\n    groups: [app]\n",
                         extra_config=text)

    def users(*args, who="wang"):
        return run_opskit("--config", config, "--operator", who, "users", "apply", *args,
                          timeout=60)

    # an audit-desk (query tier) account grants no admin rights: no approval needed
    done = _json(users("--person", "head", "--json"))
    assert "two_person_review" not in done and passwd_line(root, "head")
    # a sysadmin account (admin tier, sudo ALL) does
    refused = users("--person", "zhang.wei")
    assert refused.exit_code == 2 and "R-SEC-2" in refused.stderr
    assert "opskit approve-op 'users apply'" in refused.stderr
    assert not passwd_line(root, "zhang.wei")
    need = _json(users("--person", "zhang.wei", "--dry-run", "--json"))["two_person_review"]
    assert need["status"] == "approval needed" and not passwd_line(root, "zhang.wei")
    own = run_opskit("--config", config, "--operator", "wang", "approve-op", "users apply",
                     "--subject", need["subject"], "--for", "wang", "--key", wang_key)
    assert own.exit_code == 2 and "not registered" in own.stderr
    _approve(config, "users apply", need["subject"], "wang", li_key)
    done = _json(users("--person", "zhang.wei", "--json"))
    assert done["two_person_review"]["approved_by"] == ["li"]
    assert passwd_line(root, "zhang.wei")
    # nothing left to grant: the next apply needs no approval
    assert "two_person_review" not in _json(users("--person", "zhang.wei", "--json"))


def test_backup_key_remove_needs_an_approval(tmp_path, reviewers):
    text, li_key, _wang = reviewers
    config = tmp_path / "opskit.yaml"
    config.write_text(text)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"content")
    pw = {"OPSKIT_PASSPHRASE": "first passphrase"}

    def backup(*args, env=pw):
        return run_opskit("--config", config, "--operator", "wang", "backup", *args, env=env)

    assert backup("run", src).exit_code == 0
    second = _json(backup("key", "add", "--json", env={**pw, "OPSKIT_NEW_PASSPHRASE": "2nd"}))
    slot = second["added"]
    refused = backup("key", "remove", slot[:8])
    assert refused.exit_code == 2 and "R-SEC-2" in refused.stderr
    assert backup("snapshots", env={"OPSKIT_PASSPHRASE": "2nd"}).exit_code == 0  # still there
    need = _json(backup("key", "remove", slot[:8], "--dry-run", "--json"))["two_person_review"]
    assert need["status"] == "approval needed"
    _approve(config, "backup key remove", need["subject"], "wang", li_key)
    done = _json(backup("key", "remove", slot[:8], "--json"))
    assert done["removed"] == slot and done["two_person_review"]["approved_by"] == ["li"]
    assert backup("snapshots", env={"OPSKIT_PASSPHRASE": "2nd"}).exit_code == 3
    # the approval was for that slot: it is used up, and the last key is refused outright
    last = _json(backup("key", "list", "--json"))[0]["id"]
    refused = backup("key", "remove", last[:8])
    assert refused.exit_code == 2 and "last one" in refused.stderr


def test_correct_apply_of_a_high_risk_correction_needs_an_approval(tmp_path, reviewers):
    from tests.harness.corrections import (
        approve_fully,
        make_sqlite_target,
        make_world,
        sqlite_rows,
    )
    text, li_key, _wang = reviewers
    w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"), extra_config=text)
    svc = w.svc()
    # refunds: levels up to leader plus the audit supervisor -> high-risk; claims: not
    _e, risky = svc.request("his", "DELETE FROM refunds WHERE id = :id", {"id": "7"},
                            "duplicate", "INC-8", w.signer("alice"))
    _e, plain = svc.request("his", "UPDATE claims SET amount = 5 WHERE id = 42", {}, "typo", "",
                            w.signer("alice"))
    approve_fully(w, svc, risky.id)
    approve_fully(w, svc, plain.id)
    svc.ledger.close()

    def apply(rid, *args):
        return run_opskit("--config", w.config, "--operator", "mike", "correct", "apply", rid,
                          *args, env={"OPSKIT_CORRECTIONS_KEY": w.keys["mike"]})

    assert "two_person_review" not in _json(apply(plain.id, "--json"))
    refused = apply(risky.id)
    assert refused.exit_code == 2 and "R-SEC-2" in refused.stderr
    assert sqlite_rows(w.target_url, "SELECT count(*) FROM refunds WHERE id = 7") == [(1,)]
    need = _json(apply(risky.id, "--dry-run", "--json"))["two_person_review"]
    assert need["status"] == "approval needed"
    _approve(w.config, "correct apply", need["subject"], "mike", li_key)
    done = _json(apply(risky.id, "--json"))
    assert done["two_person_review"]["approved_by"] == ["li"]
    assert sqlite_rows(w.target_url, "SELECT count(*) FROM refunds WHERE id = 7") == [(0,)]


def test_a_policy_file_disabling_a_check_needs_an_approval_of_its_content(tmp_path, reviewers):
    from tests.fixtures.policy.trees import POLICY, good_tree, write
    text, li_key, _wang = reviewers
    bad = good_tree(tmp_path / "bad")
    write(bad, {"/proc/modules": "usb_storage 81920 0 - Live 0x0\n"})
    (tmp_path / "inventory.yaml").write_text(f"hosts:\n  bad:\n    sysroot: {bad}\n")
    config = tmp_path / "opskit.yaml"
    config.write_text("inventory: inventory.yaml\n" + text)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "a.yaml").write_text(open(POLICY).read())
    site = policies / "z-site.yaml"
    site.write_text("checks:\n  media.usb-storage-not-loaded:\n    enabled: false\n")

    def check():
        run = run_opskit("--config", config, "--operator", "wang", "policy", "check", "--policy",
                         policies, "--json", timeout=60)
        assert "Traceback" not in run.output
        return run.exit_code, json.loads(run.stdout)

    def usb(data):
        return [r["status"] for h in data["hosts"] for r in h["results"]
                if r["check"] == "media.usb-storage-not-loaded"]

    # unapproved: the disable is ignored, the check runs (and fails), a finding names it
    code, data = check()
    assert code == 1 and usb(data) == ["fail"]
    [finding] = data["unapproved_disables"]
    assert finding["file"] == str(site) and "opskit approve-op policy" in finding["command"]
    _approve(config, "policy", finding["subject"], "wang", li_key)
    code, data = check()
    assert usb(data) == ["n/a"] and "unapproved_disables" not in data and code == 0
    # the approval is of the content: any edit needs a new one
    site.write_text(site.read_text() + "# edited\n")
    code, data = check()
    assert code == 1 and usb(data) == ["fail"] and data["unapproved_disables"]
