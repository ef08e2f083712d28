"""Config section ``ssh:`` of opskit.yaml: how opskit reaches hosts over SSH.

opskit.settings assembles the one schema from this and every other domain's
section; every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks). The top-level ``inventory`` key stays
in core's section (opskit.core.config.CORE_SECTION) with the other top-level keys.
"""
from opskit.core.schema import Key, Section, positive

SECTION = Section({
    "known_hosts": Key(str, None, "known_hosts file used to verify host keys. Default ~/.ssh/known_hosts."),
    "host_key_policy": Key(str, "reject", "What to do with an unknown host key: 'reject' (default) or "
                                          "'accept-new' (record it, like ssh's accept-new).",
                           choices=("reject", "accept-new"), nullable=False),
    # resource settings are bounded (#28 item 2)
    "connect_timeout": Key(float, 10.0, "Seconds to wait for an SSH connection.", check=positive,
                           max=3600),
    "command_timeout": Key(float, 120.0, "Default seconds a remote command may run.", check=positive,
                           max=86400),
    "concurrency": Key(int, 16, "Hosts contacted at once when fanning out.", min=1, max=256),
})
