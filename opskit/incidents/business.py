"""Business-error reports (R-AUD-5): graded 一般/较大/重大, reported within 24 h,
reviewed by the business supervisor (a signed approval), rectified within 7 days
with measures, owner, time and effect, linked to the data corrections that fixed it.

Records live in the hash-chained register ``<state_dir>/incidents/errors.jsonl``::

    report -> reported --review (a supervisor's signature)--> reviewed
           --rectify (measures, owner, effect, corrections CR-...)--> rectified --close--> closed

Refusals (Refused, exit 2, R-AUD-5): a review signed by a key no supervisor is
registered with, by the reporter themself (self-approval), or by a key that
already reviewed this error (the same key twice); closing before both review
and rectification.

Clocks (from when the error happened, ``occurred``): ``reported`` within
incidents.error_report_hours, ``rectified`` within incidents.error_rectify_days.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field

from opskit.core.errors import Refused, UsageError
from opskit.core.signing import Signer

from . import clocks, signatures
from .chain import Register, register_at
from .clocks import refused
from .settings import grade_from

RULE = "R-AUD-5"
GRADES = ("general", "larger", "major")
ALIASES = {"一般": "general", "较大": "larger", "重大": "major"}
_CR = re.compile(r"^[A-Za-z]+-\d+$")


def grade_of(text: str) -> str:
    """general/larger/major, or 一般/较大/重大."""
    return grade_from(text, GRADES, ALIASES, "business-error")


def register(state_dir: str) -> Register:
    """The business-error register of this state directory."""
    return register_at(state_dir, "errors.jsonl")


@dataclass
class BusinessError:
    id: str
    grade: str
    description: str
    occurred: _dt.datetime
    reported: _dt.datetime
    reporter: str
    report_hours: float
    rectify_days: float
    reviews: list[dict] = field(default_factory=list)
    rectification: dict | None = None
    closed: dict | None = None

    @property
    def state(self) -> str:
        if self.closed:
            return "closed"
        if self.rectification:
            return "rectified"
        return "reviewed" if self.reviews else "reported"

    def review_payload(self) -> dict:
        """What a supervisor signs: the error as reported."""
        return {"approve": "business-error-review", "error": self.id, "grade": self.grade,
                "description": self.description, "occurred": clocks.iso(self.occurred),
                "reporter": self.reporter}

    def deadlines(self) -> list[clocks.Deadline]:
        done = clocks.parse_when(self.rectification["at"]) if self.rectification else None
        return [clocks.Deadline("reported", RULE, self.occurred + clocks.hours(self.report_hours),
                                self.reported),
                clocks.Deadline("rectified", RULE,
                                self.occurred + _dt.timedelta(days=self.rectify_days), done)]

    def row(self, now: _dt.datetime) -> dict:
        return {"id": self.id, "state": self.state, "grade": self.grade,
                "occurred": clocks.iso(self.occurred), "reporter": self.reporter,
                "reviewed_by": [r["by"] for r in self.reviews],
                "corrections": (self.rectification or {}).get("corrections", []),
                "missed": [d.name for d in self.deadlines() if d.state(now) == clocks.MISSED]}

    def to_dict(self, now: _dt.datetime) -> dict:
        return {**self.row(now), "description": self.description,
                "reported": clocks.iso(self.reported), "reviews": self.reviews,
                "rectification": self.rectification, "closed": self.closed,
                "deadlines": [d.row(now) for d in self.deadlines()]}


def replay(records: list[dict]) -> dict[str, BusinessError]:
    out: dict[str, BusinessError] = {}
    for r in records:
        step, err = r.get("step"), out.get(r.get("error"))
        if step == "report":
            out[r["error"]] = BusinessError(
                r["error"], r["grade"], r["description"], clocks.parse_when(r["occurred"]),
                clocks.parse_when(r["time"]), r["actor"], r["report_hours"], r["rectify_days"])
        elif err is None:
            continue
        elif step == "review":
            err.reviews.append({"by": r["actor"], "at": r["time"], "comment": r["comment"],
                                "signature": r["signature"]})
        elif step == "rectify":
            err.rectification = {k: r[k] for k in ("at", "measures", "owner", "effect",
                                                   "corrections")} | {"by": r["actor"]}
        elif step == "close":
            err.closed = {"by": r["actor"], "at": r["time"]}
    return out


def load(state_dir: str) -> dict[str, BusinessError]:
    return replay(list(register(state_dir).records()))


def _get(records: list[dict], error_id: str) -> BusinessError:
    err = replay(records).get(error_id.strip().upper())
    if err is None:
        raise UsageError(f"no business error {error_id!r} in the register")
    return err


def get(state_dir: str, error_id: str) -> BusinessError:
    return _get(list(register(state_dir).records()), error_id)


def report(state_dir: str, *, actor: str, grade: str, description: str,
           occurred: _dt.datetime, now: _dt.datetime, report_hours: float = 24.0,
           rectify_days: float = 7.0) -> BusinessError:
    """Report a business error; the clocks run from ``occurred``."""
    grade = grade_of(grade)
    if not description.strip():
        raise UsageError("a business error report needs a description")
    clocks.not_future(occurred, now, "--occurred-at")

    def decide(records: list[dict]) -> dict:
        n = sum(1 for r in records if r.get("step") == "report")
        return {"time": clocks.iso(now), "step": "report", "error": f"ERR-{n + 1:04d}",
                "actor": actor, "grade": grade, "description": description,
                "occurred": clocks.iso(occurred), "report_hours": report_hours,
                "rectify_days": rectify_days}

    return get(state_dir, register(state_dir).append(decide)["error"])


def review(state_dir: str, error_id: str, *, signer: Signer, supervisors: dict,
           comment: str, now: _dt.datetime) -> BusinessError:
    """The supervisor's review: a signature over the report by a registered
    supervisor who is not the reporter and has not reviewed it already."""
    keys = signatures.registered_keys(supervisors, "incidents.supervisors")

    def decide(records: list[dict]) -> dict:
        err = _get(records, error_id)
        if err.closed:
            raise refused(f"{err.id} is closed", rule=RULE)
        payload = err.review_payload()
        block = signatures.sign(signer, payload)
        name = signatures.signer_name(block, payload, keys, RULE, "business supervisor "
                                      "(incidents.supervisors)")
        if name == err.reporter:
            raise refused(f"{name} reported {err.id} and may not review it (self-approval)",
                          rule=RULE)
        if any(r["signature"]["key"] == block["key"] for r in err.reviews):
            raise refused(f"key {block['fingerprint']} ({name}) already reviewed {err.id}: the "
                          "same key twice", rule=RULE)
        return {"time": clocks.iso(now), "step": "review", "error": err.id, "actor": name,
                "comment": comment, "signature": block}

    register(state_dir).append(decide)
    return get(state_dir, error_id)


def valid_reviews(err: BusinessError, supervisors: dict) -> list[str]:
    """Reviewers whose signature verifies now against a registered supervisor key."""
    keys = signatures.registered_keys(supervisors, "incidents.supervisors")
    out = []
    for r in err.reviews:
        try:
            name = signatures.signer_name(r["signature"], err.review_payload(), keys, RULE, "")
        except Refused:
            continue
        if name != err.reporter and name not in out:
            out.append(name)
    return out


def rectify(state_dir: str, error_id: str, *, actor: str, measures: str, owner: str,
            effect: str, corrections: list[str], at: _dt.datetime,
            now: _dt.datetime) -> BusinessError:
    """The rectification report: measures, owner, time and effect, and the ids of the
    correction requests (opskit correct) that fixed the data."""
    for name, value in (("measures", measures), ("owner", owner), ("effect", effect)):
        if not value.strip():
            raise UsageError(f"a rectification report needs --{name} (R-AUD-5)")
    bad = [c for c in corrections if not _CR.match(c)]
    if bad:
        raise UsageError(f"not a correction request id: {', '.join(bad)} (e.g. CR-12)")
    clocks.not_future(at, now, "--at")

    def decide(records: list[dict]) -> dict:
        err = _get(records, error_id)
        if err.closed or err.rectification:
            raise refused(f"{err.id} is already {err.state}", rule=RULE)
        return {"time": clocks.iso(now), "step": "rectify", "error": err.id, "actor": actor,
                "at": clocks.iso(at), "measures": measures, "owner": owner, "effect": effect,
                "corrections": [c.upper() for c in corrections]}

    register(state_dir).append(decide)
    return get(state_dir, error_id)


def close(state_dir: str, error_id: str, *, actor: str, supervisors: dict,
          now: _dt.datetime) -> BusinessError:
    """Close: refused until a valid supervisor review and the rectification exist."""
    def decide(records: list[dict]) -> dict:
        err = _get(records, error_id)
        if err.closed:
            raise refused(f"{err.id} is already closed", rule=RULE)
        if not valid_reviews(err, supervisors):
            raise refused(f"{err.id} has no valid supervisor review yet", rule=RULE,
                          hint=f"opskit error review {err.id} --key SUPERVISOR_KEY")
        if not err.rectification:
            raise refused(f"{err.id} has no rectification report yet", rule=RULE,
                          hint=f"opskit error rectify {err.id} --measures ... --owner ... "
                               "--effect ...")
        return {"time": clocks.iso(now), "step": "close", "error": err.id, "actor": actor}

    register(state_dir).append(decide)
    return get(state_dir, error_id)
