"""Config section ``evidence:`` of opskit.yaml: what the evidence pack takes from
the site (docs/evidence.md).

opskit.settings assembles the one schema from this and the other sections;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section

SECTION = Section({
    "not_applicable": MapOf(
        Key(str, None, "Why this rule does not apply at this site (shown in the pack and "
                       "recorded in its audit entry)."),
        "Rules the site declares not applicable: rule id -> reason. A declaration never "
        "hides findings: a rule a source shows not met stays not met. Names starting "
        "with '<' are templates, never used.", default={"<name>": None}),
})
