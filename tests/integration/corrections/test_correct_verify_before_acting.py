"""approve and apply verify a request's entries before acting (#17 item 2, R-DAT-1..3).

A DBA with write access to the ledger table edits a request's params or
before-image, lowers its frozen requirement, appends a forged approval, or
relabels a rejection through the unsigned ``request`` column; a requester's
modified client signs a weaker requirement than the rules ask. Each must be
refused with exit 1 naming the entry, and the target must stay unchanged.
Runs on the SQLite ledger + SQLite target and the PostgreSQL ledger + target.
"""
from __future__ import annotations

import pytest

from opskit.core.errors import EXIT_FINDINGS
from opskit.core.signing import generate
from opskit.corrections.ledger import build_entry, decode, encode, entry_hash, text_hash
from opskit.corrections.verify import LedgerTampered
from tests.integration.corrections.test_correct_tamper import Raw
from tests.harness.corrections import (make_postgres_target, make_sqlite_target, make_world,
                                             sqlite_rows)

SQL = "UPDATE claims SET amount = :a WHERE id = :id"


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path):
    if request.param == "sqlite":
        w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))
        w.amount = lambda rid: float(sqlite_rows(w.target_url, f"SELECT amount FROM claims WHERE id = {rid}")[0][0])
    else:
        postgres = request.getfixturevalue("postgres")
        db = request.getfixturevalue("postgres_db")
        w = make_world(tmp_path, make_postgres_target(postgres, db), ledger=postgres.dsn_for(db))
        w.amount = lambda rid: float(postgres.psql(f"SELECT amount FROM claims WHERE id = {rid}", db))
    w.raw = Raw(w.ledger)
    return w


def _refused(world, action, *fragments):
    svc = world.svc()
    try:
        with pytest.raises(LedgerTampered) as err:
            action(svc)
    finally:
        svc.ledger.close()
    assert err.value.exit_code == EXIT_FINDINGS
    for fragment in fragments:
        assert fragment in err.value.message, err.value.message
    assert world.amount(42) == 1205.0 and world.amount(41) == 88.0
    return err.value.message


def _request(world, sql=SQL, params=None, approve=True) -> str:
    svc = world.svc()
    try:
        _e, st = svc.request("his", sql, params or {"a": "120.50", "id": "42"}, "typo", "INC-7",
                             world.signer("alice"))
        if approve:
            svc.approve(st.id, "ok", world.signer("bob"))
        # an untampered request verifies (the control for every refusal below)
        svc.verified_state(st.id)
    finally:
        svc.ledger.close()
    return st.id


def _edit(world, seq, change, rehash=False):
    entry = decode(world.raw.texts()[seq - 1])
    change(entry)
    if rehash:
        entry["hash"] = entry_hash(entry)
    world.raw.set(seq, encode(entry))


def test_edited_params_refuse_apply(world):
    rid = _request(world)
    _edit(world, 1, lambda e: e["body"]["params"].update(id="41"))
    _refused(world, lambda svc: svc.apply(rid, world.signer("mike")), "seq 1", "edited")
    _refused(world, lambda svc: svc.plan(rid, world.signer("mike")), "seq 1")


def test_edited_before_image_with_hash_recomputed_refuses_apply(world):
    rid = _request(world)
    _edit(world, 1, lambda e: e["body"]["before"][0].update(amount="1.00"), rehash=True)
    _refused(world, lambda svc: svc.apply(rid, world.signer("mike")), "seq 1", "signature")


def test_lowered_requirement_refuses_approve_and_apply(world):
    rid = _request(world, "UPDATE refunds SET amount = :a WHERE id = :id", {"a": "1", "id": "7"},
                   approve=False)

    def lower(e):
        e["body"]["requirement"].update(approvals=1, levels=[], auditor=False)
    _edit(world, 1, lower, rehash=True)
    _refused(world, lambda svc: svc.approve(rid, "ok", world.signer("bob")), "seq 1", "signature")
    assert len(world.raw.texts()) == 1


def test_a_requirement_weaker_than_the_rules_signed_by_a_modified_client_is_refused(world):
    svc = world.svc()
    body = svc.prepare("his", "UPDATE refunds SET amount = :a WHERE id = :id", {"a": "1", "id": "7"},
                       "r", "", world.signer("alice"))
    body.pop("requester")
    body["requirement"] = {"approvals": 1, "levels": [], "auditor": False, "rules": [],
                           "executor_may_approve": False}
    entry = svc.ledger.append(None, lambda _e, seq: {"kind": "request", "actor": "alice", "body": body,
                                                      "request": f"CR-{seq}"}, world.signer("alice"))
    svc.ledger.close()
    rid = entry["request"]
    _refused(world, lambda svc: svc.approve(rid, "ok", world.signer("bob")), "weaker than the rules")


def test_a_forged_approval_appended_refuses_apply(world, tmp_path):
    rid = _request(world, approve=False)
    texts = world.raw.texts()
    mallory, _ = generate(str(tmp_path / "mallory"))
    entry, text = build_entry(seq=2, prev=text_hash(texts[-1]), kind="approve", request=rid,
                              actor="bob", body={"level": "clerk", "comment": "ok"}, signer=mallory)
    world.raw.add(entry, text)
    _refused(world, lambda svc: svc.apply(rid, world.signer("mike")), "seq 2", "not declared")


def test_an_approval_signed_with_someone_elses_key_refuses_apply(world):
    rid = _request(world, approve=False)
    texts = world.raw.texts()
    entry, text = build_entry(seq=2, prev=text_hash(texts[-1]), kind="approve", request=rid,
                              actor="bob", body={"level": "clerk", "comment": "ok"},
                              signer=world.signer("carol"))
    world.raw.add(entry, text)
    _refused(world, lambda svc: svc.apply(rid, world.signer("mike")), "seq 2", "claims actor 'bob'")


def test_a_rejection_relabelled_through_the_request_column_refuses_approve(world):
    rid = _request(world, approve=False)
    svc = world.svc()
    svc.reject(rid, "wrong invoice", world.signer("bob"))
    svc.ledger.close()
    with world.raw._conn() as c:            # the unsigned column: the rejection now 'belongs' elsewhere
        c.execute(world.raw._q("UPDATE opskit_correction_ledger SET request = ? WHERE seq = ?"),
                  ("CR-99", 2))
    _refused(world, lambda svc: svc.approve(rid, "ok", world.signer("carol")), "seq 2", "relabelled")
    _refused(world, lambda svc: svc.apply(rid, world.signer("mike")), "seq 2", "relabelled")


def test_a_deleted_rejection_is_caught_by_the_chain(world):
    rid = _request(world, approve=False)
    svc = world.svc()
    svc.reject(rid, "wrong invoice", world.signer("bob"))
    _e, other = svc.request("his", SQL, {"a": "1", "id": "44"}, "r", "", world.signer("alice"))
    svc.ledger.close()
    world.raw.delete(2)
    _refused(world, lambda svc: svc.approve(rid, "ok", world.signer("carol")), "seq 3",
             "does not link")
