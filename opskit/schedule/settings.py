"""Config section ``schedule:`` of opskit.yaml: Scheduler, playbooks and the evidence pack (opskit schedule / playbook / evidence).

The one schema lives in opskit.core.config, which includes this section;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section  # noqa: F401

SECTION = Section({
})
