"""The one opskit configuration schema, assembled one floor above the domains.

Core (opskit.core.config) owns the top-level keys and the loading; each
domain owns its ``settings.py`` section. This module puts them together in
the order configs/opskit.yaml documents them, and is what the CLI, the docs
tests and the test harness hand to ``load_config``.
"""
from __future__ import annotations

from opskit.accounts import settings as accounts
from opskit.archives import settings as archives
from opskit.backup import settings as backup
from opskit.core.config import CORE_SECTION, Config
from opskit.core.config import load_config as _load_config
from opskit.core.schema import Section
from opskit.corrections import settings as corrections
from opskit.evidence import settings as evidence
from opskit.hosts import settings as hosts
from opskit.incidents import settings as incidents
from opskit.perms import settings as perms
from opskit.policy import settings as policy
from opskit.schedule import settings as schedule

SCHEMA = Section({
    **CORE_SECTION.keys,
    "ssh": hosts.SECTION,
    "backup": backup.SECTION,
    "sites": backup.SITES,
    "policy": policy.SECTION,
    "corrections": corrections.SECTION,
    "accounts": accounts.SECTION,
    "perms": perms.SECTION,
    "schedule": schedule.SECTION,
    "incidents": incidents.SECTION,
    "archives": archives.SECTION,
    "evidence": evidence.SECTION,
})


def load_config(explicit: str | None = None) -> Config:
    """``opskit.core.config.load_config`` with the full schema (the CLI's lookup order)."""
    return _load_config(explicit, schema=SCHEMA)


__all__ = ["SCHEMA", "load_config"]
