"""Differential test of boot-time sysctl resolution against systemd-sysctl
(R-NET-1, net.forwarding). Each tests/fixtures/policy/sysctl-scenarios/*.txt
(format: docs/policy.md, "sysctl scenarios") becomes a tree; opskit reads it
as a recorded host tree, and ``systemd-sysctl --cat-config`` runs in a
private mount namespace with the tree's sysctl directories bind-mounted over
the machine's. The files (in order) and the value each key gets must be the
same. systemd-sysctl then applies the forwarding keys in a private network
namespace as well (kernel_forwarding), and opskit's forwarding verdict must
equal what the kernel reads back, and the scenario's ``expect:``.
"""
import shlex
from pathlib import Path

import pytest

from opskit.hosts.local import LocalHost
from opskit.policy import parsers as P
from opskit.policy.network import boot_forwarding, sysctl_settings
from opskit.policy.probe import Probe
from tests.harness.mountns import check_corpus, header, run_with_binds, scenario_tree, tool

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "policy" / "sysctl-scenarios"
DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")


def normalise(key: str) -> str:
    """systemd's sysctl_normalize, written independently of opskit's."""
    key = key.strip().lstrip("-").strip()
    for i, c in enumerate(key):
        if c == ".":
            return key
        if c == "/":
            return key[:i] + "".join({"/": ".", ".": "/"}.get(x, x) for x in key[i:])
    return key


def _binds(tree: Path) -> dict[str, str]:
    binds = {d: str(tree / d.lstrip("/")) for d in DIRS}
    binds["/etc/sysctl.conf"] = str(tree / "etc/sysctl.conf")
    return binds


def cat_config(tree: Path) -> str:
    binary = tool("/lib/systemd/systemd-sysctl", "/usr/lib/systemd/systemd-sysctl")
    return run_with_binds(_binds(tree), [binary, "--cat-config", "--no-pager"],
                          tmpfs=("/run", "/usr/local/lib")).stdout


FORWARDING_PREFIXES = ("net.ipv4.ip_forward", "net.ipv4.conf", "net.ipv6.conf")


def kernel_forwarding(tree: Path, values: dict[str, str]) -> dict[str, str]:
    """What the kernel says after systemd-sysctl applies the scenario: it runs
    in a private network namespace too (so only that namespace's forwarding
    keys change; --prefix keeps it to them), with a veth interface for each
    interface a key names and eth0, and every forwarding file is read back."""
    binary = tool("/lib/systemd/systemd-sysctl", "/usr/lib/systemd/systemd-sysctl")
    unshare, ip = tool("unshare"), tool("ip", "/sbin/ip", "/usr/sbin/ip")
    ifaces = sorted({k.split(".")[3].replace("/", ".") for k in values
                     if k.startswith(("net.ipv4.conf.", "net.ipv6.conf."))
                     and len(k.split(".")) == 5 and not any(c in k for c in "*?[")}
                    - {"all", "default", "lo"} | {"eth0"})     # eth0 for globs such as 'e*'
    script = ["set -e"]
    script += [f"{ip} link add {shlex.quote(name)} type veth peer name opk{n}"
               for n, name in enumerate(ifaces) if len(name) <= 15]
    script.append(shlex.join([binary] + [f"--prefix={p}" for p in FORWARDING_PREFIXES])
                  + " || true")
    script.append("grep -H . /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/*/forwarding "
                  "/proc/sys/net/ipv6/conf/*/forwarding")
    out = run_with_binds(_binds(tree), [unshare, "-n", "sh", "-c", "\n".join(script)],
                         tmpfs=("/run", "/usr/local/lib")).stdout
    return dict(line.rsplit(":", 1) for line in out.splitlines() if ":" in line)


def oracle(text: str) -> tuple[list[str], dict[str, str]]:
    """Files in the order systemd-sysctl reads them, and each key's last value."""
    files, values = [], {}
    for line in text.splitlines():
        if line.startswith("# /"):
            files.append(line[2:].strip())
            continue
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or "=" not in stripped:
            continue
        key, _, value = stripped.partition("=")
        values[normalise(key)] = value.strip()
    return files, values


def test_corpus_is_large_enough():
    check_corpus(SCENARIOS, ("forwarding=on", "forwarding=off"))


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.txt")), ids=lambda p: p.stem)
def test_resolution_equals_systemd_sysctl(tmp_path, path):
    text = path.read_text()
    tree = scenario_tree(tmp_path / "tree", text, DIRS)
    if not (tree / "etc/sysctl.conf").exists():
        (tree / "etc/sysctl.conf").write_text("")
    real_files, real_values = oracle(cat_config(tree))

    probe = Probe(LocalHost("scenario", sysroot=str(tree)))
    settings, files = sysctl_settings(probe)
    # a glob key's own last value (what --cat-config shows); a plain key's effective value
    ours = {s.key: s.value if s.is_glob else P.sysctl_effective(settings, s.key).value
            for s in settings}
    findings, _, _ = boot_forwarding(probe, explicit=False)
    detail = (f"\nscenario {path.name}: {header(text).get('what')}\n"
              f"systemd-sysctl: files {real_files} values {real_values}\n"
              f"opskit:         files {files} values {ours}\n"
              f"findings: {[f.message + ' <- ' + f.evidence for f in findings]}\n{text}")
    assert files == real_files, "file order differs" + detail
    assert ours == real_values, "effective values differ" + detail
    expect_on = header(text)["expect"] == "forwarding=on"
    kernel = kernel_forwarding(tree, real_values)
    real_on = any(v.strip() != "0" for v in kernel.values())
    detail += f"\nkernel after systemd-sysctl: {kernel}"
    assert real_on == expect_on, "systemd-sysctl (applied) disagrees with expect:" + detail
    assert bool(findings) == expect_on, "opskit's verdict disagrees" + detail
