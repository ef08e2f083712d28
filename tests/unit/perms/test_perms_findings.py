"""Every finding type on recorded hosts: the baseline bureau has none; each test
breaks one thing and expects exactly the matching finding (and its rule id)."""
import pytest

from opskit.accounts.declared import load_declared
from opskit.hosts.inventory import load_inventory
from opskit.perms.analysis import Options, analyse
from opskit.perms.findings import CHECKS, REGISTRY, SCOPES, Finding, checks_for, finding_check
from opskit.perms.snapshot import take_snapshot
from opskit.settings import load_config
from tests.fixtures.perms.trees import DAY, KEYS, Org, wtmp_bytes


@pytest.fixture
def org(tmp_path):
    return Org(tmp_path)


def run(org, person=None, **opts):
    org.save()
    config = load_config(org.config)
    snap = take_snapshot(load_inventory(config).select(), [])
    options = Options.from_config(config)
    for k, v in opts.items():
        setattr(options, k, v)
    return analyse(snap, load_declared(config), options, person=person)


def found(analysis, check=None):
    return [f for f in analysis.findings if check is None or f.check == check]


def test_baseline_has_no_findings_and_no_differences(org):
    result = run(org)
    assert found(result) == [] and result.diff == []
    assert result.warnings == []


def test_beyond_role_group_sudo_key_and_host(org):
    # R-ACC-4: a group, a sudo right, a key and an account the roles do not give
    group = org.read("app1", "/etc/group").replace("adm:x:4:huang.lei", "adm:x:4:huang.lei,ma.lin")
    org.write("app1", {"/etc/group": group,
                       "/etc/sudoers.d/30-extra": "Cmnd_Alias SVC = /usr/bin/systemctl\n"
                                                  "wu.xia ALL=(root) NOPASSWD: SVC\n"})
    org.keys("app1", "xuj", [KEYS["xu.jing"]])
    passwd = org.read("db1", "/etc/passwd") + "wu.xia:x:2003:2003::/home/wu.xia:/bin/bash\n"
    org.write("db1", {"/etc/passwd": passwd})
    result = run(org, dormant_days=10_000)
    beyond = found(result, "beyond-role")
    assert {f.rule for f in beyond} == {"R-ACC-4"}
    text = {(f.person, f.where, f.message) for f in beyond}
    assert ("ma.lin", "app1", "ma.lin is in group adm on app1, which none of their roles "
                              "gives") in text
    sudo = next(f for f in beyond if "sudo" in f.message)
    assert sudo.severity == "high" and sudo.person == "wu.xia"
    assert "'ALL=(root) NOPASSWD: /usr/bin/systemctl'" in sudo.message
    assert "/etc/sudoers.d/30-extra:2 (via wu.xia)" in sudo.evidence
    assert any(f.person == "xu.jing" and "SSH key" in f.message for f in beyond)
    assert any(f.person == "wu.xia" and f.where == "db1" and "outside the host groups"
               in f.message for f in beyond)
    kinds = {(r.person, r.kind, r.change) for r in result.diff}
    assert {("ma.lin", "group", "extra"), ("wu.xia", "sudo", "extra"),
            ("xu.jing", "key", "extra"), ("wu.xia", "account", "extra")} <= kinds
    # --person limits the comparison
    only = run(org, person="ma.lin", dormant_days=10_000)
    assert {f.person for f in found(only)} == {"ma.lin"}


def test_declared_but_missing(org):
    group = org.read("db1", "/etc/group").replace("adm:x:4:huang.lei,he.ping", "adm:x:4:huang.lei")
    org.write("db1", {"/etc/group": group})
    passwd = "".join(l + "\n" for l in org.read("app1", "/etc/passwd").splitlines()
                     if not l.startswith("ma.lin:"))
    org.write("app1", {"/etc/passwd": passwd})
    result = run(org)
    missing = found(result, "declared-missing")
    assert {f.rule for f in missing} == {"R-ACC-3"}
    messages = {f.message for f in missing}
    assert "ma.lin has no account on app1" in messages
    assert "he.ping is not in group adm on db1" in messages
    # he.ping's sudo came through %adm, so it is gone too
    assert "he.ping lacks sudo 'ALL=(postgres) /usr/bin/psql' on db1" in messages
    # an expired account of an active person; a locked password alone (key-only) is fine
    shadow = org.read("app1", "/etc/shadow")
    shadow = shadow.replace(f"wu.xia:{org.PW}:{org.today - 10}:0:99999:7:::",
                            f"wu.xia:!{org.PW}:{org.today - 10}:0:99999:7::1:")
    shadow = shadow.replace("xuj:$6$", "xuj:!$6$")
    org.write("app1", {"/etc/shadow": shadow})
    messages = {f.message for f in found(run(org), "declared-missing")}
    assert "wu.xia's account on app1 is expired though they are active" in messages
    assert not [m for m in messages if m.startswith("xu.jing")]


def test_separation_of_duties_declared_and_actual(org):
    org.roster["people"]["huang.lei"]["roles"] = ["claims-clerk"]
    result = run(org)
    sod = found(result, "sod-conflict")
    assert [(f.person, f.rule, f.where) for f in sod] == [("huang.lei", "R-ACC-2", "roster")]
    assert "maintainer-not-operator" in sod[0].evidence
    # actual: an operator who may sudo everything holds the sysadmin role in fact
    org.roster["people"]["huang.lei"]["roles"] = []
    org.write("app1", {"/etc/sudoers.d/40-wu": "wu.xia ALL=(ALL:ALL) ALL\n"})
    sod = found(run(org), "sod-conflict")
    assert {(f.person, f.where, f.rule) for f in sod} == {("wu.xia", "actual", "R-ACC-2")}
    assert "not declared but held: " in sod[0].evidence and "sysadmin" in sod[0].evidence


def test_sod_rule_id_comes_from_roles_yaml(org):
    org.roster["people"]["ma.lin"]["roles"] = ["refund-officer", "benefit-officer"]
    sod = found(run(org), "sod-conflict")
    assert [(f.person, f.rule) for f in sod] == [("ma.lin", "R-ACC-5")]


def test_query_tier_with_sudo(org):
    org.write("app1", {"/etc/sudoers.d/50-ml": "ma.lin ALL=(root) /usr/bin/vi /etc/hosts\n"})
    q = found(run(org), "query-write")
    assert [(f.person, f.rule, f.severity) for f in q] == [("ma.lin", "R-ACC-5", "high")]
    assert "/etc/sudoers.d/50-ml:1" in q[0].evidence


def test_special_role_without_second_reviewer(org):
    org.roster["people"]["xu.jing"]["status"] = "transferred"
    org.roster["people"]["wu.xia"]["backup"] = "ma.lin"
    result = run(org, dormant_days=10_000)
    special = found(result, "special-no-reviewer")
    assert [(f.person, f.rule) for f in special] == [("wu.xia", "R-ACC-5")]
    assert "no other active person holds its reviewer role benefit-officer" in special[0].message
    # a reviewer role held only by the same person is no second reviewer either
    org.roster["people"]["xu.jing"]["status"] = "active"
    org.roster["people"]["xu.jing"]["roles"] = []
    org.roster["people"]["wu.xia"]["roles"] = ["refund-officer", "benefit-officer"]
    special = found(run(org), "special-no-reviewer")
    assert {f.person for f in special} == {"wu.xia"} and len(special) == 2


def test_accounts_not_in_the_roster(org):
    passwd = org.read("app1", "/etc/passwd") + "tmpwork:x:3000:3000::/home/tmpwork:/bin/bash\n"
    shadow = org.read("app1", "/etc/shadow") + f"tmpwork:{org.PW}:{org.today}:0:99999:7:::\n"
    org.write("app1", {"/etc/passwd": passwd, "/etc/shadow": shadow})
    unknown = found(run(org), "not-in-roster")
    assert [(f.account, f.where, f.rule, f.severity) for f in unknown] == [
        ("tmpwork", "app1", "R-ACC-1", "medium")]
    # system accounts (uid < min_uid), nobody and declared service accounts are not reported
    assert found(run(org, min_uid=3001), "not-in-roster") == []


def test_departed_person_not_frozen_then_frozen(org):
    shadow = org.read("app1", "/etc/shadow").replace("guo.qiang:!$6$", "guo.qiang:$6$")
    org.write("app1", {"/etc/shadow": shadow,
                       "/var/spool/cron/crontabs/guo.qiang": "0 1 * * * /bin/true\n"})
    org.keys("app1", "guo.qiang", [KEYS["guo.qiang"]])
    result = run(org)
    nf = found(result, "not-frozen")
    assert [(f.person, f.where, f.rule, f.severity) for f in nf] == [
        ("guo.qiang", "app1", "R-ACC-6", "high")]
    assert "password set (not locked)" in nf[0].evidence
    assert "1 SSH key(s) in /home/guo.qiang/.ssh/authorized_keys" in nf[0].evidence
    assert "1 crontab entry" in nf[0].evidence
    org.freeze("app1", "guo.qiang")
    assert found(run(org), "not-frozen") == []
    # departing people must be frozen before they leave, too (medium until they have left)
    org.roster["people"]["ma.lin"]["status"] = "departing"
    org.roster["people"]["wu.xia"]["backup"] = "xu.jing"
    nf = found(run(org), "not-frozen")
    assert [(f.person, f.severity) for f in nf] == [("ma.lin", "medium")]


def test_dormant_accounts(org):
    org.write("app1", {"/var/log/wtmp": wtmp_bytes(
        {"huang.lei": org.now - DAY, "wu.xia": org.now - DAY, "xuj": org.now - 200 * DAY})})
    dormant = found(run(org), "dormant")
    assert [(f.account, f.rule, f.severity) for f in dormant] == [("xuj", "R-ACC-4", "low")]
    assert "has not logged in on app1 since" in dormant[0].message
    # ma.lin has no login record, but her password was set 10 days ago: a new account.
    # Once it is older than dormant_days it is dormant too.
    shadow = org.read("app1", "/etc/shadow").replace(f"ma.lin:{org.PW}:{org.today - 10}:",
                                                     f"ma.lin:{org.PW}:{org.today - 400}:")
    org.write("app1", {"/etc/shadow": shadow})
    by = {f.account: f for f in found(run(org), "dormant")}
    assert set(by) == {"xuj", "ma.lin"}
    assert by["ma.lin"].message == "ma.lin has no recorded login on app1"
    assert set(f.account for f in found(run(org, dormant_days=500), "dormant")) == set()
    # no login records on a host: nothing can be concluded, a warning says so
    org.write("app1", {"/var/log/wtmp": None})
    result = run(org, dormant_days=1)
    assert [f for f in found(result, "dormant") if f.where == "app1"] == []
    assert any("no login records" in w for _h, w in result.warnings)


def test_generic_and_shared_accounts(org):
    passwd = (org.read("app1", "/etc/passwd") + "admin:x:1500:1500::/home/admin:/bin/bash\n"
              "toor:x:0:0::/root:/bin/bash\n")
    org.write("app1", {"/etc/passwd": passwd})
    generic = found(run(org, dormant_days=10_000), "generic-account")
    assert {(f.account, f.rule, f.severity) for f in generic} == {
        ("admin", "R-AUD-3", "medium"), ("toor", "R-AUD-3", "high")}
    # one key on several people's accounts
    org.write("app1", {"/etc/passwd": passwd.replace("admin:x:1500", "#").replace("toor:", "#")})
    org.keys("app1", "wu.xia", [KEYS["huang.lei"]])
    shared = found(run(org), "shared-key")
    assert len(shared) == 1 and shared[0].rule == "R-AUD-3"
    assert shared[0].account == "huang.lei, wu.xia"
    assert "huang.lei@app1" in shared[0].evidence and "huang.lei@db1" in shared[0].evidence
    # the same key declared for two people in the roster
    org.keys("app1", "wu.xia", None)
    org.roster["people"]["ma.lin"]["ssh_keys"] = [KEYS["he.ping"]]
    shared = found(run(org), "shared-key")
    assert [f.where for f in shared] == ["roster"]


def test_posts_without_backup(org):
    del org.roster["people"]["ma.lin"]["backup"]
    org.roster["people"]["xu.jing"]["backup"] = "guo.qiang"
    nb = found(run(org), "no-backup")
    assert [(f.person, f.rule) for f in nb] == [("ma.lin", "R-ACC-8"), ("xu.jing", "R-ACC-8")]
    assert "guo.qiang status departed" in nb[1].evidence


def test_host_that_cannot_be_collected(org, tmp_path):
    org.write("app1", {"/etc/passwd": None})
    result = run(org)
    failed = found(result, "collection-failed")
    assert [(f.where, f.rule, f.severity) for f in failed] == [("app1", "R-AUD-2", "high")]
    # nothing is concluded about people expected there
    assert not [f for f in found(result, "declared-missing") if f.where == "app1"]


def test_every_check_has_a_rule():
    assert all(rule.startswith("R-") for rule, _title in CHECKS.values())


def test_every_check_kind_is_decided_by_a_registered_function():
    registered = {spec.check for scope in SCOPES for spec in checks_for(scope)}
    assert registered == set(CHECKS)
    with pytest.raises(ValueError):
        finding_check("account", "no-such-check")


def test_a_registered_check_runs_and_fleet_wide_ones_are_left_out_for_one_person(org):
    # a new finding kind is one function plus its registration (issue #16)
    @finding_check("person", "no-backup")
    def everyone(ctx, p):
        yield Finding("no-backup", "low", f"{p.id} checked", "test", p.id, p.login, "roster")

    @finding_check("fleet", "no-backup", fleet_wide=True)
    def once(ctx, snapshot):
        yield Finding("no-backup", "low", "fleet checked", "test", where="fleet")
    try:
        result = run(org)
        assert "ma.lin checked" in {f.message for f in found(result, "no-backup")}
        assert "fleet checked" in {f.message for f in found(result, "no-backup")}
        only = run(org, person="ma.lin")
        assert {f.message for f in found(only, "no-backup")} == {"ma.lin checked"}
    finally:
        for scope in ("person", "fleet"):
            REGISTRY[scope][:] = [c for c in REGISTRY[scope] if c.func not in (everyone, once)]
    assert found(run(org), "no-backup") == []
