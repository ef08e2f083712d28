"""Config section ``accounts:`` of opskit.yaml: Accounts: roster, provisioning, freezes and access requests (opskit users / opskit access).

The one schema lives in opskit.core.config, which includes this section;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section  # noqa: F401

SECTION = Section({
    "roster": Key(str, None, "The roster of people (see configs/roster.yaml). Default: roster.yaml "
                             "beside this config file, else /etc/opskit/roster.yaml."),
    "roles": Key(str, None, "Roles, posts and separation-of-duties rules (see configs/roles.yaml). "
                            "Default: roles.yaml beside this config file, else /etc/opskit/roles.yaml."),
    # --- provisioning and freezes (opskit users) ---
    # --- access requests (opskit access) ---
})
