"""All registers of this package, for ``incident verify`` and the evidence pack."""
from __future__ import annotations

from . import business, events, incidents, twoperson

REGISTERS = {"incidents": incidents.register, "security events": events.register,
             "business errors": business.register, "approvals": twoperson.register}


def verify_all(state_dir: str) -> dict[str, str | None]:
    """register name -> None when its chain is intact, else the first problem."""
    return {name: make(state_dir).verify() for name, make in REGISTERS.items()}
