"""The life of one correction request, as a state machine over ledger entries.

::

    request -> pending --approve*--> approved --apply-started--> executing --applied--> applied
                  |                          ^                       |--apply-failed--> failed
                  |                          \\----apply-aborted-------/ (transient error, retry)
                  |--reject--> rejected
                  \\--withdraw (requester, pending or approved)--> withdrawn

A request left ``executing`` by a crash between the claim and the outcome is
settled by a later ``apply``: its outcome entry carries ``recovered: true``
and may be signed by any eligible executor, not only the one who claimed.

``step`` is the one place the role-independent rules live; it runs both
when an entry is about to be written (so a refused step is never stored) and
when ``verify`` replays the ledger (so an entry that breaks them is named
even if its signature is good):

* nobody approves or rejects their own request, nobody signs twice (R-DAT-2);
* level sign-offs come in the order the request recorded, e.g. clerk ->
  section head -> leader (R-DAT-3); an audit supervisor sign-off when the
  request needs one (R-DAT-2);
* only an approved request is claimed for execution, only once; the executor
  is not the requester (and not an approver unless the rules allow it);
* only the claiming executor records the outcome, except a recovery
  (``body.recovered``) of an interrupted apply, which any eligible executor
  records;
* only the requester withdraws a request, and only before it is claimed;
* ``apply-aborted`` (a transient error rolled the apply back: lock timeout,
  lost connection) is recorded by the claiming executor and makes the
  request approved again, for a retry.

Role checks (is this key an approver at all?) need the rules file and are
made in ``actions.py`` at the time of the action.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ledger import Refused
from .rulesfile import AUDITOR, LEVELS, Requirement

PENDING, APPROVED, REJECTED, EXECUTING, APPLIED, FAILED, WITHDRAWN = (
    "pending", "approved", "rejected", "executing", "applied", "failed", "withdrawn")
FINAL = (APPLIED, FAILED, REJECTED, WITHDRAWN)


@dataclass
class RequestState:
    id: str
    state: str = PENDING
    requester: str = ""
    requested_at: str = ""
    seq: int = 0
    target: str = ""
    table: str = ""
    operation: str = ""
    sql: str = ""
    params: dict = field(default_factory=dict)
    reason: str = ""
    ticket: str = ""
    row_count: int = 0
    before: list = field(default_factory=list)
    before_digest: str = ""
    effects: list = field(default_factory=list)
    preview: dict | None = None        # old -> new of what it writes, computed at request (preview.py)
    triggers_on: list = field(default_factory=list)   # touched tables with triggers: effects at apply
    requirement: Requirement = field(default_factory=Requirement)
    executor_may_approve: bool = False
    approvals: list[dict] = field(default_factory=list)      # {actor, level, comment, seq, time}
    auditor: dict | None = None
    rejection: dict | None = None
    withdrawal: dict | None = None
    executor: str | None = None
    claimed_seq: int | None = None
    outcome: dict | None = None
    aborted: list[dict] = field(default_factory=list)         # apply attempts undone by transient errors
    history: list[dict] = field(default_factory=list)        # every entry, for show

    # --- what is still needed --------------------------------------------------------
    def level_approvals(self) -> list[dict]:
        return [a for a in self.approvals if a["level"] != AUDITOR]

    def next_level(self) -> str | None:
        """The level the next approval must carry, or None when any approver level will do."""
        done = len(self.level_approvals())
        levels = self.requirement.levels
        return levels[done] if done < len(levels) else None

    def approvals_missing(self) -> int:
        return max(0, self.requirement.approvals - len(self.level_approvals()))

    def auditor_missing(self) -> bool:
        return self.requirement.auditor and self.auditor is None

    def is_fully_approved(self) -> bool:
        return self.approvals_missing() == 0 and not self.auditor_missing()

    def signers(self) -> set[str]:
        out = {a["actor"] for a in self.approvals}
        if self.auditor:
            out.add(self.auditor["actor"])
        return out

    def waiting_for(self) -> str:
        if self.state != PENDING:
            return "-"
        parts = []
        nxt = self.next_level()
        if self.approvals_missing():
            parts.append(f"{self.approvals_missing()} approval(s)" + (f", next level {nxt}" if nxt else ""))
        if self.auditor_missing():
            parts.append("audit supervisor")
        return "; ".join(parts) or "-"


def check_executor(state: RequestState, actor: str) -> None:
    """The executor is not the requester, nor an approver unless the request allows it."""
    rid = state.id
    if actor == state.requester:
        raise Refused(f"{actor} requested {rid} and may not apply it: a designated maintainer "
                      "who is not the requester applies (R-DAT-2, R-ACC-2)")
    if actor in state.signers() and not state.executor_may_approve:
        raise Refused(f"{actor} approved {rid} and may not also apply it (separation of "
                      "duties, R-ACC-2)")


def fold(entries: list[dict]) -> RequestState:
    """Replay one request's entries (in seq order) into its state; Refused on a broken rule."""
    state: RequestState | None = None
    for entry in entries:
        state = step(state, entry)
    if state is None:
        raise Refused("no such request")
    return state


def step(state: RequestState | None, entry: dict) -> RequestState:
    """Apply one entry to a request's state, enforcing the rules in the module doc."""
    kind, actor, body = entry["kind"], entry["actor"], entry.get("body") or {}
    seq, time = entry.get("seq", 0), entry.get("time", "")
    rid = entry["request"]
    if kind == "request":
        if state is not None:
            raise Refused(f"{rid} already exists")
        if rid != f"CR-{seq}":
            raise Refused(f"request id {rid} does not match its entry seq {seq}")
        st = RequestState(id=rid, requester=actor, requested_at=time, seq=seq)
        try:
            st.target, st.table, st.operation = body["target"], body["table"], body["operation"]
            st.sql, st.params = body["sql"], dict(body.get("params") or {})
            st.reason, st.ticket = body.get("reason", ""), body.get("ticket", "")
            st.row_count = int(body["row_count"])
            st.before, st.before_digest = list(body.get("before") or []), body["before_sha256"]
            st.effects = list(body.get("effects") or [])     # FK cascades (effects.py)
            st.preview = body.get("preview") if isinstance(body.get("preview"), dict) else None
            st.triggers_on = list(body.get("triggers_on") or [])
            st.requirement = Requirement.from_dict(body["requirement"])
            st.executor_may_approve = bool(body["requirement"].get("executor_may_approve"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Refused(f"request entry is missing or has a bad field ({exc})") from None
        st.history.append(entry)
        return st
    if state is None:
        raise Refused(f"{kind} for {rid}, which was never requested")
    if kind in ("approve", "reject"):
        verb = "approve" if kind == "approve" else "reject"
        if actor == state.requester:
            raise Refused(f"{actor} requested {rid} and may not {verb} it: a correction is "
                          "approved by someone else (R-DAT-2)")
        if state.state != PENDING:
            raise Refused(f"{rid} is {state.state}; only a pending request can be {verb}d")
        if actor in state.signers():
            raise Refused(f"{actor} has already signed {rid}: every sign-off is by a different "
                          "person (R-DAT-3)")
        if kind == "reject":
            state.rejection = {"actor": actor, "comment": body.get("comment", ""), "seq": seq,
                               "time": time}
            state.state = REJECTED
        else:
            level = body.get("level")
            sign = {"actor": actor, "level": level, "comment": body.get("comment", ""),
                    "seq": seq, "time": time}
            if level == AUDITOR:
                if not state.requirement.auditor:
                    raise Refused(f"{rid} needs no audit supervisor sign-off")
                state.auditor = sign
            elif level in LEVELS:
                nxt = state.next_level()
                if nxt is not None and level != nxt:
                    raise Refused(f"{rid} needs the {nxt} level next, not {level} (levels in order: "
                                  f"{' -> '.join(state.requirement.levels)}, R-DAT-3)")
                if not state.approvals_missing():
                    raise Refused(f"{rid} has all the approvals it needs")
                state.approvals.append(sign)
            else:
                raise Refused(f"unknown sign-off level {level!r}")
            if state.is_fully_approved():
                state.state = APPROVED
    elif kind == "apply-started":
        if state.state == EXECUTING:
            raise Refused(f"{rid} is already being applied by {state.executor} (entry seq "
                          f"{state.claimed_seq}); exactly one executor applies a request")
        if state.state == APPLIED:
            raise Refused(f"{rid} was already applied (R-DAT-1: a correction runs once)")
        if state.state != APPROVED:
            raise Refused(f"{rid} is {state.state}, not approved: {state.waiting_for()} "
                          "still needed (R-DAT-2)" if state.state == PENDING else
                          f"{rid} is {state.state}; only an approved request can be applied")
        check_executor(state, actor)
        state.state, state.executor, state.claimed_seq = EXECUTING, actor, seq
    elif kind in ("applied", "apply-failed"):
        if state.state != EXECUTING:
            raise Refused(f"{kind} for {rid}, which is {state.state}, not being applied")
        if body.get("recovered") is True:
            # settling an apply interrupted between claim and outcome: any eligible executor
            if body.get("claim_seq") != state.claimed_seq:
                raise Refused(f"recovery of {rid} names claim seq {body.get('claim_seq')}, but the "
                              f"claim is seq {state.claimed_seq}")
            check_executor(state, actor)
        elif actor != state.executor:
            raise Refused(f"{kind} recorded by {actor}, but {state.executor} claimed {rid}")
        state.outcome = dict(body, actor=actor, seq=seq, time=time, kind=kind)
        state.state = APPLIED if kind == "applied" else FAILED
    elif kind == "apply-aborted":
        if state.state != EXECUTING:
            raise Refused(f"apply-aborted for {rid}, which is {state.state}, not being applied")
        if actor != state.executor or body.get("claim_seq") != state.claimed_seq:
            raise Refused(f"apply-aborted recorded by {actor} for claim seq {body.get('claim_seq')}, "
                          f"but {state.executor} claimed {rid} at seq {state.claimed_seq}")
        state.aborted.append(dict(body, actor=actor, seq=seq, time=time))
        state.state, state.executor, state.claimed_seq = APPROVED, None, None
    elif kind == "withdraw":
        if actor != state.requester:
            raise Refused(f"{actor} did not request {rid} and may not withdraw it: only the "
                          f"requester ({state.requester}) withdraws a request")
        if state.state not in (PENDING, APPROVED):
            raise Refused(f"{rid} is {state.state}; only a pending or approved request that is not "
                          "yet being applied can be withdrawn")
        state.withdrawal = {"actor": actor, "comment": body.get("comment", ""), "seq": seq,
                            "time": time}
        state.state = WITHDRAWN
    else:
        raise Refused(f"unknown entry kind {kind!r}")
    state.history.append(entry)
    return state
