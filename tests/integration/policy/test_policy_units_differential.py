"""Differential test of the unit-file resolution behind media.automount
(R-MED-2, issue #18 item 5) against the real ``systemctl is-enabled --root``.

Each tests/fixtures/policy/unit-scenarios/*.txt (format: docs/policy.md,
"Unit scenarios") is built as a tree; opskit reads it as a recorded host tree
and its ``systemctl is-enabled`` state for autofs.service must equal
systemctl's own answer for the same tree. ``# expect: boot=yes|no`` is
whether boot starts the unit (systemctl's state alone does not say: a vendor
``*.wants`` link starts a 'disabled' unit); the check's verdict must match it.
"""
import subprocess
from pathlib import Path

import pytest

from opskit.hosts.local import LocalHost
from opskit.policy.catalogue import Context, catalogue
from opskit.policy.model import FAIL, PASS
from opskit.policy.probe import Probe
from opskit.policy.units import unit_state
from tests.harness.mountns import build_tree, check_corpus, header, tool

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "policy" / "unit-scenarios"
UNIT = "autofs.service"


def systemctl_state(root: Path, unit: str) -> str:
    proc = subprocess.run([tool("systemctl"), "is-enabled", f"--root={root}", unit],
                          capture_output=True, text=True, timeout=30)
    out = proc.stdout.strip()
    if not out and "No such file or directory" in proc.stderr:
        return "not-found"
    assert out, f"systemctl is-enabled said nothing: {proc.stderr.strip()}"
    return out.splitlines()[-1]


def test_corpus_is_large_enough():
    check_corpus(SCENARIOS, ("boot=yes", "boot=no"))


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.txt")), ids=lambda p: p.stem)
def test_state_equals_systemctl(tmp_path, path):
    text = path.read_text()
    root = tmp_path / "root"
    build_tree(root, text)
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    theirs = systemctl_state(root, UNIT)
    probe = Probe(LocalHost("rec", sysroot=str(root)))
    ours = unit_state(probe, UNIT)
    spec = catalogue()["media.automount"]
    result = spec.func(probe, Context({k: key.default for k, key in spec.params.items()}))
    detail = (f"\nscenario {path.name}: {header(text).get('what')}\nsystemctl: {theirs}\n"
              f"opskit: {ours}\ncheck: {result.status} {[f.message for f in result.findings]} "
              f"{result.evidence}\n{text}")
    assert ours.state == theirs, "opskit's is-enabled state differs from systemctl's:" + detail
    boot = header(text)["expect"] == "boot=yes"
    assert result.status == (FAIL if boot else PASS), "verdict differs from expect:" + detail
