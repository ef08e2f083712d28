"""Differential test of net.firewall-default-deny on iptables rulesets (R-NET-5).

Each scenario in tests/fixtures/policy/iptables-scenarios/*.rules (format:
docs/policy.md, "iptables scenarios") is loaded with ``iptables-restore`` /
``ip6tables-restore`` into the router of the client -- router -- server
namespaces of the nft differential test, once with the legacy x_tables
backend (``iptables-legacy-restore``: opskit must find the tables behind
iptables-nft's "legacy tables present" warning) and once with iptables-nft
(the same tables then also show in ``nft -j list ruleset``, with ``xt``
matches). The oracle is a real TCP connection / UDP exchange from the client;
opskit's verdict for each (hook, IP version) must equal it, and both must
equal the scenario's ``expect:`` line.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.policy.test_policy_nft_differential import (  # noqa: F401 (policy: a fixture)
    KEYS, opskit_verdicts, oracle_verdicts, parse_scenario, policy)

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "policy" / "iptables-scenarios"
BACKENDS = ("legacy", "nft")
BUILTIN = {"raw": ("PREROUTING", "OUTPUT"),
           "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
           "filter": ("INPUT", "FORWARD", "OUTPUT"),
           "security": ("INPUT", "FORWARD", "OUTPUT")}


def sections(path: Path) -> dict[int, str]:
    """IP version -> iptables-restore input, from '=== iptables', '=== ip6tables'
    and '=== both' sections."""
    out, current = {}, None
    for line in path.read_text().splitlines():
        if line.startswith("=== "):
            current = {"iptables": (4,), "ip6tables": (6,), "both": (4, 6)}[line[4:].strip()]
            for version in current:
                out.setdefault(version, "")
        elif current:
            for version in current:
                out[version] += line + "\n"
    return out


def restore_tool(backend: str, version: int) -> str:
    tool = f"{'ip' if version == 4 else 'ip6'}tables-{backend}-restore"
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: install iptables (scripts/test does)", pytrace=False)
    return tool


def restore(router, tool: str, text: str) -> None:
    proc = subprocess.run(["ip", "netns", "exec", router.ns, tool], input=text,
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        pytest.fail(f"{tool} failed in {router.ns}: {proc.stderr.strip()}\n{text}",
                    pytrace=False)


def reset(router, backend: str) -> None:
    """Every table back to empty chains with ACCEPT policies."""
    router.sh("nft", "flush", "ruleset")
    if backend == "legacy":
        text = "".join(f"*{table}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in chains)
                       + "COMMIT\n" for table, chains in BUILTIN.items())
        for version in (4, 6):
            restore(router, restore_tool(backend, version), text)


def test_corpus_is_large_enough():
    paths = sorted(SCENARIOS.glob("*.rules"))
    assert len(paths) >= 15, paths
    for path in paths:
        assert set(parse_scenario(path)["expect"]) == set(KEYS), f"{path.name}: expect: " \
                                                                  "must cover input and forward"
        assert sections(path), f"{path.name}: no '=== iptables|ip6tables|both' section"


def test_sections_split_by_version(tmp_path):
    path = tmp_path / "x.rules"
    path.write_text("# expect: input=open forward=open\n=== iptables\na\n=== both\nb\n")
    assert sections(path) == {4: "a\nb\n", 6: "b\n"}


@pytest.fixture(scope="module")
def served(lan):
    ports = sorted({p for path in SCENARIOS.glob("*.rules")
                    for p in parse_scenario(path)["ports"]})
    lan.serve(ports)
    return lan


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.rules")), ids=lambda p: p.stem)
def test_verdict_equals_kernel(served, policy, path, backend):
    meta = parse_scenario(path)
    router = served.router
    reset(router, backend)
    try:
        for version, text in sections(path).items():
            restore(router, restore_tool(backend, version), text)
        kernel = oracle_verdicts(served, meta["ports"])
        ours, text = opskit_verdicts(router, policy)
    finally:
        reset(router, backend)
    show = lambda d: ", ".join(f"{h}{v}={'open' if d[(h, v)] else 'closed'}" for h, v in KEYS)
    detail = (f"\nscenario {path.name} ({backend}): {meta['what']}\nkernel: {show(kernel)}\n"
              f"opskit: {show(ours)}\n{text}\nruleset:\n{path.read_text()}")
    assert kernel == meta["expect"], "the oracle disagrees with expect:" + detail
    assert ours == kernel, "opskit disagrees with the kernel:" + detail
