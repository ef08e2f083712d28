"""`users plan`/`apply` see access opskit did not grant (#20 item 6, R-ACC-4, R-ACC-1):
an extra authorized_keys2, a key line not in the roster, and sudoers files granting the
person rights beyond their roles are drift to remove, on a sysroot host with real
shadow-utils and visudo; --keep-unmanaged lists them as kept."""
import os

import pytest

from opskit.accounts.provision import Settings, plan_fleet, select_people
from tests.harness.accounts import sysroot_host

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtEYkGHZ+60WkR/guAKeEAMtyFzUAeiVqhrTyZTMMC5 ln@laptop"
EXTRA2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFNPbWVvbmUgZWxzZQ planted-in-keys2"
FOREIGN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE5vdCB0aGUgcm9zdGVyJ3M planted-in-managed"
ROSTER = f"""\
people:
  li.na:
    post: database-maintainer
    uid: 2101
    ssh_keys: ["{KEY}"]
    backup: bo
  bo:
    post: database-maintainer
    backup: li.na
"""
SUDOERS = {      # the four extra files; sudo reads them all
    "90-lina": "li.na ALL=(ALL) NOPASSWD: ALL\n",
    "91-uid": "#2101 ALL=(ALL) ALL\n",
    "92-alias": "User_Alias DBAS = li.na\nDBAS ALL=(ALL) /bin/sh\n",
    "93-shared": "li.na, daemon ALL=(ALL) /usr/bin/vim\nnobody ALL=(ALL) /bin/ls\n",
}
IGNORED = ("95-skipped.bak", "li.na ALL=(ALL) ALL\n")      # a '.': sudo never reads it


@pytest.fixture
def host(tmp_path):
    root, spec, roster = sysroot_host(tmp_path, "db1", ROSTER)
    assert run(spec, roster, apply=True).exit_code == 0
    return root, spec, roster


def run(spec, roster, apply=False, keep=False):
    return plan_fleet([spec], roster, select_people(roster, None),
                      Settings(host_timeout=60, keep_unmanaged=keep), apply=apply)


def plant(root):
    ssh = os.path.join(root, "home/li.na/.ssh")
    with open(os.path.join(ssh, "authorized_keys2"), "w") as fh:
        fh.write(EXTRA2 + "\n")
    with open(os.path.join(ssh, "authorized_keys"), "a") as fh:
        fh.write(FOREIGN + "\n")
    for name, text in [*SUDOERS.items(), IGNORED]:
        path = os.path.join(root, "etc/sudoers.d", name)
        with open(path, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o440)


def read(root, path):
    with open(os.path.join(root, path.lstrip("/"))) as fh:
        return fh.read()


def test_plan_lists_unmanaged_access_and_apply_removes_it(host):
    root, spec, roster = host
    assert run(spec, roster).steps() == []
    plant(root)
    plan = run(spec, roster)
    steps = plan.steps()
    assert steps, "only unmanaged drift: still not '0 changes'"
    assert {s.subject for s in steps} == {"li.na"}
    text = "\n".join(s.detail for s in steps)
    assert "/home/li.na/.ssh/authorized_keys2" in text
    assert "removes 1 key(s) not in the roster" in text
    for name in SUDOERS:
        assert f"/etc/sudoers.d/{name}" in text, name
    assert "95-skipped.bak" not in text, "sudo skips names with '.': no rights, no drift"
    moved = [s for s in steps if s.detail.startswith("move /etc/sudoers.d/")]
    assert len(moved) == 3 and "take li.na out of /etc/sudoers.d/93-shared" in text
    assert plan.exit_code == 0 and not plan.notes()

    applied = run(spec, roster, apply=True)
    assert applied.exit_code == 0, [s.as_dict() for s in applied.steps() if not s.ok]
    ssh = os.path.join(root, "home/li.na/.ssh")
    assert not os.path.exists(os.path.join(ssh, "authorized_keys2"))
    assert read(root, "/home/li.na/.ssh/authorized_keys").count("ssh-ed25519") == 1
    assert "planted-in-managed" not in read(root, "/home/li.na/.ssh/authorized_keys")
    for name in ("90-lina", "91-uid", "92-alias"):
        assert not os.path.exists(os.path.join(root, "etc/sudoers.d", name))
    shared = read(root, "/etc/sudoers.d/93-shared")
    assert "daemon ALL=(ALL) /usr/bin/vim" in shared and "li.na" not in shared.split("\n")[0]
    assert "nobody ALL=(ALL) /bin/ls" in shared
    assert os.path.exists(os.path.join(root, "etc/sudoers.d", IGNORED[0]))
    evidence = os.path.join(root, "var/lib/opskit/frozen/li.na")
    assert oct(os.stat(evidence).st_mode & 0o777) == "0o700"
    kept = "".join(open(os.path.join(evidence, f)).read() for f in os.listdir(evidence))
    for line in (EXTRA2, FOREIGN, *SUDOERS["90-lina"].splitlines()):
        assert line in kept, line
    assert run(spec, roster).steps() == [], "a second plan is clean"


def test_keep_unmanaged_lists_them_as_kept(host):
    root, spec, roster = host
    plant(root)
    plan = run(spec, roster, keep=True)
    assert plan.steps() == []
    notes = [n.note for n in plan.notes()]
    assert all(n.startswith("kept (--keep-unmanaged)") for n in notes)
    assert len(notes) == 6, notes    # authorized_keys2, the foreign key, four files
    applied = run(spec, roster, apply=True, keep=True)
    assert applied.exit_code == 0 and applied.steps() == []
    assert os.path.exists(os.path.join(root, "home/li.na/.ssh/authorized_keys2"))
    assert FOREIGN in read(root, "/home/li.na/.ssh/authorized_keys")
    for name in SUDOERS:
        assert os.path.exists(os.path.join(root, "etc/sudoers.d", name))
    assert run(spec, roster).steps(), "without the flag they are drift again"


def test_declared_rights_are_not_drift_and_shared_ones_need_a_human(host):
    root, spec, roster = host
    for name, text in (("80-declared", "li.na ALL=(postgres) /usr/bin/psql, /usr/bin/pg_dump\n"
                        "%adm ALL=(root) /usr/bin/journalctl\n"),
                       ("81-everyone", "ALL ALL=(root) /usr/bin/uptime\n")):
        path = os.path.join(root, "etc/sudoers.d", name)
        with open(path, "w") as fh:
            fh.write(text)
    plan = run(spec, roster)
    assert plan.steps() == [], "a declared rule and a role's group are not drift"
    manual = [n for n in plan.notes() if n.attention]
    assert {n.person for n in manual} == {"li.na", "bo"}
    assert all("81-everyone" in n.note and "edit by hand" in n.note for n in manual)
    assert plan.exit_code == 1


def test_a_removal_visudo_rejects_changes_nothing(host):
    """Moving a file aside that defines an alias another file uses would break sudo:
    the tree check refuses, nothing moves."""
    root, spec, roster = host
    for name, text in (("70-alias", "User_Alias DBAS = li.na\n"),
                       ("71-uses", "DBAS, bo ALL=(ALL) /bin/true\n")):
        path = os.path.join(root, "etc/sudoers.d", name)
        with open(path, "w") as fh:
            fh.write(text)
    applied = run(spec, roster, apply=True)
    failed = [s for s in applied.steps() if s.ok is False]
    assert failed and "visudo -csf rejected" in failed[0].error
    assert os.path.exists(os.path.join(root, "etc/sudoers.d/70-alias"))
    assert applied.exit_code == 3
