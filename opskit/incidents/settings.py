"""Config section ``incidents:`` of opskit.yaml: incidents, security events, business
errors and two-person review (opskit incident / event / error / approve-op).

opskit.settings assembles the one schema from this and the other sections;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).

Defaults are the regulation's clocks (R-INC-1, R-AUD-4, R-AUD-5); a grade the
config leaves out keeps its default deadlines.
"""
from opskit.core.schema import Key, MapOf, Section, defaults, positive  # noqa: F401

GRADES = ("general", "large", "major", "especially-major")

# R-INC-1: to information security within 2 h, major and above also to the superior
# within 1 h; first response within 24 h; analysis and rectification within 72 h
DEFAULT_DEADLINES = {
    grade: {"security_hours": 2.0,
            "superior_hours": 1.0 if grade in ("major", "especially-major") else None,
            "response_hours": 24.0, "rectify_hours": 72.0}
    for grade in GRADES
}

HIGH_RISK_DEFAULT = ["backup forget", "backup prune", "backup key remove", "users apply",
                     "correct apply", "policy"]

_GRADE = Section({
    "security_hours": Key(float, None, "Hours from detection to the report to information "
                                       "security.", check=positive),
    "superior_hours": Key(float, None, "Hours from detection to the report to the superior "
                                       "(unset: no such duty for this grade).", check=positive),
    "response_hours": Key(float, None, "Hours from detection to the first response.",
                          check=positive),
    "rectify_hours": Key(float, None, "Hours from detection to analysis and rectification "
                                      "(close).", check=positive),
})

SECTION = Section({
    "deadlines": MapOf(_GRADE, "Deadlines per incident grade (general, large, major, "
                               "especially-major); unset values keep the regulation's.",
                       default={"<name>": defaults(_GRADE)}),
    "event_record_hours": Key(float, 24.0, "A security event must be recorded within this many "
                                           "hours of happening (R-AUD-4).", check=positive),
    "event_retention_days": Key(int, 183, "Security events, and stored policy runs, younger "
                                          "than this are never pruned (at least 183, six "
                                          "months; R-AUD-4).", min=183),
    "error_report_hours": Key(float, 24.0, "A business error must be reported within this many "
                                           "hours of happening (R-AUD-5).", check=positive),
    "error_rectify_days": Key(float, 7.0, "A business error must be rectified within this many "
                                          "days of happening (R-AUD-5).", check=positive),
    "supervisors": MapOf(Key(str, None, "OpenSSH ed25519 public key line of this business "
                                        "supervisor."),
                         "Business supervisors who review business errors: name -> public key.",
                         default={"<name>": None}),
    "reviewers": MapOf(Key(str, None, "OpenSSH ed25519 public key line of this reviewer."),
                       "Second persons who approve high-risk operations: name -> public key "
                       "(R-SEC-2).", default={"<name>": None}),
    "high_risk_operations": Key(list, HIGH_RISK_DEFAULT, "Operations that need a second "
                                "person's signed approval before they run (R-SEC-2).",
                                item_type=str),
    "approvals_required": Key(int, 1, "Distinct reviewers (other than the operator) a high-risk "
                                      "operation needs.", min=1),
    "approval_valid_hours": Key(float, 24.0, "Hours an approval of a high-risk operation stays "
                                             "usable.", check=positive),
    "key_file": Key(str, None, "Your Ed25519 signing key for reviews and approvals. --key wins. "
                               "Default <state_dir>/corrections/id_ed25519 (the same personal "
                               "key as 'opskit correct')."),
})


def grade_from(text: str, grades: tuple, aliases: dict, what: str) -> str:
    """A grade given in English or Chinese; UsageError naming the accepted ones."""
    from opskit.core.errors import UsageError
    grade = aliases.get(text.strip(), text.strip().lower())
    if grade not in grades:
        raise UsageError(f"unknown {what} grade {text!r} (expected {', '.join(grades)} or "
                         f"{'/'.join(k for k in aliases if not k.isascii())})")
    return grade


def deadlines_for(config, grade: str) -> dict:
    """The deadlines (hours) of ``grade``: the config's values over the defaults."""
    out = dict(DEFAULT_DEADLINES[grade])
    given = (config.get("incidents.deadlines") or {}).get(grade) or {}
    out.update({k: v for k, v in given.items() if v is not None})
    return out
