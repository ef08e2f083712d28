"""Policy files (configs/policies/*.yaml): validation names file, line and key
(exit code 2); merging; roles; the shipped policy is valid and documented."""
import os
import xml.etree.ElementTree as ET

import pytest

from opskit.core.errors import ConfigError, UsageError
from opskit.policy import parsers as P
from opskit.policy.model import CheckResult, Finding, HostReport
from opskit.policy.policyfile import load_policy, load_policy_files, shipped_dir
from opskit.policy.catalogue import catalogue
from opskit.core.output import render_string
from opskit.policy.report import check_result
from opskit.policy.fleet import RunReport
from opskit.policy.store import RunStore, drift

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, line, key, words", [
    ("checks:\n  net.nope: {}\n", 2, "checks.net.nope", "unknown check 'net.nope'"),
    ("checks:\n  net.default-route:\n    approved_gateways: [10.0.0.1, gw1]\n", 3,
     "checks.net.default-route.approved_gateways", "expected IP addresses, got 'gw1'"),
    ("roles:\n  db:\n    tcp: [22, '99999']\n", 3, "roles.db.tcp", "expected ports"),
    ("checks:\n  av.realtime: {severity: urgent}\n", 2, "checks.av.realtime.severity",
     "expected one of"),
    ("checks:\n  media.usbguard: {required: yes-please}\n", 2, "checks.media.usbguard.required",
     "expected true or false"),
    ("rules: {}\n", 1, "rules", "unknown key 'rules'"),
    ("groups:\n  db: {role: database}\n", 2, "groups.db.role", "role 'database' is not defined"),
])
def test_bad_policy_names_file_line_and_key(tmp_path, text, line, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_policy_files([path])
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: key '{key}': "), message
    assert words in message
    assert err.value.exit_code == 2


def test_later_file_merges_key_by_key(tmp_path):
    a = write(tmp_path, "roles:\n  default: {tcp: [22]}\nchecks:\n  net.dns-resolvers:\n"
                        "    allowed: [10.0.0.53]\n    severity: low\n", "10-a.yaml")
    write(tmp_path, "checks:\n  net.dns-resolvers: {allowed: [10.0.0.54]}\n", "50-b.yaml")
    policy = load_policy(explicit=str(tmp_path))
    assert policy.files == [a, str(tmp_path / "50-b.yaml")]
    _, planned = policy.plan("h")
    dns = next(p for p in planned if p.spec.id == "net.dns-resolvers")
    assert dns.context.params["allowed"] == ["10.0.0.54"] and dns.severity == "low"


def test_role_from_inventory_var_must_exist(tmp_path):
    policy = load_policy_files([write(tmp_path, "roles:\n  db: {tcp: [5432]}\n")])
    assert policy.plan("h", [], {"role": "db"})[0] == "db"
    with pytest.raises(UsageError, match="role 'web' is not a role in the policy"):
        policy.plan("h", [], {"role": "web"})


def test_disabled_check_is_na_with_where(tmp_path):
    path = write(tmp_path, "checks:\n  av.realtime:\n    enabled: false\n")
    _, planned = load_policy_files([path]).plan("h")
    av = next(p for p in planned if p.spec.id == "av.realtime")
    assert av.skip == f"disabled by the policy ({path}:3)"


def test_shipped_policy_is_valid_and_documents_every_check():
    policy = load_policy(explicit=shipped_dir())
    assert policy.files and "db" in policy.roles
    text = open(os.path.join(shipped_dir(), "baseline.yaml")).read()
    docs = open(os.path.join(REPO, "docs", "policy.md")).read()
    mlps3 = open(os.path.join(REPO, "docs", "policy-mlps3.md")).read()
    for check_id, spec in catalogue().items():
        if spec.profiles:           # profile checks: documented in docs/policy-<profile>.md
            assert spec.profiles == ("mlps3",)
            assert f"`{check_id}`" in mlps3, f"docs/policy-mlps3.md does not document {check_id}"
            assert spec.rule in mlps3 and spec.remediation
            continue
        assert f"  {check_id}:" in text, f"{check_id} missing from the shipped policy"
        assert spec.rule in text and spec.rule in docs
        assert f"`{check_id}`" in docs, f"docs/policy.md does not document {check_id}"
        assert spec.gbt and spec.cis


# --- parsers --------------------------------------------------------------------------------

def test_proc_net_tcp6_address_decoding():
    line = ("   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 "
            "0A 00000000:00000000 00:00000000 00000000  1000        0 99 1 0 100 0 0 10 0")
    (sock,) = P.parse_proc_net_sockets("header\n" + line, "tcp6")
    assert (sock.address, sock.port, sock.uid, sock.loopback) == ("::1", 8080, 1000, True)


def test_public_address_space():
    assert P.is_public(P.ipaddress.ip_network("0.0.0.0/1"))
    assert P.is_public(P.ipaddress.ip_network("2400:da00::/32"))
    assert not P.is_public(P.ipaddress.ip_network("172.20.0.0/16"))
    assert not P.is_public(P.ipaddress.ip_network("fd00:1::/64"))


# --- reports and drift -------------------------------------------------------------------------

def _report(status="fail", message="kernel module usb-storage is not disabled", host_status="ok"):
    result = CheckResult("media.usb-storage-disabled", status, rule="R-MED-2")
    if status == "fail":
        result.findings = [Finding(message, "/etc/modprobe.d/x.conf:1: x",
                                   "media.usb-storage-disabled", "R-MED-2")]
    hosts = [HostReport("db1", results=[result]),
             HostReport("db2", status=host_status, error="db2 (127.0.0.1:1): refused"
                        if host_status != "ok" else None)]
    return RunReport("20260101T000000.000000Z-aaaaaa", "2026-01-01T00:00:00+00:00", 0.1, [],
                     hosts)


def test_exit_codes():
    assert _report("pass").exit_code == 0
    assert _report("fail").exit_code == 1
    assert _report("fail", host_status="unreachable").exit_code == 3


def test_junit_has_failure_skipped_and_error():
    report = _report("fail", host_status="unreachable")
    root = ET.fromstring(render_string(check_result(report), "junit").split("\n", 1)[1])
    failure = root.find("./testsuite[@name='db1']/testcase/failure")
    assert failure.get("type") == "R-MED-2" and "/etc/modprobe.d/x.conf:1" in failure.text
    assert root.find("./testsuite[@name='db2']/testcase/error").get("type") == "unreachable"


def test_store_and_drift(tmp_path):
    store = RunStore(str(tmp_path), keep=2, keep_days=0, floor_days=0)   # count pruning only
    old = _report("pass")
    store.save(old)
    new = _report("fail")
    new.id = "20260102T000000.000000Z-bbbbbb"
    store.save(new)
    assert store.latest().id == new.id
    changes = drift(store.load(old.id), new)
    assert [(c.host, c.check, c.change, c.before, c.after) for c in changes] == [
        ("db1", "media.usb-storage-disabled", "new failure", "pass", "fail")]
    third = _report("fail", message="another")
    third.id = "20260103T000000.000000Z-cccccc"
    store.save(third)
    assert store.ids() == [new.id, third.id]                  # keep=2 pruned the oldest
    kinds = sorted(c.change for c in drift(new, third))
    assert kinds == ["finding added", "finding gone"]
    assert oct(os.stat(store.dir).st_mode & 0o777) == "0o700"


def test_store_never_prunes_a_run_younger_than_the_floor(tmp_path):
    import datetime as dt
    now = dt.datetime.now(dt.timezone.utc)
    ids = [(now - dt.timedelta(days=d)).strftime("%Y%m%dT%H%M%S.%fZ") + f"-{d:06d}"
           for d in (300, 10, 5)]
    store = RunStore(str(tmp_path), keep=1, keep_days=0)     # only the 183-day floor
    for run_id in ids:
        report = _report("pass")
        report.id = run_id
        store.save(report)
    # keep=1, but the two runs younger than 183 days stay; the 300-day-old one goes
    assert store.ids() == ids[1:]
    store.prune(now=now + dt.timedelta(days=200))     # both old by then: keep=1 rules
    assert store.ids() == ids[2:]
    RunStore(str(tmp_path), keep=0).prune(now=now)    # nothing younger, whatever keep says
    assert store.ids() == ids[2:]


def test_baseline_is_read_first_so_site_files_win(tmp_path):
    from opskit.policy.policyfile import load_policy, policy_files
    (tmp_path / "baseline.yaml").write_text("checks:\n  net.forwarding: {require_explicit: true}\n")
    (tmp_path / "50-site.yaml").write_text("checks:\n  net.forwarding: {require_explicit: false}\n")
    (tmp_path / "zz-more.yaml").write_text("roles:\n  default: {tcp: [22, 443]}\n")
    assert [p.rsplit("/", 1)[1] for p in policy_files(str(tmp_path))] == [
        "baseline.yaml", "50-site.yaml", "zz-more.yaml"]
    policy = load_policy(explicit=str(tmp_path))
    assert policy.checks["net.forwarding"].values == {"require_explicit": False}
    assert policy.checks["net.forwarding"].where["require_explicit"].endswith("50-site.yaml:2")
