"""Differential test of media.usb-storage-disabled against kmod (R-MED-2).

Each tests/fixtures/policy/kmod-scenarios/*.txt (format: docs/policy.md,
"kmod scenarios") becomes a tree; opskit reads it as a recorded host tree,
and ``modprobe --showconfig`` and ``modprobe -n -v usb-storage`` run in a
private mount namespace with the tree's modprobe.d directories bind-mounted
over the machine's. The install command modprobe would run is then run by
/bin/sh (as kmod runs it) with modprobe/insmod replaced by a recorder: it
disables the module only when it starts with /bin/false or /bin/true and
never calls a loader. The install lines for usb-storage (in kmod's order),
the one modprobe would run, and the verdict must agree with kmod and with the
scenario's ``expect:``.
"""
from pathlib import Path

import pytest

from opskit.hosts.local import LocalHost
from opskit.policy import parsers as P
from opskit.policy.media import modprobe_rules, module_disabled
from opskit.policy.probe import Probe
from tests.harness.mountns import check_corpus, header, run_with_binds, scenario_tree, tool

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "policy" / "kmod-scenarios"
DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d")


def kmod(tree: Path) -> tuple[list[str], str | None]:
    """(install commands for usb_storage in kmod's order, the one modprobe runs)."""
    modprobe = tool("modprobe", "/sbin/modprobe", "/usr/sbin/modprobe")
    binds = {d: str(tree / d.lstrip("/")) for d in DIRS}
    tmpfs = ("/run", "/usr/local/lib")
    config = run_with_binds(binds, [modprobe, "--showconfig"], tmpfs=tmpfs).stdout
    installs = [" ".join(line.split()[2:]) for line in config.splitlines()
                if line.split()[:2] == ["install", "usb_storage"]]
    dry = run_with_binds(binds, [modprobe, "-n", "-v", "usb-storage"], tmpfs=tmpfs, check=False)
    first = (dry.stdout.splitlines() or [""])[0].split()
    runs = " ".join(first[1:]) if dry.returncode == 0 and first[:1] == ["install"] else None
    return installs, runs


LOADERS = ("/sbin/modprobe", "/usr/sbin/modprobe", "/sbin/insmod", "/usr/sbin/insmod",
           "/bin/kmod", "/usr/bin/kmod")


def install_loads(tmp_path: Path, command: str) -> bool:
    """Whether the install command, run by /bin/sh as kmod runs it (system(3)),
    calls modprobe/insmod: each loader is replaced by a recorder in the
    namespace, so nothing is loaded for real."""
    marker = tmp_path / "loader-called"
    recorder = tmp_path / "recorder"
    recorder.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marker}\n")
    recorder.chmod(0o755)
    binds = {loader: str(recorder) for loader in LOADERS if Path(loader).exists()}
    run_with_binds(binds, ["/bin/sh", "-c", command], check=False)
    return marker.exists()


def test_corpus_is_large_enough():
    check_corpus(SCENARIOS, ("disabled=yes", "disabled=no"))


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.txt")), ids=lambda p: p.stem)
def test_usb_storage_verdict_equals_kmod(tmp_path, path):
    text = path.read_text()
    tree = scenario_tree(tmp_path / "tree", text, DIRS)
    real_installs, real_runs = kmod(tree)

    probe = Probe(LocalHost("scenario", sysroot=str(tree)))
    rules, files, _ = modprobe_rules(probe)
    installs = [" ".join(r.command.split()) for r in rules
                if r.kind == "install" and r.module == "usb_storage"]
    effective = P.effective_install(rules, "usb-storage")
    disabled, why = module_disabled(probe, "usb-storage")
    detail = (f"\nscenario {path.name}: {header(text).get('what')}\n"
              f"kmod:   installs {real_installs}, modprobe runs {real_runs!r}\n"
              f"opskit: installs {installs}, effective "
              f"{effective.command if effective else None!r}, disabled={disabled} ({why})\n"
              f"files read: {files}\n{text}")
    assert installs == real_installs, "install lines differ" + detail
    assert (effective and " ".join(effective.command.split())) == (real_runs or None), \
        "effective install command differs" + detail
    real_disabled = bool(real_runs) and real_runs.split()[0] in P.DISABLING_COMMANDS \
        and not install_loads(tmp_path, real_runs)
    expect = header(text)["expect"] == "disabled=yes"
    assert real_disabled == expect, "kmod disagrees with expect:" + detail
    assert disabled == real_disabled, "opskit's verdict differs from kmod's" + detail
