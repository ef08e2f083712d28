"""Differential test of net.firewall-default-deny against the kernel (R-NET-5).

Each scenario in tests/fixtures/policy/nft-scenarios/*.nft (format:
docs/policy.md, "Firewall scenarios") is loaded with ``nft -f`` into the
router of a client -- router -- server set of network namespaces. The oracle
is a real TCP connection / UDP exchange from the client to each probed port
on the router (input hook) and through it to the server (forward hook), over
IPv4 and IPv6. opskit's verdict for each (hook, IP version) must equal the
oracle's; the scenario's ``expect:`` line must too, so a broken oracle fails
instead of agreeing with a broken check.
"""
from pathlib import Path

import pytest

from opskit.policy.fleet import check_host
from opskit.policy.policyfile import load_policy_files

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[2] / "fixtures" / "policy" / "nft-scenarios"
APPROVED = {"tcp": {22}, "udp": set()}
KEYS = [(hook, version) for hook in ("input", "forward") for version in (4, 6)]


def parse_scenario(path: Path) -> dict:
    """Header comments: ``what:``, ``ports:`` (probed, default 8080), ``expect:``."""
    meta = {"what": path.stem, "ports": [8080], "expect": {}}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(":")
        if key == "ports":
            meta["ports"] = [int(p) for p in value.split()]
        elif key == "what":
            meta["what"] = value.strip()
        elif key == "expect":
            for item in value.split():
                name, _, state = item.partition("=")
                versions = (int(name[-1]),) if name[-1] in "46" else (4, 6)
                for version in versions:
                    meta["expect"][(name.rstrip("46"), version)] = state == "open"
    return meta


def test_corpus_is_large_enough():
    names = sorted(p.name for p in SCENARIOS.glob("*.nft"))
    assert len(names) >= 15, names
    for path in SCENARIOS.glob("*.nft"):
        assert set(parse_scenario(path)["expect"]) == set(KEYS), f"{path.name}: expect: " \
                                                                  "must cover input and forward"


@pytest.fixture(scope="module")
def served(lan):
    ports = sorted({p for path in SCENARIOS.glob("*.nft") for p in parse_scenario(path)["ports"]})
    lan.serve(ports)
    return lan


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text("roles:\n  default: {tcp: [22], udp: []}\n")
    return load_policy_files([str(path)])


def opskit_verdicts(host, policy) -> tuple[dict, str]:
    result = check_host(host, policy).result("net.firewall-default-deny")
    text = "\n".join([f"  {f.message}\n    <- {f.evidence}" for f in result.findings]
                     + [f"  pass: {e}" for e in result.evidence])
    out = {}
    for hook, version in KEYS:
        label = f"IPv{version} {hook} is not denied"
        out[(hook, version)] = any(f.message.startswith(label) for f in result.findings)
    return out, text


def oracle_verdicts(lan, ports) -> dict:
    probed = lan.probe(ports)
    return {(hook, version): any(ok for (h, v, proto, port), ok in probed.items()
                                 if h == hook and v == version
                                 and (hook == "forward" or port not in APPROVED[proto]))
            for hook, version in KEYS}


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.nft")), ids=lambda p: p.stem)
def test_verdict_equals_kernel(served, policy, path):
    meta = parse_scenario(path)
    script = path.read_text()
    served.router.sh("nft", "flush", "ruleset")
    served.router.nft("flush ruleset\n" + script)
    try:
        kernel = oracle_verdicts(served, meta["ports"])
        ours, text = opskit_verdicts(served.router, policy)
    finally:
        served.router.sh("nft", "flush", "ruleset")
    show = lambda d: ", ".join(f"{h}{v}={'open' if d[(h, v)] else 'closed'}" for h, v in KEYS)
    detail = (f"\nscenario {path.name}: {meta['what']}\nkernel: {show(kernel)}\n"
              f"opskit: {show(ours)}\n{text}\nruleset:\n{script}")
    assert kernel == meta["expect"], "the oracle disagrees with expect:" + detail
    assert ours == kernel, "opskit disagrees with the kernel:" + detail
