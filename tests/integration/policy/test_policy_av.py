"""av.realtime on the live machine (R-NET-4, issue #18 item 4): facts gathered
from real processes (/proc/PID/exe through Host.realpath) and the real dpkg
database (dpkg -S through Host.run). A copy of /bin/sleep named clamonacc, or
a link named clamonacc to sleep, is not a scanner; a program dpkg owns,
started under its own name, is (here: sleep itself, standing in for a
scanner package that is not installed on the test machine)."""
import os
import shutil
import subprocess

import pytest

from opskit.hosts.local import LocalHost
from opskit.policy import antivirus as AV
from opskit.policy.catalogue import Context, catalogue
from opskit.policy.model import FAIL, PASS
from opskit.policy.probe import Probe

pytestmark = pytest.mark.integration


@pytest.fixture
def spawn():
    procs = []

    def start(path):
        proc = subprocess.Popen([path, "60"])
        procs.append(proc)
        return proc.pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def candidate(name, pid):
    if shutil.which("dpkg") is None:
        pytest.fail("dpkg not found: this test reads the real dpkg database", pytrace=False)
    found = {c.pid: c for c in AV.candidates(Probe(LocalHost("local")), {name})}
    assert pid in found, f"pid {pid} not listed as {name}"
    return found[pid]


def run_check(names):
    spec = catalogue()["av.realtime"]
    params = {k: key.default for k, key in spec.params.items()}
    params.update(processes=names, max_signature_age_days=0)
    return spec.func(Probe(LocalHost("local")), Context(params))


def test_copy_of_sleep_named_clamonacc_is_not_the_scanner(tmp_path, spawn):
    fake = tmp_path / "clamonacc"
    shutil.copy("/bin/sleep", fake)
    pid = spawn(str(fake))
    c = candidate("clamonacc", pid)
    assert c.exe == str(fake) and c.owner is None and c.owner_source.startswith("dpkg -S")
    ok, why = AV.judge(c, [])
    assert ok is False and "which no installed package owns" in why
    result = run_check(["clamonacc"])
    assert result.status == FAIL and f"pid {pid}" in result.findings[0].evidence


def test_link_named_clamonacc_runs_sleep(tmp_path, spawn):
    link = tmp_path / "clamonacc"
    os.symlink(os.path.realpath("/bin/sleep"), link)
    pid = spawn(str(link))
    c = candidate("clamonacc", pid)
    assert c.exe == os.path.realpath("/bin/sleep")
    ok, why = AV.judge(c, [])
    assert ok is False and "not a clamonacc binary" in why


def test_packaged_program_under_its_own_name_passes(spawn):
    pid = spawn("/bin/sleep")
    c = candidate("sleep", pid)
    # merged /usr: the kernel says /usr/bin/sleep, dpkg knows /bin/sleep
    assert c.owner == "coreutils", c
    assert AV.judge(c, [])[0] is True
    result = run_check(["sleep"])
    assert result.status == PASS and "package coreutils" in " ".join(result.evidence)
