"""Provisioning plans and apply with real shadow-utils (useradd/usermod/groupadd
--prefix) against sysroot account databases (R-ACC-1, R-ACC-4, R-ACC-6)."""
import os

import pytest

from opskit.accounts.provision import Settings, plan_fleet, select_people, sudoers_name
from opskit.accounts.transfer import roster_edit
from opskit.core.errors import UsageError
from opskit.hosts.inventory import HostSpec
from tests.harness.accounts import (load_model, make_userdb_root, passwd_line, shadow_line,
                                    tree_snapshot, write_model)

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtEYkGHZ+60WkR/guAKeEAMtyFzUAeiVqhrTyZTMMC5 zw@laptop"
ROSTER = f"""\
people:
  zhang.wei:
    name: Zhang Wei
    post: system-maintainer   # keep this comment
    ssh_keys:
      - {KEY}
    backup: li.na
  li.na:
    post: database-maintainer
    uid: 2101
    backup: zhang.wei
  chen.jie:
    post: claims-desk
    login: chenj
  gone:
    post: claims-desk
    status: departed
"""


@pytest.fixture
def fleet(tmp_path):
    roots = {name: make_userdb_root(tmp_path / name) for name in ("db1", "app1")}
    inventory = (f"hosts:\n  db1:\n    sysroot: {roots['db1']}\n    groups: [db]\n"
                 f"  app1:\n    sysroot: {roots['app1']}\n    groups: [app]\n")
    config = write_model(tmp_path / "cfg", ROSTER, inventory)
    cfg, roster = load_model(config)
    specs = [HostSpec("db1", sysroot=roots["db1"], groups=["db"]),
             HostSpec("app1", sysroot=roots["app1"], groups=["app"])]
    return roots, specs, roster, cfg


def run(specs, roster, apply=False, people=None):
    return plan_fleet(specs, roster, select_people(roster, people), Settings(host_timeout=60),
                      apply=apply)


def test_plan_then_apply_then_nothing_to_do(fleet):
    roots, specs, roster, _ = fleet
    plan = run(specs, roster)
    by = {(s.host, s.subject, s.action) for s in plan.steps()}
    assert ("db1", "zhang.wei", "create") in by and ("db1", "li.na", "create") in by
    assert ("app1", "chenj", "create") not in by and ("app1", "chen.jie", "create") in by
    assert not any(s[1] == "gone" for s in by), "departed people get no account (R-ACC-6)"
    assert ("db1", "-", "groupadd") in by                     # systemd-journal is missing
    assert passwd_line(roots["db1"], "zhang.wei") is None, "plan changed nothing"

    applied = run(specs, roster, apply=True)
    assert applied.exit_code == 0, [s.as_dict() for s in applied.steps() if not s.ok]
    assert all(s.ok for s in applied.steps())
    zw = passwd_line(roots["db1"], "zhang.wei")
    assert zw[4] == "Zhang Wei" and zw[6] == "/bin/bash"
    assert shadow_line(roots["db1"], "zhang.wei")[2] == "0", "must change password (chage -d 0)"
    assert passwd_line(roots["db1"], "li.na")[2] == "2101"
    assert passwd_line(roots["app1"], "chenj") is not None
    keys = os.path.join(roots["db1"], "home/zhang.wei/.ssh/authorized_keys")
    assert KEY in open(keys).read()
    assert oct(os.stat(keys).st_mode & 0o777) == "0o600"
    assert os.stat(keys).st_uid == int(zw[2])
    sudo = os.path.join(roots["db1"], "etc/sudoers.d", sudoers_name("zhang.wei"))
    assert "zhang.wei ALL=(ALL:ALL) ALL" in open(sudo).read()
    assert oct(os.stat(sudo).st_mode & 0o777) == "0o440"
    groups = open(os.path.join(roots["db1"], "etc/group")).read()
    assert "adm:x:4:zhang.wei,li.na" in groups

    before = {name: tree_snapshot(root) for name, root in roots.items()}
    again = run(specs, roster, apply=True)
    assert again.steps() == [] and again.exit_code == 0       # idempotent
    assert {name: tree_snapshot(root) for name, root in roots.items()} == before


def test_dry_run_and_plan_change_nothing(fleet):
    roots, specs, roster, _ = fleet
    before = {name: tree_snapshot(root) for name, root in roots.items()}
    plan = run(specs, roster)
    assert plan.steps() and all(s.ok is None for s in plan.steps())
    assert {name: tree_snapshot(root) for name, root in roots.items()} == before


def test_drift_is_corrected_least_privilege(fleet):
    """Extra managed groups, foreign keys and edited drop-ins are put back (R-ACC-4);
    groups no role grants are left alone."""
    roots, specs, roster, _ = fleet
    run(specs, roster, apply=True)
    db1 = roots["db1"]
    os.system(f"groupadd -P {db1} opsread && groupadd -P {db1} video && "
              f"usermod -P {db1} -a -G opsread,video li.na")
    keys = os.path.join(db1, "home/zhang.wei/.ssh/authorized_keys")
    with open(keys, "a") as fh:
        fh.write("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNPbWVvbmUgZWxzZQ intruder\n")
    sudo = os.path.join(db1, "etc/sudoers.d", sudoers_name("li.na"))
    os.chmod(sudo, 0o640)
    with open(sudo, "a") as fh:
        fh.write("li.na ALL=(ALL) NOPASSWD: ALL\n")
    plan = run(specs, roster)
    actions = {(s.subject, s.action): s.detail for s in plan.steps()}
    assert actions[("li.na", "groups")] == "groups -opsread"   # video: no role grants it
    assert ("zhang.wei", "keys") in actions and ("li.na", "sudoers") in actions
    run(specs, roster, apply=True)
    assert "intruder" not in open(keys).read()
    assert "NOPASSWD" not in open(sudo).read()
    group = open(os.path.join(db1, "etc/group")).read()
    assert "video:x:1002:li.na" in group or ":li.na" in [l for l in group.splitlines()
                                                          if l.startswith("video:")][0]
    assert not any(l.startswith("opsread:") and "li.na" in l for l in group.splitlines())
    assert run(specs, roster).steps() == []


def test_visudo_rejected_dropin_is_never_installed(tmp_path):
    root = make_userdb_root(tmp_path / "h")
    roster_text = "people:\n  bad.admin:\n    roles: [broken-sudo]\n    host_groups: [all]\n"
    config = write_model(tmp_path / "cfg", roster_text, f"hosts:\n  h:\n    sysroot: {root}\n")
    _, roster = load_model(config)
    result = run([HostSpec("h", sysroot=root)], roster, apply=True)
    step = next(s for s in result.steps() if s.subject == "bad.admin")
    assert step.ok is False and "visudo -cf rejected the drop-in; not installed" in step.error
    assert result.exit_code == 3
    assert os.listdir(os.path.join(root, "etc/sudoers.d")) == []   # neither file nor temp file


def test_system_accounts_and_strangers_are_never_touched(tmp_path):
    root = make_userdb_root(tmp_path / "h")
    roster_text = ("people:\n  daemon:\n    post: system-maintainer\n"
                   "  new.one:\n    post: system-maintainer\n")
    config = write_model(tmp_path / "cfg", roster_text, f"hosts:\n  h:\n    sysroot: {root}\n")
    _, roster = load_model(config)
    os.system(f"useradd -P {root} -s /bin/sh stranger")
    before = passwd_line(root, "daemon"), passwd_line(root, "stranger")
    result = run([HostSpec("h", sysroot=root)], roster, apply=True)
    assert [n.note for n in result.notes()][0].startswith("'daemon' is a system account")
    assert result.exit_code == 1                                 # needs attention
    assert (passwd_line(root, "daemon"), passwd_line(root, "stranger")) == before
    assert passwd_line(root, "new.one") is not None


def test_frozen_account_is_never_unfrozen_and_stale_one_is_reported(fleet):
    roots, specs, roster, _ = fleet
    run(specs, roster, apply=True)
    db1 = roots["db1"]
    os.system(f"usermod -P {db1} -e 1970-01-02 -s /usr/sbin/nologin li.na")
    os.system(f"useradd -P {db1} -s /bin/bash gone")            # departed, not frozen
    result = run(specs, roster, apply=True)
    notes = {(n.host, n.person): n for n in result.notes()}
    assert "apply never unfreezes" in notes[("db1", "li.na")].note
    assert "opskit users freeze gone" in notes[("db1", "gone")].note
    assert notes[("db1", "gone")].attention and result.exit_code == 1
    assert shadow_line(db1, "li.na")[7] == "1" and passwd_line(db1, "li.na")[6].endswith("nologin")


def test_unknown_person_is_a_usage_error(fleet):
    _, _, roster, _ = fleet
    with pytest.raises(UsageError, match="unknown person 'nobody'"):
        select_people(roster, ["nobody"])


def test_roster_edit_changes_only_the_post_line(fleet, tmp_path):
    _, _, roster, _ = fleet
    path = roster.source
    original = open(path).read()
    edit = roster_edit(path, "zhang.wei", "database-maintainer", roster.model)
    assert edit.old.strip() == "post: system-maintainer   # keep this comment"
    assert edit.new == "    post: database-maintainer   # keep this comment"
    changed = [(a, b) for a, b in zip(original.split("\n"), edit.text.split("\n")) if a != b]
    assert len(changed) == 1
    inserted = roster_edit(path, "gone", "claims-desk", roster.model)
    assert inserted is None                                      # already that post
    text = original.replace("  li.na:\n    post: database-maintainer\n", "  li.na:\n")
    with open(path, "w") as fh:
        fh.write(text)
    ins = roster_edit(path, "li.na", "audit-desk", roster.model)
    assert ins.old is None and ins.new == "    post: audit-desk"
    assert "  li.na:\n    post: audit-desk\n    uid: 2101" in ins.text


def test_symlinked_keys_are_replaced_not_followed_and_symlinked_ssh_refused(fleet, tmp_path):
    roots, specs, roster, _ = fleet
    run(specs, roster, apply=True)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    keys = os.path.join(roots["db1"], "home/zhang.wei/.ssh/authorized_keys")
    os.unlink(keys)
    os.symlink(victim, keys)
    plan = run(specs, roster)
    assert [(s.subject, s.action) for s in plan.steps()] == [("zhang.wei", "keys")]
    run(specs, roster, apply=True)
    assert victim.read_text() == "precious\n"
    assert not os.path.islink(keys) and KEY in open(keys).read()
    ssh_dir = os.path.dirname(keys)
    os.rename(ssh_dir, ssh_dir + ".real")
    os.symlink(tmp_path, ssh_dir)
    os.unlink(os.path.join(ssh_dir + ".real", "authorized_keys"))
    result = run(specs, roster, apply=True)
    step = next(s for s in result.steps() if s.action == "keys")
    assert step.ok is False and "refusing: symlinked home or .ssh" in step.error
    assert not (tmp_path / "authorized_keys").exists()
