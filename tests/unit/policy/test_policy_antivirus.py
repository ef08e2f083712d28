"""av.realtime on recorded trees (R-NET-4, issue #18 item 4): a process named
clamonacc passes only when its executable is a clamonacc that an installed
package owns; ClamAV's signature age is reported and judged. The live
counterpart (real processes, the real dpkg database) is
tests/integration/policy/test_policy_av.py."""
import os
import time

import pytest

from opskit.policy import antivirus as AV
from opskit.policy.model import ERROR, FAIL, PASS
from tests.fixtures.policy.trees import Link, good_tree, write
from tests.unit.policy.test_policy_media import evidence, messages, run


@pytest.fixture
def tree(tmp_path):
    return good_tree(tmp_path / "host")


def test_real_scanner_passes_naming_package_and_signature_age(tree):
    result = run(tree, "av.realtime")
    assert result.status == PASS, evidence(result)
    assert "/proc/812/exe -> /usr/sbin/clamonacc, package clamav-daemon" in evidence(result)
    assert "ClamAV signatures 0.0 days old (/var/lib/clamav/daily.cld)" in evidence(result)


def test_renamed_copy_nobody_owns_fails(tree):
    write(tree, {"/proc/812/exe": Link("/usr/local/bin/clamonacc"),
                 "/usr/local/bin/clamonacc": "ELF copy of sleep"})
    result = run(tree, "av.realtime")
    assert result.status == FAIL
    assert messages(result) == "a process named like a scanner is not the real scanner"
    assert "runs /usr/local/bin/clamonacc, which no installed package owns" in evidence(result)


def test_link_named_clamonacc_to_another_program_fails(tree):
    # started through a link called clamonacc: comm says clamonacc, the kernel runs sleep
    write(tree, {"/proc/812/exe": Link("/usr/bin/sleep"), "/usr/bin/sleep": "",
                 "/var/lib/dpkg/info/coreutils.list": "/bin/sleep\n"})
    result = run(tree, "av.realtime")
    assert result.status == FAIL
    assert "runs /usr/bin/sleep, not a clamonacc binary" in evidence(result)


def test_unresolvable_executable_is_an_error_not_a_pass(tree):
    write(tree, {"/proc/812/exe": None})
    result = run(tree, "av.realtime")
    assert result.status == ERROR and "/proc/812/exe of 'clamonacc' cannot be resolved" \
        in result.reason


def test_old_signatures_fail(tree):
    path = os.path.join(tree, "var/lib/clamav/daily.cld")
    old = time.time() - 30 * 86400
    os.utime(path, (old, old))
    result = run(tree, "av.realtime")
    assert result.status == FAIL
    assert messages(result) == "ClamAV signatures are 30 days old (policy allows 7)"


def test_database_directory_from_clamd_conf(tree):
    write(tree, {"/etc/clamav/clamd.conf": "DatabaseDirectory /srv/clamav\n",
                 "/srv/clamav/daily.cvd": ""})
    old = time.time() - 9 * 86400
    os.utime(os.path.join(tree, "var/lib/clamav/daily.cld"), (old, old))   # not read any more
    result = run(tree, "av.realtime")
    assert result.status == PASS and "(/srv/clamav/daily.cvd)" in evidence(result)


def test_decision_function():
    c = AV.Candidate(7, "clamonacc", "/usr/sbin/clamonacc", "clamav-daemon", "dpkg -S")
    assert AV.judge(c, [])[0] is True
    c.owner = None
    assert AV.judge(c, [])[0] is False
    assert AV.judge(c, ["/usr/sbin/clamonacc"])[0] is True          # trusted by the policy
    long = AV.Candidate(8, "falcon-sensor-x"[:15], "/opt/f/falcon-sensor-xyz", "falcon", "")
    assert AV.judge(long, [])[0] is True                            # comm is cut at 15
    assert AV.judge(AV.Candidate(9, "clamonacc"), [])[0] is None


def test_merged_usr_aliases_and_dpkg_output():
    assert AV.aliases("/usr/bin/sleep") == ["/usr/bin/sleep", "/bin/sleep"]
    assert AV.aliases("/sbin/x") == ["/sbin/x", "/usr/sbin/x"]
    assert AV.aliases("/opt/x/bin/y") == ["/opt/x/bin/y"]
    out = ("diversion by foo from: /bin/sleep\ncoreutils: /bin/sleep\n")
    assert AV.parse_dpkg_search(out, ["/usr/bin/sleep", "/bin/sleep"]) == "coreutils"
    assert AV.parse_dpkg_search("", ["/bin/sleep"]) is None
