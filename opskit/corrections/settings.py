"""Config section ``corrections:`` of opskit.yaml: Data-correction ledger (opskit correct).

opskit.settings assembles the one schema from this and the other sections;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).

Who may approve and execute, which databases may be corrected and the risk
rules live in a separate file (``rules_file``, schema in
``opskit.corrections.rulesfile``): it names people and their public keys, is
owned by root and reviewed like code, and an auditor verifies an exported
ledger offline against their own copy of it.
"""
from opskit.core.schema import Key, MapOf, Section  # noqa: F401

SECTION = Section({
    "ledger": Key(str, None, "Ledger location: a SQLite file path, or a postgresql:// URL so a team "
                             "shares one ledger. Default <state_dir>/corrections.sqlite."),
    "rules_file": Key(str, None, "YAML file declaring targets (databases), operators (public keys and "
                                 "roles) and risk rules (see docs/corrections.md). Default: "
                                 "corrections.yaml beside this config file, else "
                                 "/etc/opskit/corrections.yaml."),
    "key_file": Key(str, None, "Your Ed25519 signing key (written by 'opskit correct keygen', or an "
                               "OpenSSH ed25519 key). $OPSKIT_CORRECTIONS_KEY and --key win. "
                               "Default <state_dir>/corrections/id_ed25519."),
    "lock_timeout": Key(float, 10.0, "Seconds to wait for a row or ledger lock before giving up "
                                     "(exit 3).", check=lambda v: None if v > 0 else
                        f"expected a positive number, got {v!r}"),
})
