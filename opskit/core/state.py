"""Where opskit keeps its state (audit log, local repository, reports)."""
from __future__ import annotations

import os


def default_state_dir() -> str:
    """``/var/lib/opskit`` when root, else ``~/.local/share/opskit`` (XDG_DATA_HOME aware)."""
    if os.geteuid() == 0:
        return "/var/lib/opskit"
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "opskit")


def resolve_state_dir(configured: str | None) -> str:
    """``$OPSKIT_HOME`` first, then the config's ``state_dir``, then the default."""
    env = os.environ.get("OPSKIT_HOME")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return default_state_dir()


def ensure_private_dir(path: str) -> str:
    """Create ``path`` (mode 0700) if missing; state holds secrets and evidence."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path
