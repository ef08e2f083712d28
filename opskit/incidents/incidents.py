"""The incident register (R-INC-1): open, update, report, close; deadlines per grade.

Every change is one record in the hash-chained register
``<state_dir>/incidents/incidents.jsonl`` (``chain.Register``); an incident's
state is the replay of its records. Each record keeps two times: ``at``, when
the step happened as stated (``--at``, default now; never in the future) and
``time``, when it was written. The clock starts at the stated detection time
and the deadlines (hours, from the config at open time) are frozen into the
open record, so changing the config later does not rewrite past verdicts.

Deadlines (clocks.Deadline), all from detection:

* ``report-security``  report to information security (all grades)
* ``report-superior``  report to the superior (grades with superior_hours: major+)
* ``first-response``   the first ``update`` (measures taken)
* ``rectification``    ``close`` with analysis, rectification and effect
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import shutil
import socket
from dataclasses import dataclass, field

from opskit.core.errors import UsageError
from opskit.core.state import StateLayout

from . import clocks
from .chain import Register, register_at
from .clocks import refused
from .settings import DEFAULT_DEADLINES, GRADES, grade_from

RULE = "R-INC-1"
ALIASES = {"一般": "general", "较大": "large", "重大": "major", "特别重大": "especially-major",
           "especially_major": "especially-major", "especially major": "especially-major"}
TARGETS = ("security", "superior")
_ID = re.compile(r"^INC-(\d+)$")


def grade_of(text: str) -> str:
    """A grade name (English or Chinese); UsageError when unknown."""
    return grade_from(text, GRADES, ALIASES, "incident")


def register(state_dir: str) -> Register:
    """The incident register of this state directory."""
    return register_at(state_dir, "incidents.jsonl")


@dataclass
class Incident:
    """An incident as replayed from its records."""

    id: str
    grade: str
    type: str
    place: str
    scope: str
    description: str
    detected_at: _dt.datetime
    hours: dict
    opened_by: str
    automatic: bool = False
    evidence: dict | None = None
    updates: list[dict] = field(default_factory=list)
    reports: list[dict] = field(default_factory=list)
    closure: dict | None = None

    @property
    def state(self) -> str:
        return "closed" if self.closure else "open"

    def reported(self, to: str) -> _dt.datetime | None:
        times = [clocks.parse_when(r["at"]) for r in self.reports if r["to"] == to]
        return min(times) if times else None

    def deadlines(self) -> list[clocks.Deadline]:
        """The clocks of this incident (see the module docstring)."""
        start, h = self.detected_at, self.hours
        first = clocks.parse_when(self.updates[0]["at"]) if self.updates else None
        closed = clocks.parse_when(self.closure["at"]) if self.closure else None
        out = [clocks.Deadline("report-security", RULE, start + clocks.hours(h["security_hours"]),
                               self.reported("security"))]
        if h.get("superior_hours"):
            out.append(clocks.Deadline("report-superior", RULE,
                                       start + clocks.hours(h["superior_hours"]),
                                       self.reported("superior")))
        out.append(clocks.Deadline("first-response", RULE,
                                   start + clocks.hours(h["response_hours"]), first or closed))
        out.append(clocks.Deadline("rectification", RULE,
                                   start + clocks.hours(h["rectify_hours"]), closed))
        return out

    def row(self, now: _dt.datetime) -> dict:
        """One line for ``incident list``."""
        dls = self.deadlines()
        missed = [d.name for d in dls if d.state(now) == clocks.MISSED]
        pending = [d for d in dls if d.state(now) == clocks.OPEN]
        nxt = min(pending, key=lambda d: d.due) if pending else None
        return {"id": self.id, "state": self.state, "grade": self.grade, "type": self.type,
                "place": self.place, "detected_at": clocks.iso(self.detected_at),
                "next_deadline": f"{nxt.name} {clocks.iso(nxt.due)}" if nxt else None,
                "missed": missed, "automatic": self.automatic}

    def to_dict(self, now: _dt.datetime) -> dict:
        """The full record for ``incident show``."""
        return {**self.row(now), "scope": self.scope, "description": self.description,
                "opened_by": self.opened_by, "evidence": self.evidence,
                "updates": self.updates, "reports": self.reports, "closure": self.closure,
                "deadlines": [d.row(now) for d in self.deadlines()]}


def replay(records: list[dict]) -> dict[str, Incident]:
    """Incidents by id, from the register's records in order."""
    out: dict[str, Incident] = {}
    for r in records:
        step, body = r.get("step"), r.get("body") or {}
        if step == "open":
            out[r["incident"]] = Incident(
                r["incident"], body["grade"], body["type"], body["place"], body["scope"],
                body["description"], clocks.parse_when(r["at"]), body["hours"], r["actor"],
                bool(body.get("automatic")), body.get("evidence"))
            continue
        inc = out.get(r.get("incident"))
        if inc is None:
            continue
        entry = {"at": r["at"], "by": r["actor"], "recorded": r["time"], **body}
        if step == "update":
            inc.updates.append(entry)
        elif step == "report":
            inc.reports.append(entry)
        elif step == "close":
            inc.closure = entry
    return out


def _next_id(records: list[dict]) -> str:
    n = max((int(m.group(1)) for r in records if r.get("step") == "open"
             for m in [_ID.match(r.get("incident", ""))] if m), default=0)
    return f"INC-{n + 1:04d}"


def _get(records: list[dict], incident_id: str) -> Incident:
    inc = replay(records).get(incident_id.strip().upper())
    if inc is None:
        raise UsageError(f"no incident {incident_id!r} in the register")
    return inc


def load(state_dir: str) -> dict[str, Incident]:
    """Every incident in the register."""
    return replay(list(register(state_dir).records()))


def get(state_dir: str, incident_id: str) -> Incident:
    """One incident (UsageError, exit 2, if unknown)."""
    return _get(list(register(state_dir).records()), incident_id)


def _record(step: str, incident: str, actor: str, at: _dt.datetime, body: dict) -> dict:
    return {"step": step, "incident": incident, "actor": actor, "at": clocks.iso(at),
            "body": body}


def open_incident(state_dir: str, *, actor: str, grade: str, type: str, place: str, scope: str,
                  description: str, detected_at: _dt.datetime, now: _dt.datetime,
                  hours: dict | None = None, automatic: bool = False,
                  evidence: dict | None = None) -> Incident:
    """Record a new incident; the clock starts at ``detected_at``."""
    grade = grade_of(grade)
    clocks.not_future(detected_at, now, "detection time")
    for name, value in (("type", type), ("place", place), ("scope", scope),
                        ("description", description)):
        if not (value or "").strip():
            raise UsageError(f"an incident needs a {name} (R-INC-1)")
    body = {"grade": grade, "type": type, "place": place, "scope": scope,
            "description": description, "hours": hours or DEFAULT_DEADLINES[grade],
            "automatic": automatic, "evidence": evidence}
    made = register(state_dir).append(
        lambda records: _record("open", _next_id(records), actor, detected_at, body))
    return get(state_dir, made["incident"])


def _step(state_dir: str, incident_id: str, step: str, actor: str, at: _dt.datetime,
          now: _dt.datetime, body: dict, check=None) -> Incident:
    clocks.not_future(at, now, "--at")
    incident_id = incident_id.strip().upper()

    def decide(records: list[dict]) -> dict:
        inc = _get(records, incident_id)
        if inc.closure:
            raise refused(f"{inc.id} is closed; open a new incident for new facts", rule=RULE)
        if at < inc.detected_at:
            raise UsageError(f"{step} at {clocks.iso(at)} is before the detection of {inc.id} "
                             f"({clocks.iso(inc.detected_at)})")
        if check:
            check(inc)
        return _record(step, inc.id, actor, at, body)

    register(state_dir).append(decide)
    return get(state_dir, incident_id)


def update(state_dir: str, incident_id: str, *, actor: str, measures: str, findings: str,
           at: _dt.datetime, now: _dt.datetime) -> Incident:
    """Record measures taken and findings; the first update is the first response."""
    if not (measures or findings):
        raise UsageError("an update needs --measures and/or --findings")
    return _step(state_dir, incident_id, "update", actor, at, now,
                 {"measures": measures, "findings": findings})


def report(state_dir: str, incident_id: str, *, actor: str, to: str, recipient: str,
           at: _dt.datetime, now: _dt.datetime) -> Incident:
    """Record that ``recipient`` (information security, or the superior) was told."""
    if to not in TARGETS:
        raise UsageError(f"--to must be one of {', '.join(TARGETS)}")
    if not recipient.strip():
        raise UsageError("a report names who was told (--recipient)")
    return _step(state_dir, incident_id, "report", actor, at, now,
                 {"to": to, "recipient": recipient})


def close(state_dir: str, incident_id: str, *, actor: str, analysis: str, rectification: str,
          effect: str, at: _dt.datetime, now: _dt.datetime) -> Incident:
    """Close with analysis, rectification and effect; refused before the reports are made."""
    for name, value in (("analysis", analysis), ("rectification", rectification),
                        ("effect", effect)):
        if not (value or "").strip():
            raise UsageError(f"closing needs --{name} (R-INC-1)")

    def check(inc: Incident) -> None:
        for d in inc.deadlines():
            if d.name.startswith("report-") and d.done is None:
                raise refused(f"{inc.id} cannot be closed before its {d.name} is recorded "
                              f"('opskit incident report {inc.id} --to "
                              f"{d.name.split('-', 1)[1]}')", rule=RULE)

    return _step(state_dir, incident_id, "close", actor, at, now,
                 {"analysis": analysis, "rectification": rectification, "effect": effect},
                 check)


def overdue(incidents: list[Incident], now: _dt.datetime) -> list[dict]:
    """Every missed deadline: one row per incident and deadline."""
    out = []
    for inc in incidents:
        for d in inc.deadlines():
            if d.state(now) == clocks.MISSED:
                out.append({"id": inc.id, "grade": inc.grade, "type": inc.type, **d.row(now)})
    return out


def _attach(state_dir: str, path: str) -> dict:
    """Copy ``path`` into the register's attachments (0600) and name its SHA-256."""
    folder = os.path.join(StateLayout(state_dir).incidents, "attachments")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    with open(path, "rb") as fh:
        data = fh.read()
    digest = hashlib.sha256(data).hexdigest()
    copy = os.path.join(folder, f"{digest[:16]}-{os.path.basename(path)}")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    shutil.copystat(path, copy)
    os.chmod(copy, 0o600)
    return {"source": os.path.abspath(path), "copy": copy, "sha256": digest}


def open_automatic(state_dir: str, kind: str, detail: str, evidence_path: str | None = None, *,
                   grade: str = "general", now: _dt.datetime | None = None,
                   hours: dict | None = None) -> Incident:
    """Open an incident for something opskit itself detected (a failed drill, a tampered
    log, ...): type ``kind``, place this host, ``detail`` as scope and description, and
    ``evidence_path`` (e.g. the drill report) copied in and hashed. Other domains call
    this; it never raises for a missing evidence file (the incident matters more)."""
    now = now or clocks.utcnow()
    evidence = None
    if evidence_path:
        try:
            evidence = _attach(state_dir, evidence_path)
        except OSError as exc:
            evidence = {"source": os.path.abspath(evidence_path),
                        "error": f"not attached: {exc.strerror}"}
    return open_incident(state_dir, actor="opskit (automatic)", grade=grade, type=kind,
                         place=socket.gethostname(), scope=detail, description=detail,
                         detected_at=now, now=now, hours=hours, automatic=True,
                         evidence=evidence)
