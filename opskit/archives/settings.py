"""Config section ``archives:`` of opskit.yaml: which backups are archives (R-AUD-6).

opskit.settings assembles the one schema from this and the other sections;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks). Approvals come from the people in
``incidents.reviewers`` (docs/archives.md).
"""
from opskit.core.schema import Key, Section

SECTION = Section({
    "tags": Key(list, ["archive"], "A snapshot carrying one of these tags is an archive "
                "(R-AUD-6).", item_type=str),
    "paths": Key(list, [], "A snapshot of a path at or under one of these is an archive.",
                 item_type=str),
    "repositories": Key(list, [], "Every snapshot in these repositories (location or "
                        "repository id) is an archive.", item_type=str),
})
