"""Freezes (R-ACC-6) with real shadow-utils and visudo against sysroot account databases:
every access path found, closed, verified, certified; reruns finish the job."""
import json
import os
import time

import pytest

from opskit.accounts.freeze import freeze_fleet, save_certificate
from opskit.accounts.provision import Settings, plan_fleet, select_people
from opskit.hosts.inventory import HostSpec
from tests.harness.accounts import (BASE_ROSTER, EXAMPLE_KEY, load_model, make_userdb_root,
                                    passwd_line, shadow_line, tree_snapshot, write_model)

KEY = EXAMPLE_KEY
ROSTER = BASE_ROSTER
SETTINGS = Settings(host_timeout=60)
# the fixture builds the whole tree at once; the tenure report is tested on its own
LATER = int(time.time()) + 3600


@pytest.fixture
def frozen_setup(tmp_path):
    roots = {n: make_userdb_root(tmp_path / n) for n in ("h1", "h2", "empty")}
    inventory = "hosts:\n" + "".join(f"  {n}:\n    sysroot: {r}\n    groups: [db]\n"
                                      for n, r in roots.items())
    config = write_model(tmp_path / "cfg", ROSTER, inventory)
    _, roster = load_model(config)
    specs = [HostSpec(n, sysroot=r, groups=["db"]) for n, r in roots.items()]
    people = [roster.person("zhang.wei"), roster.person("li.na")]
    result = plan_fleet(specs[:2], roster, people, SETTINGS, apply=True)
    assert result.exit_code == 0
    h1 = roots["h1"]
    uid = int(passwd_line(h1, "zhang.wei")[2])
    for d in ("var/spool/cron/crontabs", "var/spool/cron/atjobs"):
        os.makedirs(os.path.join(h1, d))
    with open(os.path.join(h1, "var/spool/cron/crontabs/zhang.wei"), "w") as fh:
        fh.write("* * * * * /usr/bin/true\n")
    job = os.path.join(h1, "var/spool/cron/atjobs/a00001019a1b2c")
    with open(job, "w") as fh:
        fh.write("#!/bin/sh\n")
    os.chown(job, uid, -1)
    local = os.path.join(h1, "etc/sudoers.d/local")
    with open(local, "w") as fh:
        fh.write("zhang.wei ALL=(ALL) NOPASSWD: ALL\nUser_Alias OPS = zhang.wei, li.na\n")
    os.chmod(local, 0o440)
    return roots, specs, roster


def test_freeze_closes_every_path_verifies_and_certifies(frozen_setup, tmp_path):
    roots, specs, roster = frozen_setup
    person = roster.person("zhang.wei")
    dry = freeze_fleet(specs, person, SETTINGS, reason="departure", dry_run=True, since=LATER)
    before = tree_snapshot(roots["h1"])
    assert dry.exit_code == 0 and dry.certificate()["result"] == "dry run", dry.certificate()
    assert tree_snapshot(roots["h1"]) == before, "--dry-run changes nothing"

    run = freeze_fleet(specs, person, SETTINGS, reason="departure", ticket="HR-7",
                       operator="tester", since=LATER)
    assert run.exit_code == 0, [(h.host, h.remaining) for h in run.hosts]
    cert = run.certificate()
    assert cert["result"] == "complete" and cert["rule"] == "R-ACC-6"
    assert cert["hosts_with_account"] == ["h1", "h2"]
    h1 = next(h for h in cert["hosts"] if h["host"] == "h1")
    assert h1["verified"] is True and h1["remaining"] == []
    assert h1["found"]["crontabs"] == ["/var/spool/cron/crontabs/zhang.wei"]
    assert h1["found"]["at_jobs"] == ["/var/spool/cron/atjobs/a00001019a1b2c"]
    assert any("take zhang.wei out of 2 sudoers" in d for d in h1["done"]), h1["done"]
    empty = next(h for h in cert["hosts"] if h["host"] == "empty")
    assert empty["account"] is False and empty["verified"] is True

    root = roots["h1"]
    sh = shadow_line(root, "zhang.wei")
    assert sh[1].startswith("!") and sh[7] == "1"             # locked, expired on day 1
    assert passwd_line(root, "zhang.wei")[6] == "/usr/sbin/nologin"
    assert "zhang.wei" not in open(os.path.join(root, "etc/group")).read().replace(
        "zhang.wei:x:", "")                                    # no supplementary groups
    ssh_dir = os.path.join(root, "home/zhang.wei/.ssh")
    assert os.listdir(ssh_dir) == [], "no key file stays in the person's home"
    frozen = os.path.join(root, "var/lib/opskit/frozen")
    assert oct(os.stat(frozen).st_mode & 0o777) == "0o700"
    evidence = os.listdir(os.path.join(frozen, "zhang.wei"))
    kept = [e for e in evidence if e.startswith("keys-")]
    assert KEY in open(os.path.join(frozen, "zhang.wei", kept[0])).read(), "keys kept"
    assert not os.path.exists(os.path.join(root, "etc/sudoers.d/opskit-zhang_wei"))
    local = open(os.path.join(root, "etc/sudoers.d/local")).read()
    assert local.startswith("# opskit freeze ") and "User_Alias OPS = li.na\n" in local
    assert sorted(e.split("-")[0] for e in evidence) == ["at", "crontab", "keys"]
    assert os.listdir(os.path.join(root, "var/spool/cron/atjobs")) == []

    path = save_certificate(str(tmp_path / "state"), run)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert json.load(open(path))["ticket"] == "HR-7"

    again = freeze_fleet(specs, person, SETTINGS, reason="departure", since=LATER)
    assert again.exit_code == 0
    assert all(h.steps == [] for h in again.hosts), "a rerun finds nothing left to do"


def test_li_na_is_untouched_by_zhang_weis_freeze(frozen_setup):
    roots, specs, roster = frozen_setup
    before = shadow_line(roots["h1"], "li.na"), passwd_line(roots["h1"], "li.na")
    freeze_fleet(specs, roster.person("zhang.wei"), SETTINGS, reason="transfer")
    assert (shadow_line(roots["h1"], "li.na"), passwd_line(roots["h1"], "li.na")) == before
    assert os.path.exists(os.path.join(roots["h1"], "etc/sudoers.d/opskit-li_na"))


def test_expiry_zero_is_ambiguous_and_rewritten(frozen_setup):
    roots, specs, roster = frozen_setup
    os.system(f"usermod -P {roots['h2']} -e 1970-01-01 li.na")      # day 0
    assert shadow_line(roots["h2"], "li.na")[7] == "0"
    run = freeze_fleet(specs[1:2], roster.person("li.na"), SETTINGS, reason="departure",
                       since=LATER)
    assert any("expire the account on 1970-01-02" in s.detail for h in run.hosts for s in h.steps)
    assert shadow_line(roots["h2"], "li.na")[7] == "1"


def test_a_sudoers_file_visudo_rejects_is_left_alone_and_reported(frozen_setup):
    roots, specs, roster = frozen_setup
    broken = os.path.join(roots["h2"], "etc/sudoers.d/broken")
    with open(broken, "w") as fh:
        fh.write("zhang.wei ALL=(ALL) ALL\nnot valid sudoers (\n")
    os.chmod(broken, 0o440)
    run = freeze_fleet(specs[1:2], roster.person("zhang.wei"), SETTINGS, reason="departure",
                       since=LATER)
    host = run.hosts[0]
    assert run.exit_code == 3 and run.failed_hosts == ["h2"]
    failed = [s for s in host.steps if s.ok is False]
    assert len(failed) == 1 and "visudo -cf rejected the edited file" in failed[0].error
    assert host.remaining == ["sudo right /etc/sudoers.d/broken:1: zhang.wei ALL=(ALL) ALL "
                              "(via zhang.wei)"]
    assert open(broken).read().startswith("zhang.wei ALL=(ALL) ALL")
    # everything else was still done
    assert shadow_line(roots["h2"], "zhang.wei")[7] == "1"
