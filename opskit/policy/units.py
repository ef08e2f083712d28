"""What ``systemctl is-enabled`` says about a unit, and whether boot starts it.

Read over the Host interface (live hosts, SSH hosts, recorded trees alike),
following systemd 252's unit file lookup (install.c): the first unit
directory holding the name is the unit's fragment; a fragment that is a link
to /dev/null (or empty) is ``masked``; a name whose fragment has another name
is an ``alias``; links to it in the ``*.wants``/``*.requires``/``*.upholds``
directories of /etc/systemd/system make it ``enabled`` (of /run/systemd/system
``enabled-runtime``); otherwise ``disabled`` when its [Install] section has
WantedBy=/RequiredBy=/UpheldBy=/Alias=, ``indirect`` with only Also=, else
``static``.

``systemctl is-enabled`` ignores the vendor directories' ``*.wants`` links
(/usr/lib/systemd/system/multi-user.target.wants/x.service): it says
``disabled`` or ``static``, yet boot starts the unit. ``pulled_in`` finds
those links, in every unit directory (issue #18 item 5).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import parsers as P
from .probe import Probe

# systemd 252 system unit search path, in precedence order (--root included)
UNIT_DIRS = ("/etc/systemd/system.control", "/run/systemd/system.control",
             "/run/systemd/transient", "/run/systemd/generator.early", "/etc/systemd/system",
             "/etc/systemd/system.attached", "/run/systemd/system",
             "/run/systemd/system.attached", "/run/systemd/generator",
             "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system",
             "/run/systemd/generator.late")
CONFIG_DIRS = {"/etc/systemd/system": "enabled", "/run/systemd/system": "enabled-runtime"}
DEP_SUFFIXES = (".wants", ".requires", ".upholds")
INSTALL_RULES = ("WantedBy", "RequiredBy", "UpheldBy", "Alias")


@dataclass
class UnitState:
    """``state`` as systemctl is-enabled prints it ('not-found' when no unit
    file exists); ``fragment`` the unit file; ``evidence`` what decided it;
    ``pulled_by`` dependency links (any unit directory) that start it."""

    unit: str
    state: str
    fragment: str | None = None
    evidence: str = ""
    pulled_by: list[str] = field(default_factory=list)

    @property
    def starts_at_boot(self) -> bool:
        """Enabled, or pulled in by a dependency link, and not masked."""
        if self.state.startswith("masked") or self.state == "not-found":
            return False
        return self.state.startswith("enabled") or bool(self.pulled_by)


def _fragment(probe: Probe, unit: str) -> tuple[str, str | None] | None:
    """(directory, real path or None when the link leads nowhere) of the first
    unit file named ``unit``."""
    for directory in UNIT_DIRS:
        path = f"{directory}/{unit}"
        if unit in (probe.listdir(directory) or []):
            return directory, probe.realpath(path)
    return None


def _links_to(probe: Probe, directory: str, unit: str, fragment: str) -> list[str]:
    """Dependency links in ``directory``'s *.wants/*.requires/*.upholds that
    name ``unit`` or lead to ``fragment``."""
    out = []
    for sub in probe.listdir(directory) or []:
        if not sub.endswith(DEP_SUFFIXES):
            continue
        for name in probe.listdir(f"{directory}/{sub}") or []:
            path = f"{directory}/{sub}/{name}"
            # a dependency is by name: where the link points does not matter
            if name == unit or (name.endswith(unit[unit.rfind("."):])
                                and probe.realpath(path) == fragment):
                out.append(path)
    return out


def install_section(text: str) -> dict[str, list[str]]:
    """Keys of a unit file's [Install] section."""
    out: dict[str, list[str]] = {}
    section = None
    for line in P.logical_lines(text, "", comment_chars="#;"):
        if line.text.startswith("[") and line.text.endswith("]"):
            section = line.text[1:-1]
        elif section == "Install":
            key, eq, value = line.text.partition("=")
            if eq and value.strip():
                out.setdefault(key.strip(), []).extend(value.split())
    return out


def unit_state(probe: Probe, unit: str) -> UnitState:
    """``systemctl is-enabled UNIT`` for a plain (non-template) unit."""
    found = _fragment(probe, unit)
    if found is None:
        return UnitState(unit, "not-found", evidence=f"no {unit} in any unit directory")
    directory, real = found
    path = f"{directory}/{unit}"
    runtime = "-runtime" if directory.startswith("/run/") else ""
    text = probe.read(real) if real not in (None, "/dev/null") else ""
    if real in (None, "/dev/null") or not (text or "").strip():
        return UnitState(unit, "masked" + runtime, path, f"{path} -> /dev/null (masked)")
    state = UnitState(unit, "", real, pulled_by=[])
    for d in UNIT_DIRS:
        state.pulled_by += _links_to(probe, d, unit, real)
    if real.rsplit("/", 1)[-1] != unit:
        state.state, state.evidence = "alias", f"{path} -> {real}"
        return state
    for d, name in CONFIG_DIRS.items():
        links = [p for p in state.pulled_by if p.startswith(d + "/")]
        if links:
            state.state, state.evidence = name, links[0]
            return state
    install = install_section(text or "")
    if any(k in install for k in INSTALL_RULES):
        state.state = "disabled"
    elif "Also" in install:
        state.state = "indirect"
    else:
        state.state = "static"
    state.evidence = f"{real}: " + ("[Install] " + ", ".join(sorted(install))
                                   if install else "no [Install] section")
    return state
