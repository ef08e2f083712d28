"""Config section ``policy:`` of opskit.yaml: Removable-media and network policy checks (opskit policy).

opskit.settings assembles the one schema from this and the other sections;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section, positive  # noqa: F401


SECTION = Section({
    "dir": Key(str, None, "Directory of policy files (*.yaml). Default: policies/ beside this "
                          "config file, else /etc/opskit/policies, else the shipped examples."),
    "host_timeout": Key(float, 60.0, "Seconds one host may take for all its checks before it "
                                     "is reported as 'timeout'.", check=positive),
    "keep_runs": Key(int, 100, "At least this many newest stored 'policy check' runs are kept "
                               "in <state_dir>/policy/runs, whatever their age.", min=1),
    "keep_days": Key(float, 400.0, "Stored runs younger than this many days are kept (the "
                                   "evidence pack's audit window); older ones beyond keep_runs "
                                   "are deleted.", check=positive),
})
