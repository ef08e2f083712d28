"""Config section ``policy:`` of opskit.yaml: Removable-media and network policy checks (opskit policy).

The one schema lives in opskit.core.config, which includes this section;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section  # noqa: F401

SECTION = Section({
    "dir": Key(str, None, "Directory of policy files (*.yaml). Default: policies/ beside this "
                          "config file, else /etc/opskit/policies, else the shipped examples."),
})
