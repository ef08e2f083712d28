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


class StateLayout:
    """The one description of what lives where under the state directory.

    Every module that reads or writes state asks this class for its folder,
    so the evidence pack, the retention floor and the writers never disagree
    about a path (docs/configuration.md lists the layout).
    """

    def __init__(self, state_dir: str):
        self.root = state_dir

    def _at(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def audit_log(self) -> str:
        """Default audit log file (``audit.path`` overrides it)."""
        return self._at("audit", "audit.log")

    @property
    def repo(self) -> str:
        """Default local backup repository."""
        return self._at("repo")

    @property
    def drills(self) -> str:
        """Drill reports (``*.json`` + ``*.md``), read by the retention floor."""
        return self._at("drills")

    @property
    def replication(self) -> str:
        """Per-site replication state (``<site>.json``)."""
        return self._at("replication")

    @property
    def policy_runs(self) -> str:
        """Stored policy runs, for drift and evidence."""
        return self._at("policy", "runs")

    @property
    def perms_snapshots(self) -> str:
        """Permission snapshots."""
        return self._at("perms", "snapshots")

    @property
    def perms_reports(self) -> str:
        """Stored permission reports (the evidence pack copies them)."""
        return self._at("perms", "reports")

    @property
    def schedule(self) -> str:
        """Scheduler status, job log, locks and metrics."""
        return self._at("schedule")

    @property
    def accounts(self) -> str:
        """Accounts state: freeze certificates, initial passwords."""
        return self._at("accounts")

    @property
    def freezes(self) -> str:
        """Freeze certificates."""
        return self._at("accounts", "freezes")

    @property
    def initial_passwords(self) -> str:
        """One-time initial passwords, 0600, delivered out of band."""
        return self._at("accounts", "initial-passwords")

    @property
    def incidents(self) -> str:
        """Incident, security-event, business-error and approval registers (0600)."""
        return self._at("incidents")

    @property
    def corrections_key(self) -> str:
        """Default signing key of ``opskit correct``."""
        return self._at("corrections", "id_ed25519")


# How opskit runs itself as a child (scheduler jobs, playbook steps, the
# evidence pack's checks): the same interpreter and installation.
def opskit_command() -> tuple[str, ...]:
    """``(sys.executable, "-m", "opskit")``."""
    import sys
    return (sys.executable, "-m", "opskit")
