"""Run a real tool in a private mount namespace with scenario directories
bind-mounted over the system's (``unshare -m``): the tool reads the
scenario's /etc/sysctl.d, /etc/modprobe.d, ... and nothing outside the
namespace changes. Directories missing on the machine (/run/sysctl.d,
/usr/local/lib/sysctl.d) are created on a tmpfs inside the namespace.

A missing ``unshare`` FAILS the test with the reason (never a silent skip).
"""
from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest


def tool(*candidates: str) -> str:
    """The first of ``candidates`` that exists (a path or a name on PATH)."""
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"none of {', '.join(candidates)} found (scripts/test installs them)",
                pytrace=False)


def run_with_binds(binds: dict[str, str], argv: list[str], *, tmpfs: tuple[str, ...] = (),
                   check: bool = True) -> subprocess.CompletedProcess:
    """Run ``argv`` with each ``binds`` source mounted over its target (a file
    or a directory); ``tmpfs`` directories get an empty tmpfs first so that
    missing targets can be created under them."""
    unshare = tool("unshare")
    script = ["set -e"]
    script += [f"mount -t tmpfs opskit-t {shlex.quote(d)}" for d in tmpfs]
    for source, target in ((s, t) for t, s in binds.items()):
        script.append(f"[ -e {shlex.quote(target)} ] || mkdir -p {shlex.quote(target)}")
        script.append(f"mount --bind {shlex.quote(source)} {shlex.quote(target)}")
    script.append("exec " + shlex.join(argv))
    proc = subprocess.run([unshare, "-m", "--propagation", "private", "sh", "-c",
                           "\n".join(script)], capture_output=True, text=True, timeout=60,
                          check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} in a mount namespace failed ({proc.returncode}): "
                    f"{proc.stderr.strip()}", pytrace=False)
    return proc


def build_tree(root, text: str) -> list[str]:
    """Write a scenario's files under ``root``: '=== /path' starts a file,
    '=== /path -> target' makes a symlink; '#' lines before the first '==='
    are the header. Returns the paths written."""
    import os
    written, current, lines = [], None, []

    def flush():
        if current is not None:
            real = os.path.join(root, current.lstrip("/"))
            os.makedirs(os.path.dirname(real), exist_ok=True)
            with open(real, "w") as fh:
                fh.write("".join(lines))
            written.append(current)

    for raw in text.splitlines(keepends=True):
        if raw.startswith("=== "):
            flush()
            current, lines = None, []
            spec = raw[4:].strip()
            path, arrow, target = spec.partition(" -> ")
            if arrow:
                real = os.path.join(root, path.lstrip("/"))
                os.makedirs(os.path.dirname(real), exist_ok=True)
                os.symlink(target.strip(), real)
                written.append(path)
            else:
                current = path
        elif current is not None:
            lines.append(raw)
    flush()
    return written


def header(text: str) -> dict[str, str]:
    """'# key: value' lines at the top of a scenario."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(":")
        out[key.strip()] = value.strip()
    return out


def scenario_tree(root, text: str, dirs: tuple[str, ...]):
    """Build a scenario under ``root`` (a pathlib.Path) with every directory of
    ``dirs`` present (empty when the scenario has nothing there), so each
    can be bind-mounted over the machine's."""
    build_tree(root, text)
    for d in dirs:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return root


def check_corpus(folder, expect_values: tuple[str, ...], minimum: int = 15) -> None:
    """A corpus has at least ``minimum`` scenarios, each with a valid ``expect:``."""
    paths = sorted(folder.glob("*.txt"))
    assert len(paths) >= minimum, f"{folder}: {len(paths)} scenarios, want {minimum}"
    bad = [p.name for p in paths if header(p.read_text()).get("expect") not in expect_values]
    assert not bad, f"expect: must be one of {expect_values} in {bad}"
