"""The check catalogue: every check's id, the rule it enforces (REQUIREMENTS.md),
the GB/T 22239-2019 level-3 clause and the CIS control it matches, its
parameters (validated in policy files) and the function that decides it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from opskit.core.schema import Key

from .model import CheckResult
from .probe import Probe


@dataclass
class Context:
    """What a check gets besides the probe: its parameters from the policy, and
    the host's role with that role's approved ports."""

    params: dict
    role: str = "default"
    ports: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


@dataclass
class CheckSpec:
    id: str
    title: str
    rule: str                      # R-MED-2, R-NET-1, ...
    gbt: str                       # GB/T 22239-2019 level 3 clause
    cis: str                       # CIS Controls v8 safeguard / CIS Benchmark recommendation
    func: Callable[[Probe, Context], CheckResult]
    params: dict[str, Key] = field(default_factory=dict)
    severity: str = "high"
    category: str = "media"
    remediation: str = ""
    profiles: tuple[str, ...] = ()     # empty: the baseline; else only these profiles run it
    commands: dict[str, list[str]] = field(default_factory=dict)   # prefetched in one round trip


CHECKS: dict[str, CheckSpec] = {}


def check(id: str, *, title: str, rule: str, gbt: str, cis: str, severity: str = "high",
          params: dict[str, Key] | None = None, category: str = "media",
          remediation: str = "", profiles: tuple[str, ...] = (),
          commands: dict[str, list[str]] | None = None):
    """Register a check function under ``id`` (catalogue order = registration order).
    ``profiles``: the named profiles that select it (none: the baseline);
    ``commands``: what it runs on a live host, batched with the others."""

    def decorator(func):
        CHECKS[id] = CheckSpec(id, title, rule, gbt, cis, func, params or {}, severity, category,
                               remediation, tuple(profiles), dict(commands or {}))
        return func

    return decorator


def catalogue() -> dict[str, CheckSpec]:
    """All checks, importing the modules that define them."""
    from . import media, network  # noqa: F401  (registration side effect)
    from . import mlps  # noqa: F401  (the MLPS level-3 profile's checks)
    return CHECKS
