"""Config section ``corrections:`` of opskit.yaml: Data-correction ledger (opskit correct).

The one schema lives in opskit.core.config, which includes this section;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section  # noqa: F401

SECTION = Section({
    "ledger": Key(str, None, "Ledger location: a SQLite file path, or a postgresql:// URL so a team "
                             "shares one ledger. Default <state_dir>/corrections.sqlite."),
})
