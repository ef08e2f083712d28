"""Reachability check behind ``opskit hosts ping``: one row per host, always."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from .base import Host
from .fanout import fan_out
from .inventory import HostSpec, SSHSettings


@dataclass
class PingRow:
    """One host's answer. ``latency_ms`` is the ``uname -n`` round trip (the
    connection set-up is in ``duration_ms``); ``node`` is what the host calls itself."""

    host: str
    address: str
    ok: bool
    status: str
    latency_ms: float | None
    duration_ms: float
    node: str | None
    detail: str
    hint: str | None = None


def _probe(timeout: float):
    def probe(host: Host) -> tuple[str, float]:
        result = host.run(["uname", "-n"], timeout=timeout, check=True)
        return result.text.strip(), result.duration
    return probe


def ping(specs: Sequence[HostSpec], settings: SSHSettings | None = None,
         timeout: float | None = None) -> list[PingRow]:
    """Connect to every host and run ``uname -n``; failures become rows too."""
    settings = settings or SSHSettings()
    timeout = timeout or settings.connect_timeout + 10.0
    settings = replace(settings, connect_timeout=min(settings.connect_timeout, timeout))
    outcomes = fan_out(specs, _probe(timeout), concurrency=settings.concurrency,
                       timeout_per_host=timeout + 1.0, ssh_settings=settings)
    rows = []
    for spec, outcome in zip(specs, outcomes):
        duration = round(outcome.duration * 1000, 1)
        if outcome.ok:
            node, latency = outcome.value
            rows.append(PingRow(spec.name, spec.endpoint, True, "ok", round(latency * 1000, 1),
                                duration, node, f"node {node}"))
        else:
            rows.append(PingRow(spec.name, spec.endpoint, False, outcome.status, None, duration,
                                None, outcome.error or outcome.status, outcome.hint))
    return rows
