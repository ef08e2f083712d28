"""The correction workflow: request, approve, reject, withdraw, apply; listing.

Domain code: no click, no printing. Every function returns plain objects that
report.py turns into Results, and every step that changes anything is one signed ledger entry
written under the ledger's lock (ledger.py), after the rules of workflow.py
and the roles of the rules file (rulesfile.py) allowed it.

Identity is the signing key: the actor recorded in an entry is the operator
whose declared public key matches the key that signed it, never a name
someone typed (R-DAT-1: operator, time and content).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import datetime as _dt
import os

from opskit.core.errors import OpskitError, OperationalError, EXIT_FINDINGS
from opskit.core.failpoints import failpoint

from . import workflow as wf
from opskit.core.signing import Signer
from .ledger import Ledger, Refused
from .rulesfile import APPROVER_ROLES, AUDITOR, LEVELS, MAINTAINER, Registry
from .sqlcheck import SqlRefused, check_params, parse_statement, typed_value
from .targets import MARKER_TABLE, Database, TargetError, image_digest, recover as recover_rows
from .effects import effects_digest, trigger_touches
from .preview import matches as preview_matches
from .verify import LedgerTampered, verify_request

RULE_IDS = ["R-DAT-1", "R-DAT-2", "R-DAT-3", "R-AUD-1", "R-AUD-3"]


class ApplyFailed(OpskitError):
    """The apply was attempted, rolled back and recorded in the ledger (exit 1)."""

    exit_code = EXIT_FINDINGS

    def __init__(self, message: str, entry: dict | None = None, state: "wf.RequestState | None" = None):
        super().__init__(message)
        self.entry, self.state = entry, state


class ApplyRetry(OperationalError):
    """The apply hit a transient error (lock timeout, lost connection, serialization
    failure), rolled back and left the request approved for a retry (exit 3)."""

    def __init__(self, message: str, entry: dict | None = None, state: "wf.RequestState | None" = None):
        super().__init__(message)
        self.entry, self.state = entry, state


def _touches(table: str, operation: str, rows: int, effects: list[dict], bases: list[str],
             named: list[str]) -> list[tuple[str, str, int]]:
    """(table, operation, rows) of the statement itself, of the base tables of a view it
    goes through (their rules apply, R-DAT-3), of each cascade it sets off, and of the
    tables its triggers name (any operation: what they do is not known before apply)."""
    return ([(t, operation, rows) for t in [table] + list(bases)]
            + [(e["table"], e["operation"], len(e["rows"])) for e in effects]
            + [(t, op, rows) for t in named for op in ("INSERT", "UPDATE", "DELETE")])


def _request_touches(st: wf.RequestState) -> list[tuple[str, str, int]]:
    """``_touches`` of a request, from what its request entry recorded."""
    body = st.history[0].get("body") or {}
    return _touches(st.table, st.operation, st.row_count, st.effects,
                    list(body.get("base_tables") or []), list(body.get("trigger_tables") or []))


def _request_names(st: wf.RequestState) -> dict[str, list[str]]:
    """How the server resolved the request's table names (``table_names``, recorded at
    request time; effects.relation_names), for the risk rules."""
    names = (st.history[0].get("body") or {}).get("table_names")
    if not isinstance(names, dict):
        return {}
    return {str(k): [str(n) for n in v] for k, v in names.items() if isinstance(v, list)}


def _weaker(have, need) -> bool:
    """Whether requirement ``have`` asks for less than ``need`` in any respect."""
    return (have.approvals < need.approvals or not set(need.levels) <= set(have.levels)
            or (need.auditor and not have.auditor))


@dataclass
class Context:
    """Who runs the step and from where (evidence only; identity is the key)."""

    os_user: str = ""
    host: str = ""


@dataclass
class Corrections:
    ledger: Ledger
    registry: Registry
    lock_timeout: float = 10.0
    context: Context = field(default_factory=Context)

    # --- identity ----------------------------------------------------------------
    def identify(self, signer: Signer):
        op = self.registry.who(signer.public_raw)
        if op is None:
            old = self.registry.who(signer.public_raw, history=True)
            if old is not None:
                raise Refused(f"key {signer.fingerprint} is a previous key of {old.name}; it "
                              "verifies history but signs nothing new")
            where = self.registry.source or "the corrections rules file (none found)"
            raise Refused(f"key {signer.fingerprint} is not declared for any operator in {where}; "
                          "only declared people may act on corrections (R-DAT-2)",
                          hint="add the output of 'opskit correct keygen' under operators: in the "
                               "rules file")
        if op.retired:
            raise Refused(f"{op.name} is retired in {self.registry.source}: no new actions (R-ACC-6)")
        return op

    def _evidence(self) -> dict:
        return {"os_user": self.context.os_user, "host": self.context.host}

    # --- request -----------------------------------------------------------------
    def prepare(self, target: str, sql: str, params: dict[str, str], reason: str, ticket: str,
                signer: Signer) -> dict:
        """Vet the statement and read the before-image (read-only); the request body."""
        op = self.identify(signer)
        if not (reason or "").strip():
            raise Refused("--reason is required: every correction records why (R-DAT-1)")
        tgt = self.registry.target(target)
        stmt = parse_statement(sql)
        check_params(stmt, params)
        typed = {k: typed_value(v) for k, v in params.items()}
        image = Database(tgt, self.lock_timeout).read_before_image(stmt, typed,
                                                                   self.registry.rule_tables(tgt.name))
        count = stmt.insert_rows if stmt.operation == "INSERT" else len(image.rows)
        if stmt.operation != "INSERT" and count == 0:
            raise SqlRefused(f"the WHERE clause matches no rows in {tgt.name}.{stmt.table}: nothing "
                             "to correct (check the parameters)")
        limit = tgt.max_rows or self.registry.max_rows
        total = count + sum(len(e["rows"]) for e in image.effects)
        if total > limit:
            raise SqlRefused(f"the statement touches {total} rows (cascades included); at most {limit} "
                             "per correction (max_rows in the rules file): bulk changes are not "
                             "corrections")
        # every table the statement touches brings its own rules (a cascade to refunds
        # needs the refunds sign-off, R-DAT-3)
        req = self.registry.requirement_for(tgt.name, _touches(stmt.table, stmt.operation, count,
                                                                image.effects, image.bases,
                                                                image.trigger_tables), image.names)
        requirement = dict(req.to_dict(), executor_may_approve=self.registry.executor_may_approve)
        warnings = self.registry.unresolved(tgt.name, image.names)
        return {
            "requester": op.name,
            "target": tgt.name, "target_url": tgt.safe_url, "target_kind": tgt.kind,
            "table": stmt.table, "operation": stmt.operation, "sql": stmt.sql,
            "params": dict(params), "reason": reason.strip(), "ticket": (ticket or "").strip(),
            "row_count": count, "columns": image.columns,
            "before": image.rows if stmt.operation != "INSERT" else [],
            "before_sha256": image_digest(image.rows if stmt.operation != "INSERT" else []),
            "effects": image.effects, "effects_sha256": effects_digest(image.effects),
            "base_tables": image.bases, "trigger_tables": image.trigger_tables,
            "triggers_on": image.triggers, "preview": image.preview,
            "requirement": requirement, "rule_ids": RULE_IDS, **self._evidence(),
            "table_names": image.names, **({"rule_warnings": warnings} if warnings else {}),
        }

    def request(self, target: str, sql: str, params: dict[str, str], reason: str, ticket: str,
                signer: Signer) -> tuple[dict, wf.RequestState]:
        body = self.prepare(target, sql, params, reason, ticket, signer)
        actor = body.pop("requester")

        def decide(entries, seq):
            spec = {"kind": "request", "actor": actor, "body": body, "request": f"CR-{seq}"}
            wf.step(None, dict(spec, seq=seq))
            return spec

        entry = self.ledger.append(None, decide, signer)
        return entry, wf.fold([entry])

    # --- approve / reject --------------------------------------------------------
    def state(self, rid: str) -> wf.RequestState:
        entries = self.ledger.for_request(rid)
        if not entries:
            raise Refused(f"no correction request {rid} in the ledger")
        return wf.fold(entries)

    def verified_state(self, rid: str) -> tuple[list[dict], wf.RequestState]:
        """The request's entries and state, after checking (before anyone acts on them)
        their chain and signatures (verify.verify_request) and that what the requester
        signed holds together: the statement vets, names the table and operation the
        request records, and the frozen requirement is not weaker than the rules file
        asks for this change. LedgerTampered (exit 1) names the entry otherwise."""
        entries = verify_request(self.ledger, self.registry, rid)
        st = wf.fold(entries)
        stmt = parse_statement(st.sql)
        check_params(stmt, st.params)
        where = f"{rid}: the request (seq {st.seq})"
        if (stmt.table, stmt.operation) != (st.table, st.operation):
            raise LedgerTampered(f"{where} records {st.operation} on {st.table} but its statement is "
                                 f"{stmt.operation} on {stmt.table}; refusing to act on it")
        rows = stmt.insert_rows if stmt.operation == "INSERT" else len(st.before)
        if rows != st.row_count or image_digest(st.before) != st.before_digest:
            raise LedgerTampered(f"{where} records {st.row_count} row(s) but its before-image does not "
                                 "match (row count or digest); refusing to act on it")
        if effects_digest(st.effects) != (st.history[0].get("body") or {}).get("effects_sha256",
                                                                             effects_digest([])):
            raise LedgerTampered(f"{where}: its cascaded rows do not match their digest; refusing "
                                 "to act on it")
        if not preview_matches(st.preview, st.operation, st.before, st.row_count):
            raise LedgerTampered(f"{where}: its previewed rows (old -> new) are not the rows of its "
                                 "before-image; refusing to act on it")
        need = self.registry.requirement_for(st.target, _request_touches(st), _request_names(st))
        have = st.requirement
        if _weaker(have, need) or (st.executor_may_approve and not self.registry.executor_may_approve):
            raise LedgerTampered(f"{where} froze the requirement '{have.describe()}', weaker than the "
                                 f"rules file asks for this change ('{need.describe()}'); refusing to "
                                 "act on it")
        return entries, st

    def preview(self, st: wf.RequestState) -> dict | None:
        """What the request will write, for the approver: the preview the requester
        signed; for a pending or approved request recorded without one, computed now,
        read-only (marked ``computed: show``); None when there is nothing to preview."""
        if st.preview is not None or st.operation not in ("UPDATE", "INSERT") or \
                st.state not in (wf.PENDING, wf.APPROVED):
            return st.preview
        try:
            tgt = self.registry.target(st.target)
            stmt = parse_statement(st.sql)
        except OpskitError as exc:
            return {"computed": "show", "rows": [], "pending": [], "error": exc.message}
        typed = {k: typed_value(v) for k, v in st.params.items()}
        return Database(tgt, self.lock_timeout).preview(stmt, typed)

    @staticmethod
    def _unchanged(rid: str, verified: list[dict], entries: list[dict], step: dict) -> None:
        """Under the ledger lock: the entries are still the ones just verified. If some
        were added meanwhile (another approver or executor won a race), the workflow's
        own reason to refuse ``step`` is given; otherwise: run the command again."""
        hashes, mine = [e.get("hash") for e in entries], [e["hash"] for e in verified]
        if hashes == mine:
            return
        if hashes[:len(mine)] == mine:
            wf.step(wf.fold(entries), step)
        raise Refused(f"{rid} changed while it was being verified; run the command again")

    def approve(self, rid: str, comment: str, signer: Signer, role: str | None = None):
        op = self.identify(signer)
        verified, _st = self.verified_state(rid)

        def decide(entries, seq):
            if not entries:
                raise Refused(f"no correction request {rid} in the ledger")
            self._unchanged(rid, verified, entries, {"kind": "approve", "actor": op.name, "request": rid,
                                                     "seq": seq, "body": {"level": role or "clerk"}})
            st = wf.fold(entries)
            if st.state == wf.PENDING and op.name != st.requester and op.name not in st.signers():
                level = self._level_for(st, op, role)
            else:
                level = role or "clerk"  # let step() name the real reason
            spec = {"kind": "approve", "actor": op.name,
                    "body": {"level": level, "comment": (comment or "").strip(), **self._evidence()}}
            wf.step(st, dict(spec, request=rid, seq=seq))
            return spec

        entry = self.ledger.append(rid, decide, signer)
        return entry, self.state(rid)

    def _level_for(self, st: wf.RequestState, op, role: str | None) -> str:
        if role:
            if role not in op.roles:
                raise Refused(f"{op.name} does not hold the role {role!r} (roles: "
                              f"{', '.join(op.roles) or 'none'})")
            if role not in APPROVER_ROLES and role != AUDITOR:
                raise Refused(f"{role!r} is not a sign-off role; use one of "
                              f"{', '.join(LEVELS + (AUDITOR,))}")
            return role
        nxt = st.next_level()
        if st.approvals_missing():
            if nxt is not None and nxt in op.roles:
                return nxt
            if nxt is None:
                held = [lv for lv in LEVELS if lv in op.roles]
                if held:
                    return held[-1]
        if st.auditor_missing() and AUDITOR in op.roles:
            return AUDITOR
        need = []
        if st.approvals_missing():
            need.append(f"the {nxt} level" if nxt else "an approver (clerk, section_head or leader)")
        if st.auditor_missing():
            need.append("the audit supervisor (role auditor, R-DAT-2)")
        raise Refused(f"{st.id} needs {' and '.join(need)}; {op.name} holds "
                      f"{', '.join(op.roles) or 'no roles'} (R-DAT-3)")

    def reject(self, rid: str, comment: str, signer: Signer):
        op = self.identify(signer)
        if not (comment or "").strip():
            raise Refused("--comment is required when rejecting: record why (R-DAT-3)")
        if not any(r in op.roles for r in APPROVER_ROLES + (AUDITOR,)):
            raise Refused(f"{op.name} holds no sign-off role and may not reject (roles: "
                          f"{', '.join(op.roles) or 'none'})")

        return self._comment_step(rid, "reject", op.name, comment, signer)

    # --- apply -------------------------------------------------------------------
    def plan(self, rid: str, signer: Signer) -> dict:
        """What apply would do, checked read-only (``apply --dry-run``)."""
        op = self.identify(signer)
        _entries, st = self.verified_state(rid)
        self._may_apply(st, op)
        wf.step(wf.fold(st.history), {"kind": "apply-started", "actor": op.name, "request": rid,
                                      "seq": 0, "body": {}})
        tgt = self.registry.target(st.target)
        stmt = parse_statement(st.sql)
        typed = {k: typed_value(v) for k, v in st.params.items()}
        image = Database(tgt, self.lock_timeout).read_before_image(stmt, typed)
        rows = image.rows if stmt.operation != "INSERT" else []
        return {"request": rid, "target": st.target, "sql": st.sql, "params": st.params,
                "row_count": st.row_count, "before_unchanged": image_digest(rows) == st.before_digest,
                "state": st.state}

    def _may_apply(self, st: wf.RequestState, op) -> None:
        if MAINTAINER not in op.roles:
            raise Refused(f"{op.name} is not a designated maintainer (role maintainer) and may not "
                          "apply corrections (R-ACC-1, R-DAT-2)")

    def apply(self, rid: str, signer: Signer):
        op = self.identify(signer)
        verified, current = self.verified_state(rid)
        if current.state == wf.EXECUTING:
            return self.recover(rid, current, op, signer)
        # the commit-marker table must exist before the claim: a role that cannot create
        # it is a configuration error (exit 2) that leaves the request approved
        db = Database(self.registry.target(current.target), self.lock_timeout)
        db.ensure_marker()
        # the functions it calls as the server resolves them now: refused input (exit 2),
        # nothing claimed; the apply checks again (and records an unreachable target) (R-DAT-2)
        try:
            db.vet_functions(parse_statement(current.sql),
                             {k: typed_value(v) for k, v in current.params.items()})
        except TargetError:
            pass
        failpoint("correct.apply.before-claim")

        def claim(entries, seq):
            if not entries:
                raise Refused(f"no correction request {rid} in the ledger")
            spec = {"kind": "apply-started", "actor": op.name,
                    "body": dict(self._evidence(), pid=os.getpid(), marker=MARKER_TABLE)}
            self._unchanged(rid, verified, entries, dict(spec, request=rid, seq=seq))
            st = wf.fold(entries)
            self._may_apply(st, op)
            wf.step(st, dict(spec, request=rid, seq=seq))
            return spec

        claimed = self.ledger.append(rid, claim, signer)   # exactly one executor gets here
        failpoint("correct.apply.after-claim")
        st = self.state(rid)
        outcome = None
        error: BaseException | None = None
        try:
            tgt = self.registry.target(st.target)
            stmt = parse_statement(st.sql)
            typed = {k: typed_value(v) for k, v in st.params.items()}
            outcome = Database(tgt, self.lock_timeout).apply(stmt, typed, st.before_digest, st.row_count,
                                                             (rid, claimed["hash"]),
                                                             effects_digest(st.effects), self._guard(st))
        except BaseException as exc:       # still record the failure, then re-raise
            error = exc
        if outcome is not None and outcome.ok:
            failpoint("correct.apply.after-commit")
        if outcome is not None and not outcome.ok and outcome.transient:
            self._retry_later(rid, op, claimed, outcome, signer)
        if outcome is not None and outcome.ok:
            body = {"row_count": outcome.row_count, "after": outcome.after,
                    "after_sha256": image_digest(outcome.after), "claim_seq": claimed["seq"],
                    "trigger_effects": outcome.triggers, **self._evidence()}
            kind = "applied"
        else:
            reason = outcome.reason if outcome is not None else (
                getattr(error, "message", None) or f"{type(error).__name__}: {error}")
            body = {"stage": outcome.stage if outcome is not None else "prepare", "reason": reason,
                    "row_count": outcome.row_count if outcome is not None else 0,
                    "claim_seq": claimed["seq"], **self._evidence()}
            if outcome is not None and outcome.before_now is not None:
                body["before_now_sha256"] = image_digest(outcome.before_now)
            if outcome is not None and outcome.sqlstate:
                body["sqlstate"] = outcome.sqlstate        # 'correct log' shows it (#17)
            kind = "apply-failed"

        entry = self.ledger.append(rid, self._outcome(rid, kind, op.name, body), signer)
        final = self.state(rid)
        if error is not None and not isinstance(error, OpskitError):
            raise error
        if kind == "apply-failed":
            raise ApplyFailed(f"{rid} not applied ({body['stage']}): {body['reason']}; recorded in "
                              f"the ledger as seq {entry['seq']}", entry, final)
        return entry, final

    def _guard(self, st: wf.RequestState):
        """For the apply transaction: a reason to refuse what the statement's triggers
        changed when their tables' rules ask more than the request's frozen requirement
        (R-DAT-3), else None. ``resolve`` (effects.relation_names in that transaction)
        gives the tables' names as the server resolves them now (a trigger's write to a
        partition brings its parent's rules); called before the statement runs with no
        effects too, the rules of the request's own tables must not ask more either."""
        def guard(side: list[dict], resolve=None) -> str | None:
            names = _request_names(st)
            touches = _request_touches(st) + trigger_touches(side)
            if resolve is not None:
                names.update(resolve([t for t, _o, _n in touches] + self.registry.rule_tables(st.target)))
            need = self.registry.requirement_for(st.target, touches, names)
            if not _weaker(st.requirement, need):
                return None
            if not side:
                return (f"the rules of the tables it changes, as {st.target} resolves them "
                        f"({', '.join(sorted({n for v in names.values() for n in v[:1]})) or 'none'}), "
                        f"need '{need.describe()}', more than {st.id} was approved for "
                        f"('{st.requirement.describe()}'); raise a new request")
            tables = ", ".join(f"{e['table']} (+{e['inserted']}/~{e['updated']}/-{e['deleted']})"
                               for e in side)
            return (f"triggers also change {tables}, whose rules need '{need.describe()}', more than "
                    f"{st.id} was approved for ('{st.requirement.describe()}'); raise a request on "
                    "those tables too")
        return guard

    @staticmethod
    def _outcome(rid: str, kind: str, actor: str, body: dict):
        """The ledger callback that records an apply's outcome (after the workflow allows it)."""
        def record(entries, seq):
            failpoint("correct.apply.before-outcome")
            spec = {"kind": kind, "actor": actor, "body": body}
            wf.step(wf.fold(entries), dict(spec, request=rid, seq=seq))
            return spec
        return record

    def _retry_later(self, rid: str, op, claimed: dict, outcome, signer: Signer) -> None:
        """A transient error: record ``apply-aborted`` (the request is approved again) and
        raise ApplyRetry (exit 3). An error while committing leaves the outcome unknown,
        so nothing is recorded and the request stays executing for recovery to settle."""
        if outcome.stage == "commit":
            raise TargetError(f"{rid}: {outcome.reason} while committing: whether the change "
                              f"committed is unknown, so {rid} stays executing; run apply again "
                              "to settle it")
        body = {"stage": outcome.stage, "reason": outcome.reason, "transient": True,
                "claim_seq": claimed["seq"], **self._evidence()}
        if outcome.sqlstate:
            body["sqlstate"] = outcome.sqlstate

        def record(entries, seq):
            spec = {"kind": "apply-aborted", "actor": op.name, "body": body}
            wf.step(wf.fold(entries), dict(spec, request=rid, seq=seq))
            return spec

        entry = self.ledger.append(rid, record, signer)
        raise ApplyRetry(f"{rid} not applied ({outcome.stage}): {outcome.reason}; nothing changed and "
                         f"{rid} is approved again (seq {entry['seq']}): run apply again later",
                         entry, self.state(rid))

    # --- recovery of an interrupted apply ------------------------------------------
    def recover(self, rid: str, st: wf.RequestState, op, signer: Signer):
        """Settle a request left ``executing`` (the process died between the claim and the
        outcome): decide from the live rows, under the target's lock, whether the change
        was committed, and record it, or apply it now; rows matching neither are refused
        and recorded (exit 1). An operational error records nothing: run apply again."""
        self._may_apply(st, op)
        wf.check_executor(st, op.name)
        claim = next((e for e in st.history if e.get("seq") == st.claimed_seq), {})
        self._claim_is_dead(st, claim)
        tgt = self.registry.target(st.target)
        stmt = parse_statement(st.sql)
        typed = {k: typed_value(v) for k, v in st.params.items()}
        db = Database(tgt, self.lock_timeout)
        if (claim.get("body") or {}).get("marker"):
            # the claim's commit marker says whether it committed: nothing is guessed
            outcome = db.settle(stmt, typed, st.before_digest, st.row_count, (rid, claim["hash"]),
                                effects_digest(st.effects), self._guard(st))
        else:   # claimed by a version without markers: decide from the live rows
            outcome = recover_rows(db, stmt, typed, st.before, st.before_digest, st.row_count)
        if not outcome.ok and outcome.stage not in ("recover", "row-count", "rows", "before-image",
                                                     "cascade", "rules", "triggers"):
            raise TargetError(f"{rid} was left executing by {st.executor} (claim seq "
                              f"{st.claimed_seq}); settling it failed ({outcome.stage}): "
                              f"{outcome.reason}. Nothing recorded: run apply again")
        common = {"recovered": True, "interrupted_executor": st.executor,
                  "claim_seq": st.claimed_seq, **self._evidence()}
        if outcome.ok:
            kind = "applied"
            body = {"row_count": outcome.row_count, "after": outcome.after,
                    "after_sha256": image_digest(outcome.after), "recovery": outcome.stage,
                    "trigger_effects": outcome.triggers, **common}
        else:
            kind = "apply-failed"
            body = {"stage": outcome.stage, "reason": outcome.reason, "row_count": outcome.row_count,
                    "recovery": "rows-match-neither" if outcome.stage == "recover" else "rolled-back",
                    **common}
            if outcome.sqlstate:
                body["sqlstate"] = outcome.sqlstate
            if outcome.before_now is not None:
                body["rows_now"] = outcome.before_now
                body["before_now_sha256"] = image_digest(outcome.before_now)

        entry = self.ledger.append(rid, self._outcome(rid, kind, op.name, body), signer)
        final = self.state(rid)
        if kind == "apply-failed":
            raise ApplyFailed(f"{rid} not applied ({body['stage']}): {body['reason']}; recorded in "
                              f"the ledger as seq {entry['seq']}", entry, final)
        return entry, final

    def _claim_is_dead(self, st: wf.RequestState, claim: dict) -> None:
        """Refuse to settle a claim whose process may still be running."""
        body = claim.get("body") or {}
        pid = body.get("pid")
        if body.get("host") == self.context.host and isinstance(pid, int) and pid > 0:
            if pid == os.getpid():
                return
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return                      # the claiming process is gone: settle it
            except PermissionError:
                pass                        # alive, another user's
            raise Refused(f"{st.id} is already being applied by {st.executor} (entry seq "
                          f"{st.claimed_seq}, pid {pid} on {body.get('host')} is still running); "
                          "exactly one executor applies a request")
        # claimed on another host (or by an old version): wait until it cannot still be running
        wait = 2 * self.lock_timeout
        try:
            claimed_at = _dt.datetime.fromisoformat(str(claim.get("time", "")).replace("Z", "+00:00"))
        except ValueError:
            return
        age = (_dt.datetime.now(_dt.timezone.utc) - claimed_at).total_seconds()
        if age < wait:
            raise Refused(f"{st.id} is already being applied by {st.executor} (entry seq "
                          f"{st.claimed_seq}, on {body.get('host') or 'another host'}, {age:.0f}s ago); "
                          f"if that process died, run apply again after {wait:g}s")

    # --- withdraw ----------------------------------------------------------------
    def withdraw(self, rid: str, comment: str, signer: Signer):
        """The requester takes back a request that is not yet being applied."""
        op = self.identify(signer)
        if not (comment or "").strip():
            raise Refused("--comment is required when withdrawing: record why (R-DAT-1)")

        return self._comment_step(rid, "withdraw", op.name, comment, signer)

    def _comment_step(self, rid: str, kind: str, actor: str, comment: str, signer: Signer):
        """Append a signed ``kind`` entry (reject, withdraw) that carries only a
        comment, after the workflow accepts it against the ledger as it is now."""
        def decide(entries, seq):
            if not entries:
                raise Refused(f"no correction request {rid} in the ledger")
            st = wf.fold(entries)
            spec = {"kind": kind, "actor": actor,
                    "body": {"comment": comment.strip(), **self._evidence()}}
            wf.step(st, dict(spec, request=rid, seq=seq))
            return spec

        entry = self.ledger.append(rid, decide, signer)
        return entry, self.state(rid)

    # --- reading -----------------------------------------------------------------
    def all_states(self) -> list[wf.RequestState]:
        """Every request, folded; a request whose entries break the rules is marked invalid."""
        groups: dict[str, list[dict]] = {}
        for entry in self.ledger.entries():
            groups.setdefault(str(entry.get("request")), []).append(entry)
        out = []
        for rid, entries in groups.items():
            try:
                out.append(wf.fold(entries))
            except (Refused, KeyError, TypeError):
                bad = wf.RequestState(id=rid, state="INVALID (run verify)")
                bad.seq = entries[0].get("seq", 0) if entries else 0
                out.append(bad)
        out.sort(key=lambda s: s.seq)
        return out
