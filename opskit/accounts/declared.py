"""The declared model as one thing: roster + roles + the grants of applied access requests.

Provisioning (``opskit users``), access requests (``opskit access``) and
permission diffs (``opskit perms``) all read the declared truth through
``load_declared(config)``; the files are found from the config
(``accounts.roster``, ``accounts.roles``; docs/roster.md).
"""
from __future__ import annotations

from .requestfile import applied_grants
from .roles import load_roles
from .roster import Roster, load_roster


def find_model_file(config, key: str, filename: str) -> str:
    """The roles or roster file (``key``, else beside the config, else /etc/opskit): required,
    so a ConfigError (exit 2) when none is found."""
    return config.locate(key, filename, required=True,
                         hint=f"set '{key}' in opskit.yaml; configs/{filename} in the source "
                              "tree is a documented example").path


def find_roles_file(config) -> str:
    """``accounts.roles``, else roles.yaml beside the config, else /etc/opskit/roles.yaml."""
    return find_model_file(config, "accounts.roles", "roles.yaml")


def find_roster_file(config) -> str:
    """``accounts.roster``, else roster.yaml beside the config, else /etc/opskit/roster.yaml."""
    return find_model_file(config, "accounts.roster", "roster.yaml")


def load_declared(config, *, with_grants: bool = True) -> Roster:
    """The roster and role model the config points at (ConfigError, exit 2, if missing),
    with the roles granted by applied access requests merged in."""
    model = load_roles(find_roles_file(config))
    roster = load_roster(find_roster_file(config), model)
    if with_grants:
        roster.grants = applied_grants(config)
    return roster
