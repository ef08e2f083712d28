"""fan_out over inventory entries: one outcome per host, in order, failures kept."""
import threading
import time

import pytest

from opskit.hosts.base import HostUnreachable
from opskit.hosts.fanout import HostOutcome, fan_out
from opskit.hosts.inventory import HostSpec
from opskit.hosts.local import LocalHost


class BrokenSpec(HostSpec):
    """An entry whose connection fails, like an unreachable SSH host."""

    def connect(self, ssh_settings=None):
        raise HostUnreachable(f"{self.name} (10.9.9.9:22): cannot connect: Connection refused",
                              host=self.name)


def specs(*names):
    return [BrokenSpec(n) if n.startswith("down") else HostSpec(n) for n in names]


def test_every_host_gets_one_outcome_in_input_order():
    def work(host):
        if host.name == "boom":
            raise RuntimeError("collector bug")
        if host.name == "slow":
            time.sleep(0.3)
        return host.run(["echo", host.name], check=True).text.strip()

    names = ["slow", "a", "down1", "boom", "b", "down2", "c"]
    outcomes = fan_out(specs(*names), work, concurrency=3)
    assert [o.name for o in outcomes] == names
    assert all(isinstance(o, HostOutcome) for o in outcomes)
    by = {o.name: o for o in outcomes}
    for name in ("slow", "a", "b", "c"):
        assert by[name].ok and by[name].value == name and by[name].status == "ok"
    assert not by["down1"].ok and by["down1"].status == "unreachable"
    assert "down1 (10.9.9.9:22): cannot connect" in by["down1"].error
    assert not by["boom"].ok and by["boom"].status == "error"
    assert by["boom"].error == "RuntimeError: collector bug"
    assert isinstance(by["boom"].exception, RuntimeError)
    assert by["slow"].duration >= 0.3


def test_timeout_becomes_a_row_and_does_not_block():
    release = threading.Event()

    def work(host):
        if host.name == "stuck":
            release.wait(30)
        return "done"

    started = time.monotonic()
    outcomes = fan_out(specs("a", "stuck", "b"), work, concurrency=2, timeout_per_host=0.5)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 3
    assert [o.name for o in outcomes] == ["a", "stuck", "b"]
    assert [o.ok for o in outcomes] == [True, False, True]
    stuck = outcomes[1]
    assert stuck.status == "timeout" and "stuck (local): no result within 0.5s" in stuck.error
    assert stuck.value is None


def test_stuck_hosts_free_their_slot():
    """With concurrency 1 and the first host stuck, the rest still run."""
    release = threading.Event()

    def work(host):
        if host.name == "stuck":
            release.wait(30)
        return host.name

    outcomes = fan_out(specs("stuck", "a", "b"), work, concurrency=1, timeout_per_host=0.3)
    release.set()
    assert [(o.name, o.ok) for o in outcomes] == [("stuck", False), ("a", True), ("b", True)]


def test_concurrency_is_bounded():
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def work(host):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1

    outcomes = fan_out(specs(*[f"h{i}" for i in range(12)]), work, concurrency=4)
    assert len(outcomes) == 12 and all(o.ok for o in outcomes)
    assert state["max"] == 4


def test_hosts_given_directly_are_used_and_not_closed():
    closed = []

    class Probe(LocalHost):
        def close(self):
            closed.append(self.name)

    mine = Probe("mine")
    outcomes = fan_out([mine], lambda h: h is mine, concurrency=2)
    assert outcomes[0].ok and outcomes[0].value is True and closed == []


def test_opened_hosts_are_closed():
    closed = []

    class Spec(HostSpec):
        def connect(self, ssh_settings=None):
            spec = self

            class Probe(LocalHost):
                def close(self):
                    closed.append(spec.name)
            return Probe(self.name)

    fan_out([Spec("x"), Spec("y")], lambda h: 1 / 0 if h.name == "y" else 1)
    assert sorted(closed) == ["x", "y"]


def test_empty_input():
    assert fan_out([], lambda h: 1) == []


@pytest.mark.parametrize("concurrency", [0, -3])
def test_concurrency_below_one_still_runs(concurrency):
    assert [o.ok for o in fan_out(specs("a"), lambda h: 1, concurrency=concurrency)] == [True]
