"""`opskit users plan|apply|freeze|transfer|unfreeze` as an admin runs them, on sysroot
hosts with real shadow-utils: exit codes, --json, the audit log, the roster edit of a
transfer, and unfreeze only through an approved access request (R-ACC-3, R-ACC-6)."""
import json
import os
import subprocess

import pytest

from tests.harness.accounts import (make_userdb_root, passwd_line, shadow_line, tree_snapshot,
                                    write_model)
from tests.harness.cli import run_opskit
from tests.harness.signing import key_file, with_signing_keys

pytestmark = pytest.mark.e2e

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtEYkGHZ+60WkR/guAKeEAMtyFzUAeiVqhrTyZTMMC5 zw@laptop"
ROSTER = f"""\
people:
  zhang.wei:
    name: Zhang Wei
    post: system-maintainer
    ssh_keys: ["{KEY}"]
  li.na:
    post: database-maintainer   # DBA since 2020
    backup: zhang.wei
  head:
    post: audit-desk
  boss:
    post: audit-desk
  admin1:
    post: system-maintainer
  wang.fang:
    post: audit-desk
    roles: [refund-officer]
"""
ACCESS = "  requesters: [head]\n  approvers: [boss]\n  access_admins: [admin1]\n"


@pytest.fixture
def cli(tmp_path):
    roots = {n: make_userdb_root(tmp_path / n) for n in ("db1", "app1")}
    inventory = (f"hosts:\n  db1:\n    sysroot: {roots['db1']}\n    groups: [db]\n"
                 f"  app1:\n    sysroot: {roots['app1']}\n    groups: [app]\n")
    config = write_model(tmp_path / "cfg", with_signing_keys(ROSTER), inventory,
                         extra_config=ACCESS)
    env = {"OPSKIT_HOME": str(tmp_path / "home")}

    def opskit(*args, operator=None):
        # the operator signs with their own key (R-ACC-3); --operator alone decides nothing
        pre = ["--operator", operator] if operator else []
        key = key_file(tmp_path / "keys", operator) if operator else ""
        return run_opskit("--config", config, *pre, *args,
                          env={**env, "OPSKIT_SIGNING_KEY": key}, timeout=60)
    opskit.roots = roots
    opskit.home = tmp_path / "home"
    opskit.roster = tmp_path / "cfg" / "roster.yaml"
    opskit.audit = lambda: [json.loads(line) for line in
                            (tmp_path / "home" / "audit" / "audit.log").read_text().splitlines()]
    return opskit


def test_plan_dry_run_apply_and_json(cli):
    before = {n: tree_snapshot(r) for n, r in cli.roots.items()}
    plan = cli("users", "plan", "--json")
    assert plan.exit_code == 0, plan.output
    data = json.loads(plan.stdout)
    assert data["command"] == "users plan" and [h["host"] for h in data["hosts"]] == ["db1", "app1"]
    creates = {(s["host"], s["person"]) for h in data["hosts"] for s in h["steps"]
               if s["action"] == "create"}
    assert ("db1", "li.na") in creates and ("app1", "li.na") not in creates
    dry = cli("users", "apply", "--dry-run")
    assert dry.exit_code == 0 and "users apply --dry-run:" in dry.stdout
    assert {n: tree_snapshot(r) for n, r in cli.roots.items()} == before
    applied = cli("users", "apply", "--hosts", "db1")
    assert applied.exit_code == 0, applied.output
    assert passwd_line(cli.roots["db1"], "li.na") and not passwd_line(cli.roots["app1"],
                                                                      "zhang.wei")
    entry = cli.audit()[-1]
    assert entry["command"] == "users apply" and entry["details"]["dry_run"] is False
    assert any(c.startswith("db1:li.na:create:") and c.endswith("-> ok")
               for c in entry["details"]["changes"])
    # initial passwords: hashed on the host, the password itself only in a 0600 file
    files = sorted((cli.home / "accounts" / "initial-passwords").iterdir())
    assert [f.name.split("-")[0] for f in files] == ["admin1", "li.na", "zhang.wei"]
    text = files[1].read_text()
    password = text.split("initial password: ")[1].split()[0]
    assert "hosts: db1" in text and oct(files[1].stat().st_mode & 0o777) == "0o600"
    hashed = shadow_line(cli.roots["db1"], "li.na")[1]
    assert hashed.startswith("$6$")
    salt = hashed.split("$")[2]
    assert subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password,
                          capture_output=True, text=True).stdout.strip() == hashed
    assert password not in applied.output and password not in json.dumps(cli.audit())
    assert hashed not in applied.output and hashed not in json.dumps(cli.audit())
    again = cli("users", "apply", "--hosts", "db1")
    assert "nothing" in cli("users", "plan", "--hosts", "db1").stdout
    assert again.exit_code == 0 and "0 of 0 change(s)" in again.stdout


def test_unknown_person_and_bad_flags_exit_2(cli):
    for args in (("users", "freeze", "nobody", "--reason", "departure"),
                 ("users", "plan", "--person", "nobody"),
                 ("users", "transfer", "nobody", "--to-post", "audit-desk"),
                 ("users", "unfreeze", "nobody", "--request", "AR-0001")):
        run = cli(*args)
        assert run.exit_code == 2, (args, run.output)
        assert "unknown person 'nobody'" in run.stderr and "Traceback" not in run.output
    assert cli("users", "freeze", "li.na", "--reason", "holiday").exit_code == 2
    assert cli("users", "transfer", "li.na", "--to-post", "nowhere").exit_code == 2
    entry = cli.audit()[-1]
    assert entry["command"] == "users transfer" and entry["exit_code"] == 2


def test_freeze_certificate_in_audit_log_and_state_dir(cli):
    assert cli("users", "apply").exit_code == 0
    run = cli("users", "freeze", "li.na", "--reason", "departure", "--ticket", "HR-9",
              operator="admin1")
    assert run.exit_code == 0, run.output
    assert "frozen and verified on 1 host(s) with an account (2 checked)" in run.stdout
    entry = cli.audit()[-1]
    cert = entry["details"]["certificate"]
    assert entry["command"] == "users freeze" and entry["operator"].endswith("as admin1")
    assert cert["operator"].endswith("as admin1") and cert["ticket"] == "HR-9"
    assert cert["hosts_with_account"] == ["db1"] and cert["result"] == "complete"
    assert os.path.exists(entry["details"]["certificate_file"])
    assert shadow_line(cli.roots["db1"], "li.na")[7] == "1"
    plan = cli("users", "plan")
    assert "apply never unfreezes" in plan.stdout


def _approved_request(cli, *args) -> str:
    req = cli("access", "request", *args, "--reason", "HR decision", "--json", operator="head")
    assert req.exit_code == 0, req.output
    rid = json.loads(req.stdout)["id"]
    assert cli("access", "approve", rid, operator="boss").exit_code == 0
    return rid


def test_transfer_moves_rights_and_edits_only_the_post_line(cli):
    assert cli("users", "apply").exit_code == 0
    original = cli.roster.read_text()
    dry = cli("users", "transfer", "li.na", "--to-post", "audit-desk", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "roster edit to be made:" in dry.stdout and cli.roster.read_text() == original
    rid = _approved_request(cli, "--person", "li.na", "--transfer-to", "audit-desk")
    run = cli("users", "transfer", "li.na", "--to-post", "audit-desk", "--ticket", "T-3",
              "--request", rid, "--json", operator="admin1")
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    changes = {h["host"]: h["change"] for h in data["hosts"]}
    assert changes == {"db1": "freeze", "app1": "grant"}
    assert data["roles_before"] == ["dba"] and data["roles_after"] == ["claims-viewer"]
    text = cli.roster.read_text()
    assert "    post: audit-desk   # DBA since 2020\n" in text
    assert [a for a, b in zip(original.splitlines(), text.splitlines()) if a != b] == \
        ["    post: database-maintainer   # DBA since 2020"]
    assert shadow_line(cli.roots["db1"], "li.na")[7] == "1"          # old post's host: frozen
    assert passwd_line(cli.roots["app1"], "li.na") is not None        # new post's host
    assert not os.path.exists(os.path.join(cli.roots["db1"], "etc/sudoers.d/opskit-li_na"))
    entry = cli.audit()[-1]
    assert entry["details"]["roster_written"] is True and entry["details"]["new_post"] == \
        "audit-desk"
    shown = json.loads(cli("access", "show", rid, "--json").stdout)
    assert shown["state"] == "applied" and shown["applier"] == "admin1"
    assert cli("users", "plan").exit_code == 0                         # the roster agrees now
    before = {n: tree_snapshot(r) for n, r in cli.roots.items()}
    for run in (cli("users", "transfer", "wang.fang", "--to-post", "system-maintainer",
                    "--dry-run"),
                cli("access", "request", "--person", "wang.fang", "--transfer-to",
                    "system-maintainer", "--reason", "r", operator="head")):
        assert run.exit_code == 2, run.output                          # refused up front
        assert "R-ACC-2" in run.stderr and "maintainer-not-special" in run.stderr
    assert {n: tree_snapshot(r) for n, r in cli.roots.items()} == before


def test_transfer_without_an_approved_request_is_refused(cli):
    """#20 item 4: '--operator X users transfer X --to-post system-maintainer' gave X root."""
    assert cli("users", "apply").exit_code == 0
    before = {n: tree_snapshot(r) for n, r in cli.roots.items()}
    roster = cli.roster.read_text()
    bare = cli("users", "transfer", "li.na", "--to-post", "system-maintainer",
               operator="li.na")
    assert bare.exit_code == 2 and "needs an approved access request" in bare.stderr
    pending = cli("access", "request", "--person", "li.na", "--transfer-to",
                  "system-maintainer", "--reason", "r", "--json", operator="head")
    rid = json.loads(pending.stdout)["id"]
    early = cli("users", "transfer", "li.na", "--to-post", "system-maintainer", "--request",
                rid, operator="admin1")
    assert early.exit_code == 2 and "not approved yet" in early.stderr
    assert cli("access", "approve", rid, operator="boss").exit_code == 0
    for who, why in (("li.na", "for themselves"), ("boss", "approved"), ("head", "requested")):
        run = cli("users", "transfer", "li.na", "--to-post", "system-maintainer", "--request",
                  rid, operator=who)
        assert run.exit_code == 2 and why in run.stderr and "R-ACC-1" in run.stderr, run.output
    other_post = cli("users", "transfer", "li.na", "--to-post", "audit-desk", "--request", rid,
                     operator="admin1")
    assert other_post.exit_code == 2 and "not li.na to audit-desk" in other_post.stderr
    applied = cli("access", "apply", rid, operator="admin1")
    assert applied.exit_code == 2 and "opskit users transfer li.na" in applied.stderr
    assert {n: tree_snapshot(r) for n, r in cli.roots.items()} == before
    assert cli.roster.read_text() == roster


def crypt_ok(password: str, hashed: str) -> bool:
    salt = hashed.split("$")[2]
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password,
                         capture_output=True, text=True).stdout.strip()
    return out == hashed


def test_unfreeze_only_with_an_approved_request_by_a_designated_admin(cli):
    assert cli("users", "apply").exit_code == 0
    old_hashes = {shadow_line(root, "zhang.wei")[1] for root in cli.roots.values()}
    assert cli("users", "freeze", "zhang.wei", "--reason", "departure").exit_code == 0
    req = cli("access", "request", "--person", "zhang.wei", "--unfreeze", "--reason",
              "returns", "--json", operator="head")
    assert req.exit_code == 0, req.output
    rid = json.loads(req.stdout)["id"]
    early = cli("users", "unfreeze", "zhang.wei", "--request", rid, operator="admin1")
    assert early.exit_code == 2 and "approv" in early.stderr.lower()
    assert cli("access", "approve", rid, operator="boss").exit_code == 0
    for who in ("head", "boss"):
        refused = cli("users", "unfreeze", "zhang.wei", "--request", rid, operator=who)
        assert refused.exit_code == 2, refused.output
        assert "R-ACC-1" in refused.stderr or "R-ACC-3" in refused.stderr
    assert shadow_line(cli.roots["db1"], "zhang.wei")[7] == "1", "refusals touched nothing"
    handed = cli.home / "accounts" / "initial-passwords"
    for old in handed.iterdir():                      # users apply's, handed over already
        old.unlink()
    ok = cli("users", "unfreeze", "zhang.wei", "--request", rid, operator="admin1")
    assert ok.exit_code == 0, ok.output
    files = sorted(handed.iterdir())
    assert len(files) == 1 and os.stat(files[0]).st_mode & 0o777 == 0o600
    fresh = files[0].read_text().split("initial password: ")[1].split()[0]
    assert fresh not in ok.output and fresh not in json.dumps(cli.audit())
    assert str(files[0].parent) in ok.stdout
    hashes = set()
    for root in cli.roots.values():
        sh = shadow_line(root, "zhang.wei")
        assert sh[7] == "" and sh[2] == "0"          # no expiry; must change password
        assert sh[1].startswith("$6$") and sh[1] not in old_hashes   # never the old hash
        assert crypt_ok(fresh, sh[1])
        hashes.add(sh[1])
        assert passwd_line(root, "zhang.wei")[6] == "/bin/bash"
        assert KEY in open(os.path.join(root, "home/zhang.wei/.ssh/authorized_keys")).read()
    listed = cli("access", "list", "--json")
    assert '"applied"' in listed.stdout
    assert cli("users", "plan").exit_code == 0 and "nothing to do" in cli("users", "plan").stdout
    entry = cli.audit()[-4]
    assert entry["command"] == "users unfreeze" and entry["details"]["request"] == rid


def test_plan_and_apply_see_unmanaged_access(cli):
    """#20 item 6: an extra authorized_keys2 and a sudoers file opskit did not write are
    drift (never '0 changes'); --keep-unmanaged keeps them, apply without it removes them."""
    assert cli("users", "apply", "--hosts", "db1").exit_code == 0
    root = cli.roots["db1"]
    with open(os.path.join(root, "home/zhang.wei/.ssh/authorized_keys2"), "w") as fh:
        fh.write(KEY.replace("zw@laptop", "planted") + "\n")
    with open(os.path.join(root, "etc/sudoers.d/99-extra"), "w") as fh:
        fh.write("zhang.wei ALL=(ALL) NOPASSWD: ALL\n")
    plan = cli("users", "plan", "--hosts", "db1", "--json")
    assert plan.exit_code == 0, plan.output
    steps = [s for h in json.loads(plan.stdout)["hosts"] for s in h["steps"]]
    assert {(s["person"], s["action"]) for s in steps} == {("zhang.wei", "unmanaged-keys"),
                                                          ("zhang.wei", "unmanaged-sudoers")}
    assert "nothing to do" not in cli("users", "plan", "--hosts", "db1").stdout
    kept = cli("users", "apply", "--hosts", "db1", "--keep-unmanaged")
    assert kept.exit_code == 0 and "0 of 0 change(s)" in kept.stdout
    assert "kept (--keep-unmanaged)" in kept.stdout
    assert os.path.exists(os.path.join(root, "etc/sudoers.d/99-extra"))
    applied = cli("users", "apply", "--hosts", "db1")
    assert applied.exit_code == 0 and "2 of 2 change(s)" in applied.stdout, applied.output
    assert not os.path.exists(os.path.join(root, "etc/sudoers.d/99-extra"))
    assert not os.path.exists(os.path.join(root, "home/zhang.wei/.ssh/authorized_keys2"))
    assert "nothing to do" in cli("users", "plan", "--hosts", "db1").stdout
