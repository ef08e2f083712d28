"""Access requests (R-ACC-3): raised, approved by someone else, applied by the designated admin.

CONTRACT (the rest of opskit.accounts and opskit.perms call only these, and
opskit.accounts.requestfile.applied_grants):
  open_store(config) -> RequestStore                     the request store of this config
  RequestStore.get(request_id) -> AccessRequest          (UsageError, exit 2, if unknown)
  RequestStore.claim_unfreeze(request_id, person_id, signer) -> AccessRequest
  RequestStore.claim_transfer(request_id, person_id, post, signer) -> AccessRequest
      checks: kind 'unfreeze' / 'transfer' (to ``post``), for person_id, state 'approved',
      the signer is a designated admin who is neither the requester nor an approver; else
      raises (exit 2). Checks only: writes nothing, so a dry run may call it too.
  RequestStore.mark_applied(request_id, signer, details: dict) -> AccessRequest
      re-checks everything the claim checks (and, for a role grant, separation of
      duties against the roster as it is now), then records the signed 'applied' event.
  ``signer`` is always an opskit.core.signing.Signer: the person acting is the one whose
  roster ``signing_key`` it holds (``actor_of``); a typed name is never enough.

Life of a request (docs/access.md)::

    request -> requested --approve (N distinct approvers)--> approved --apply--> applied
                   |--reject (an approver)--> rejected
                   \\--withdraw (the requester, requested or approved)--> withdrawn

Who does what (every refusal raises ``Refused``, exit 2, naming the rule):

* request: a configured requester (``accounts.requesters``; empty: any active roster
  person), R-ACC-3. The person must be active unless it is an unfreeze; the role must
  exist, not be held already, and not break a separation-of-duties rule together with
  the person's declared roles (R-ACC-2, R-ACC-5; the rule id is named).
* approve / reject: a configured approver (``accounts.approvers``) who is neither the
  requester nor the person the request is for (R-ACC-3). A ``special``-tier role needs
  ``accounts.special_approvals`` (>= 2) distinct approvers (mutual review, R-ACC-5);
  others ``accounts.approvals``. Separation of duties is checked again.
* apply: a designated admin (``accounts.access_admins``; empty: active holders of an
  admin-tier role) who is not the requester, an approver or the person (R-ACC-1).
  Separation of duties and the person's status are checked again.

Every event is signed by its actor and every read verifies the signatures and these rules
again over the signed events (``verified``), so a request file edited by hand, or decided
by someone holding only their own key and modified code, is refused naming the field or
event. Storage (one JSON file per request, replaced atomically, writers under
``<dir>/.lock``), the record and its signatures are in opskit.accounts.requestfile.
"""
from __future__ import annotations

import datetime as _dt
import getpass
import os
from typing import Any, Callable

from opskit.core.errors import UsageError
from opskit.core.filelock import FileLock
from opskit.core.state import ensure_private_dir

from .declared import load_declared
from .requestfile import (APPLIED, APPROVED, OPEN_STATES, REQUEST_ID, REQUESTED, ROLE, TRANSFER,
                          UNFREEZE,
                          AccessRequest, Refused, normal_id, read_request, scan_requests, sign_event,
                          store_dir, verify, write_request)


# --- who is acting --------------------------------------------------------------------------

def os_login() -> str:
    """The OS login of the caller: ``$SUDO_USER`` when running as root through sudo, else
    the effective user."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and os.geteuid() == 0:
        return sudo_user
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return str(os.geteuid())


def actor_of(roster, signer, declared: str | None = None) -> str:
    """The roster person whose ``signing_key`` is the key of ``signer``: who is acting.
    A declared operator name (``--operator``...) must name the same person. Anything else
    is refused (exit 2): a decision is signed by a person in the roster, never just named
    (R-ACC-3, R-DAT-2)."""
    person = roster.by_signing_key(signer.public_raw)
    if person is None:
        raise Refused(f"key {signer.fingerprint} ({signer.path or 'given key'}) is not the "
                      "signing_key of anyone in the roster; access requests are raised, "
                      "approved and applied by people in the roster with their own key (R-ACC-3)",
                      hint="declare your public key as 'signing_key:' under your entry in "
                           "roster.yaml (docs/roster.md), then pass --key FILE")
    if declared and declared not in (person.id, person.login):
        raise Refused(f"the operator is declared as '{declared}' but the key "
                      f"{signer.fingerprint} is {person.id}'s; a decision is taken by whoever "
                      "signs it (R-ACC-3)", hint="drop --operator or use your own key")
    return person.id


# --- the store and its rules ------------------------------------------------------------------

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def open_store(config, *, roster_loader: Callable | None = None) -> "RequestStore":
    """The request store of ``config``. The roster (with applied grants) is loaded lazily,
    when a rule needs it; ``roster_loader`` replaces ``load_declared`` in tests."""
    return RequestStore(config, roster_loader=roster_loader)


class RequestStore:
    def __init__(self, config, *, roster_loader: Callable | None = None):
        self.config = config
        self.dir = store_dir(config)
        self.lock_timeout = float(config.get("accounts.requests_lock_timeout"))
        self._roster_loader = roster_loader

    # --- reading ----------------------------------------------------------------------------
    def get(self, request_id: str, roster=None) -> AccessRequest:
        """The request ``request_id``, verified (``verified``); UsageError (exit 2) if
        there is none."""
        rid = normal_id(request_id)
        if rid is None:
            raise UsageError(f"'{request_id}' is not an access request id; expected AR-0001 "
                             "and so on", hint="'opskit access list' shows the requests")
        path = os.path.join(self.dir, f"{rid}.json")
        if not os.path.exists(path):
            raise UsageError(f"unknown access request '{rid}' (store {self.dir})",
                             hint="'opskit access list' shows the requests")
        return self.verified(read_request(path), roster)

    def list(self, state: str | None = None, person: str | None = None) -> list[AccessRequest]:
        """Requests (each verified) in ``state`` and for ``person`` when given."""
        roster = self.roster()
        return [self.verified(r, roster) for r in scan_requests(self.dir)
                if (state is None or r.state == state) and (person is None or r.person == person)]

    def verified(self, req: AccessRequest, roster=None) -> AccessRequest:
        """``req`` once every signature verifies against the roster's keys and the signed
        events keep the rules no key holder may break alone (requestfile.workflow_problems:
        nobody decides their own request, distinct approvers and keys, apply only once
        approved and by none of requester, approvers or person). Refused (exit 2) otherwise."""
        roster = roster or self.roster()
        verify(req, roster.verifying_keys, os.path.join(self.dir, f"{req.id}.json"))
        return req

    # --- the roster and the configured people -------------------------------------------
    def roster(self):
        """The declared roster as it is now, with applied grants (re-read on every step, so
        approve and apply see a roster changed since the request)."""
        if self._roster_loader is not None:
            return self._roster_loader(self.config)
        return load_declared(self.config)

    def _configured(self, key: str, roster) -> list[str]:
        ids = list(self.config.get(f"accounts.{key}") or [])
        unknown = [i for i in ids if i not in roster.people]
        if unknown:
            from opskit.core.errors import ConfigError
            raise ConfigError(f"accounts.{key} names {', '.join(unknown)}, not in the roster "
                              f"{roster.source or ''}".rstrip(),
                              key=f"accounts.{key}", file=self.config.source)
        return ids

    def needed_approvals(self, tier: str | None) -> int:
        if tier == "special":
            return max(2, int(self.config.get("accounts.special_approvals")))
        return max(1, int(self.config.get("accounts.approvals")))

    def admins(self, roster) -> list[str]:
        """Designated admins (R-ACC-1): ``accounts.access_admins``, else active holders of an
        admin-tier role."""
        ids = self._configured("access_admins", roster)
        if ids:
            return ids
        return [p.id for p in roster.people.values()
                if any(roster.model.tier_of(r) == "admin" for r in roster.roles_of(p))]

    # --- checks ---------------------------------------------------------------------------
    @staticmethod
    def _active(roster, pid: str, as_what: str) -> None:
        p = roster.person(pid)
        if not p.active:
            raise Refused(f"{pid} is {p.status} and may not act as {as_what} (R-ACC-6)",
                          rule="R-ACC-6")

    @staticmethod
    def _sod(roster, req_person: str, role: str, when: str) -> None:
        """Separation of duties: the person's declared roles plus ``role`` (R-ACC-2, R-ACC-5)."""
        person = roster.person(req_person)
        held = _declared_roles(roster, person)
        conflicts = roster.model.conflicts([*held, role])
        conflicts = [c for c in conflicts if role in c.roles]
        if conflicts:
            first = conflicts[0]
            raise Refused(f"{when}: granting {role} to {req_person} would break "
                          + "; ".join(c.describe() for c in conflicts),
                          rule=first.sod.rule,
                          hint=f"{req_person} holds {', '.join(held) or 'no roles'}; remove the "
                               "conflicting role first (e.g. a transfer) or choose another person")

    def _check_applier(self, req: AccessRequest, actor: str, roster) -> None:
        self._active(roster, actor, "the applier")
        if actor == req.requester:
            raise Refused(f"{actor} requested {req.id} and may not apply it: a designated admin "
                          "who is neither requester nor approver applies (R-ACC-1)", rule="R-ACC-1")
        if actor in req.approvers:
            raise Refused(f"{actor} approved {req.id} and may not also apply it: a designated "
                          "admin who is neither requester nor approver applies (R-ACC-1)",
                          rule="R-ACC-1")
        if actor == req.person:
            raise Refused(f"{actor} may not apply {req.id}, which is for themselves (R-ACC-1)",
                          rule="R-ACC-1")
        admins = self.admins(roster)
        if actor not in admins:
            raise Refused(f"{actor} is not a designated admin and may not apply access requests "
                          f"(R-ACC-1); designated: {', '.join(admins) or '(nobody)'}",
                          rule="R-ACC-1",
                          hint="accounts.access_admins in opskit.yaml names them (empty: holders "
                               "of an admin-tier role)")

    def _check_ready(self, req: AccessRequest) -> None:
        state = req.state
        if state == APPLIED:
            raise Refused(f"{req.id} was already applied by {req.applier}")
        if state == REQUESTED:
            raise Refused(f"{req.id} is not approved yet: {req.waiting_for()} still needed "
                          "(R-ACC-3)", rule="R-ACC-5" if req.tier == "special" else "R-ACC-3")
        if state != APPROVED:
            raise Refused(f"{req.id} is {state}; only an approved request can be applied")

    # --- writing ----------------------------------------------------------------------------
    def _lock(self) -> FileLock:
        ensure_private_dir(self.dir)
        return FileLock(os.path.join(self.dir, ".lock"), timeout=self.lock_timeout)

    def _save(self, req: AccessRequest) -> None:
        write_request(os.path.join(self.dir, f"{req.id}.json"), req.to_file())

    def _change(self, request_id: str, signer,
                decide: Callable[[AccessRequest, Any, str], dict]) -> AccessRequest:
        """Under the store lock: re-read and verify the request, find who signs, let
        ``decide(req, roster, actor)`` check the rules and return the event to append,
        sign it with ``signer``, write it, return the new request."""
        with self._lock():
            roster = self.roster()
            req = self.get(request_id, roster)
            actor = actor_of(roster, signer)
            event = decide(req, roster, actor)
            req.events.append(sign_event(req, {**event, "actor": actor, "time": _now()}, signer))
            self._save(req)
            return req

    def create(self, signer, person: str, *, role: str | None = None,
               unfreeze: bool = False, transfer_to: str | None = None, reason: str,
               ticket: str = "") -> AccessRequest:
        """Raise a request for ``person``, signed by ``signer`` (the requester): ``role``
        granted, ``unfreeze``, or a transfer to post ``transfer_to`` (one of them)."""
        if [bool(role), bool(unfreeze), bool(transfer_to)].count(True) != 1:
            raise UsageError("give exactly one of --role ROLE, --unfreeze or --transfer-to POST")
        kind = ROLE if role else UNFREEZE if unfreeze else TRANSFER
        if not (reason or "").strip():
            raise UsageError("--reason must say why the access is needed (R-ACC-3)")
        roster = self.roster()
        actor = actor_of(roster, signer)
        target = roster.person(person)          # exit 2 if unknown
        tier = None
        if role:
            tier = roster.model.role(role).tier  # exit 2 if unknown
        self._active(roster, actor, "a requester")
        requesters = self._configured("requesters", roster)
        if requesters and actor not in requesters:
            raise Refused(f"{actor} may not raise access requests: the section head raises them "
                          f"(R-ACC-3); requesters: {', '.join(requesters)}",
                          hint="accounts.requesters in opskit.yaml names them")
        if role:
            if not target.active:
                raise Refused(f"{person} is {target.status}; no access is granted to someone "
                              "leaving or gone (R-ACC-6)", rule="R-ACC-6",
                              hint="an unfreeze request (--unfreeze) comes first")
            if role in roster.roles_of(target):
                raise Refused(f"{person} already holds role {role} (R-ACC-4: least privilege, "
                              "nothing to grant)", rule="R-ACC-4")
            self._sod(roster, person, role, "refused at request time")
        if transfer_to:
            self._check_transfer_to(roster, target, transfer_to, "refused at request time")
        with self._lock():
            existing = scan_requests(self.dir)
            for other in existing:
                if (other.person == person and other.kind == kind and other.role == role
                        and other.post == transfer_to and other.state in OPEN_STATES):
                    raise Refused(f"{other.id} already asks for {other.what} for {person} and "
                                  f"is {other.state}", hint=f"opskit access show {other.id}")
            number = max((int(REQUEST_ID.match(r.id).group(1)) for r in existing), default=0) + 1
            req = AccessRequest(f"AR-{number:04d}", kind, person, role, tier, reason.strip(),
                                ticket or "", self.needed_approvals(tier), post=transfer_to)
            req.events.append(sign_event(req, {"event": "request", "actor": actor,
                                               "time": _now(), "comment": reason.strip()},
                                         signer))
            self._save(req)
            return req

    def approve(self, request_id: str, signer, comment: str = "") -> AccessRequest:
        """Approve, signed by ``signer`` (a configured approver, not requester nor person)."""
        def decide(req: AccessRequest, roster, actor: str) -> dict:
            self._check_decider(req, actor, roster, "approve")
            if actor in req.approvers:
                raise Refused(f"{actor} has already approved {req.id}; "
                              + ("a special-tier role needs distinct approvers (mutual review, "
                                 "R-ACC-5)" if req.tier == "special" else
                                 "each approval is by a different person"),
                              rule="R-ACC-5" if req.tier == "special" else "R-ACC-3")
            if req.kind == ROLE:
                self._recheck_role(req, roster, "refused at approval")
            event = {"event": "approve", "comment": comment or ""}
            # the role may have become special since the request: never need fewer approvals
            if req.kind == ROLE:
                now_needed = self.needed_approvals(roster.model.tier_of(req.role))
                if now_needed > req.approvals_needed:
                    event["needed"] = now_needed
            return event
        return self._change(request_id, signer, decide)

    def reject(self, request_id: str, signer, comment: str) -> AccessRequest:
        """Reject, signed by ``signer`` (as for approve), with a comment saying why."""
        if not (comment or "").strip():
            raise UsageError("a rejection needs --comment saying why")

        def decide(req: AccessRequest, roster, actor: str) -> dict:
            self._check_decider(req, actor, roster, "reject")
            return {"event": "reject", "comment": comment.strip()}
        return self._change(request_id, signer, decide)

    def withdraw(self, request_id: str, signer, comment: str = "") -> AccessRequest:
        """Withdraw, signed by ``signer`` (the requester), before it is applied."""
        def decide(req: AccessRequest, roster, actor: str) -> dict:
            if actor != req.requester:
                raise Refused(f"{actor} did not raise {req.id} and may not withdraw it: only the "
                              f"requester ({req.requester}) withdraws a request")
            if req.state not in OPEN_STATES:
                raise Refused(f"{req.id} is {req.state}; only a requested or approved request "
                              "can be withdrawn")
            return {"event": "withdraw", "comment": comment or ""}
        return self._change(request_id, signer, decide)

    def apply_grant(self, request_id: str, signer, details: dict | None = None) -> AccessRequest:
        """``access apply`` of a role grant: every check, then the signed 'apply' event, after
        which ``applied_grants`` (and so the declared roster) includes the role."""
        return self._apply(request_id, signer, details, unfreeze_ok=False)

    def _check_decider(self, req: AccessRequest, actor: str, roster, verb: str) -> None:
        if actor == req.requester:
            raise Refused(f"{actor} raised {req.id} and may not {verb} it: a request is "
                          "approved by someone else (R-ACC-3)")
        if actor == req.person:
            raise Refused(f"{actor} may not {verb} {req.id}, which is for themselves (R-ACC-3)")
        if req.state != REQUESTED:
            raise Refused(f"{req.id} is {req.state}; only a request waiting for approval can be "
                          f"{verb}d")
        self._active(roster, actor, "an approver")
        approvers = self._configured("approvers", roster)
        if actor not in approvers:
            raise Refused(f"{actor} is not a configured approver and may not {verb} access "
                          f"requests (R-ACC-3); approvers: {', '.join(approvers) or '(nobody)'}",
                          hint="accounts.approvers in opskit.yaml names the supervising leaders")

    def _recheck_role(self, req: AccessRequest, roster, when: str) -> None:
        person = roster.person(req.person)
        if req.role not in roster.model.roles:
            raise Refused(f"{when}: role {req.role} of {req.id} is no longer declared in "
                          f"{roster.model.source}")
        if not person.active:
            raise Refused(f"{when}: {req.person} is now {person.status}; no access is granted "
                          "to someone leaving or gone (R-ACC-6)", rule="R-ACC-6")
        self._sod(roster, req.person, req.role, when)

    # --- unfreeze and transfer (called by opskit users unfreeze / transfer) -----------------
    def claim_unfreeze(self, request_id: str, person_id: str, signer) -> AccessRequest:
        """Check that the holder of ``signer`` may unfreeze ``person_id`` under
        ``request_id`` (see the module doc). Writes nothing; call ``mark_applied`` once the
        unfreeze is done."""
        roster = self.roster()
        req = self.get(request_id, roster)
        self._check_unfreeze(req, person_id, actor_of(roster, signer), roster)
        return req

    def claim_transfer(self, request_id: str, person_id: str, post: str, signer) -> AccessRequest:
        """Check that the holder of ``signer`` may move ``person_id`` to ``post`` under
        ``request_id``. Writes nothing; call ``mark_applied`` once the transfer is done."""
        roster = self.roster()
        req = self.get(request_id, roster)
        self._check_transfer(req, person_id, post, actor_of(roster, signer), roster)
        return req

    def _check_transfer_to(self, roster, person, post: str, when: str) -> None:
        """The person is active, the post exists and the roles it brings (with the person's
        own and granted ones) break no separation-of-duties rule (R-ACC-2, R-ACC-6)."""
        model = roster.model
        model.post(post)                                     # unknown post: exit 2
        if not person.active:
            raise Refused(f"{when}: {person.id} is {person.status}; only an active person is "
                          "transferred (R-ACC-6)", rule="R-ACC-6")
        roles = list(dict.fromkeys([*model.posts[post].roles, *person.roles,
                                    *roster.grants.get(person.id, [])]))
        conflicts = model.conflicts(roles)
        if conflicts:
            raise Refused(f"{when}: transferring {person.id} to {post} would break "
                          + "; ".join(c.describe() for c in conflicts), rule=conflicts[0].sod.rule,
                          hint="the person's own or granted roles conflict with the new post's")

    def _check_transfer(self, req: AccessRequest, person_id: str, post: str, actor: str,
                        roster) -> None:
        if req.kind != TRANSFER:
            raise Refused(f"{req.id} asks for {req.what}, not a transfer (R-ACC-3)",
                          hint=f"raise one: opskit access request --person {person_id} "
                               f"--transfer-to {post} --reason ...")
        if req.person != person_id or req.post != post:
            raise Refused(f"{req.id} moves {req.person} to {req.post}, not {person_id} to {post}")
        self._check_ready(req)
        self._check_applier(req, actor, roster)
        self._check_transfer_to(roster, roster.person(person_id), post, "refused at apply time")

    def _check_unfreeze(self, req: AccessRequest, person_id: str, actor: str, roster) -> None:
        if req.kind != UNFREEZE:
            raise Refused(f"{req.id} asks for {req.what}, not an unfreeze (R-ACC-3)",
                          hint=f"raise one: opskit access request --person {person_id} "
                               "--unfreeze --reason ...")
        if req.person != person_id:
            raise Refused(f"{req.id} is for {req.person}, not {person_id}")
        self._check_ready(req)
        self._check_applier(req, actor, roster)
        roster.person(person_id)
        conflicts = roster.model.conflicts(_declared_roles(roster, roster.person(person_id)))
        if conflicts:
            raise Refused(f"unfreezing {person_id} would restore roles that break "
                          + "; ".join(c.describe() for c in conflicts), rule=conflicts[0].sod.rule)

    def mark_applied(self, request_id: str, signer, details: dict) -> AccessRequest:
        """Record that the request was carried out (``details``: what was done, e.g. hosts).
        For an unfreeze or a transfer, the same checks as the claim; for a role grant, those
        of ``apply_grant``."""
        return self._apply(request_id, signer, details, unfreeze_ok=True)

    def _apply(self, request_id: str, signer, details: dict | None, *,
               unfreeze_ok: bool) -> AccessRequest:
        def decide(req: AccessRequest, roster, actor: str) -> dict:
            if req.kind in (UNFREEZE, TRANSFER) and not unfreeze_ok:
                raise Refused(f"{req.id} asks for {req.what}: run '{req.waiting_for()}', which "
                              "applies it on the hosts (R-ACC-6)", rule="R-ACC-6")
            if req.kind == UNFREEZE:
                self._check_unfreeze(req, req.person, actor, roster)
            elif req.kind == TRANSFER:
                self._check_transfer(req, req.person, req.post, actor, roster)
            else:
                self._check_ready(req)
                self._check_applier(req, actor, roster)
                self._recheck_role(req, roster, "refused at apply time")
            return {"event": "apply", "comment": "", "details": dict(details or {})}
        return self._change(request_id, signer, decide)


def _declared_roles(roster, person) -> list[str]:
    """Roles the person is declared to hold (post, own, applied grants), whatever the status:
    what they would hold once active again."""
    post_roles = roster.model.posts[person.post].roles if person.post else []
    return list(dict.fromkeys([*post_roles, *person.roles, *roster.grants.get(person.id, [])]))
