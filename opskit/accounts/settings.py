"""Config section ``accounts:`` of opskit.yaml: Accounts: roster, provisioning, freezes and access requests (opskit users / opskit access).

opskit.settings assembles the one schema from this and the other sections;
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
    "host_timeout": Key(float, 300.0, "Seconds one host may take in 'opskit users plan/apply/"
                                      "freeze' before it is reported as 'timeout'.", min=1),
    "min_uid": Key(int, 1000, "Accounts below this uid are system accounts: 'opskit users' never "
                              "creates, changes or freezes them.", min=1),
    "nologin_shell": Key(str, "/usr/sbin/nologin", "Shell a frozen account gets (R-ACC-6)."),
    "tenure_paths": Key(list, [], "Directories the freeze's tenure report covers beyond /etc, "
                                  "/root, /usr/local and /var/spool (R-ACC-6).", item_type=str),
    # --- access requests (opskit access) ---
    "requesters": Key(list, [], "Person ids who may raise access requests (section heads, "
                                "R-ACC-3). Empty: any active person in the roster.", item_type=str),
    "approvers": Key(list, [], "Person ids who may approve or reject access requests (the "
                               "supervising leaders, R-ACC-3). Empty: nobody can approve.",
                     item_type=str),
    "access_admins": Key(list, [], "Person ids designated to apply approved access requests and "
                                   "unfreezes (R-ACC-1). Empty: active people holding an "
                                   "admin-tier role.", item_type=str),
    "approvals": Key(int, 1, "Distinct approvers an access request needs.", min=1),
    "special_approvals": Key(int, 2, "Distinct approvers a request for a special-tier role needs "
                                     "(mutual review, R-ACC-5); at least 2.", min=2),
    "requests_dir": Key(str, None, "Directory of the access-request store (one JSON file per "
                                   "request). Default <state_dir>/access."),
    "requests_lock_timeout": Key(float, 10.0, "Seconds to wait for the access-request store lock "
                                              "before giving up (exit 3).", min=0),
})
