"""What an approver sees before anything is applied (issue #17 "Approver view", R-DAT-1..3).

On the real PostgreSQL fixture, with jsonb, numeric, bytea, a generated column, a
trigger (the commit-marker test's ``policy_claim``), and foreign keys ON DELETE
CASCADE / SET NULL: ``show`` and ``approve``
give a row diff of every row that will change -- old -> new for exactly the
columns whose value changes (computed read-only at request time and signed),
the cascaded rows (SET NULL: NULL as the new value) and the tables whose
triggers act only at apply; a failed apply keeps the database's SQLSTATE, which
``log`` shows; a preview edited in the ledger makes ``approve`` and ``verify``
refuse.
"""
from __future__ import annotations

import json

import pytest

from opskit.core.errors import EXIT_FINDINGS
from opskit.core.render.text import render
from opskit.corrections.actions import ApplyFailed
from opskit.corrections.ledger import decode, encode
from opskit.corrections.report import (approve_result, dry_run_result, log_result,
                                      request_result, row_diff, show_result)
from opskit.corrections.verify import LedgerTampered, verify
from tests.harness.corrections import approve_fully, make_postgres_target, make_world
from tests.integration.corrections.test_correct_cascades import FKS
from tests.integration.corrections.test_correct_commit_marker import SCHEMA
from tests.integration.corrections.test_correct_tamper import Raw

# policy_claim: jsonb, text[], bytea, a generated column, a BEFORE UPDATE trigger
MORE = r"""
ALTER TABLE policy_claim ADD COLUMN note text;
UPDATE policy_claim SET note = 'ok';
INSERT INTO policy_claim (id, amount, details, codes, received_at) VALUES
  (2, 200.00, '{"diagnosis": {"icd": "K21", "days": 1}}', '{C03}', '2026-03-02 10:00:00+08');
"""
UPDATE = ("UPDATE policy_claim SET amount = amount + :d, "
          "details = jsonb_set(details, '{diagnosis,days}', to_jsonb(:days)), "
          "scan = NULL, codes = codes, note = :note WHERE id = :id")


@pytest.fixture
def world(tmp_path, postgres, postgres_db):
    url = make_postgres_target(postgres, postgres_db)
    postgres.psql(FKS, postgres_db)
    postgres.psql(SCHEMA + MORE, postgres_db)
    w = make_world(tmp_path, url)
    w.raw = Raw(w.ledger)
    return w


def _signed_by_client(world, svc, change) -> str:
    """A request entry for ``UPDATE claims`` (id 43 to 350) whose body ``change``
    edits before alice signs it (an older or a modified client); its id."""
    body = svc.prepare("his", "UPDATE claims SET amount = :a WHERE id = :id", {"a": "350", "id": "43"},
                       "typo", "", world.signer("alice"))
    body.pop("requester")
    change(body)
    entry = svc.ledger.append(None, lambda _e, seq: {"kind": "request", "actor": "alice", "body": body,
                                                      "request": f"CR-{seq}"}, world.signer("alice"))
    return entry["request"]


def _changes(diff, request=None):
    return {(d["table"], d["row"], d["column"]): (d["old"], d["new"]) for d in diff
            if request is None or d["request"] == request}


def test_an_update_shows_old_to_new_for_exactly_the_changed_columns(world):
    svc = world.svc()
    _e, st = svc.request("his", UPDATE, {"d": "10.5", "days": "5", "note": "ok", "id": "1"},
                         "days keyed in wrong", "INC-1", world.signer("alice"))
    # stored in the signed request body, computed at request time
    assert st.history[0]["body"]["preview"]["computed"] == "request"
    changes = _changes(show_result(st).data["diff"])
    old_details = {"diagnosis": {"icd": "J45.1", "days": 3}, "rates": [1.5, 2], "note": None}
    new_details = {"diagnosis": {"icd": "J45.1", "days": 5}, "rates": [1.5, 2], "note": None}
    assert changes[("policy_claim", "id=1", "amount")] == ("100.00", "110.50")     # numeric, exact
    old, new = changes[("policy_claim", "id=1", "details")]
    assert (json.loads(old), json.loads(new)) == (old_details, new_details)        # jsonb
    assert changes[("policy_claim", "id=1", "scan")] == ("\\x00ff10", "NULL")      # to NULL
    # assigned but unchanged (codes = codes, note = 'ok') and unassigned columns: not listed
    listed = {c for (_t, _r, c) in changes}
    assert not listed & {"codes", "note", "id", "updated_at", "received_at"}
    # the generated column and the trigger are named: only the apply can tell their effect
    assert changes[("policy_claim", "(each row)", "amount_with_tax (generated column)")] == (
        "", "(known at apply)")
    assert ("policy_claim", "", "(triggers: policy_claim_bump)") in changes
    approve = svc.approve(st.id, "ok", world.signer("bob"))
    text = render(approve_result(*approve))
    assert "110.50" in text and "100.00" in text and "policy_claim_bump" in text
    assert "new values: computed read-only when the request was made" in text
    # after apply the diff is the real one: what the trigger bumped shows up too
    _e, done = svc.apply(st.id, world.signer("mike"))
    after = _changes(row_diff(done))
    assert after.get(("policy_claim", "id=1", "amount")) == ("100.00", "110.50"), after
    assert ("policy_claim", "id=1", "updated_at") in after
    assert not {c for (_t, _r, c) in after} & {"codes", "note", "id"}
    svc.ledger.close()


def test_a_null_becoming_a_value_and_a_row_left_as_it_is(world):
    svc = world.svc()
    _e, st = svc.request("his", "UPDATE policy_claim SET note = :n WHERE id IN (1, 2)", {"n": "ok"},
                         "fill in the note", "INC-2", world.signer("alice"))
    changes = _changes(row_diff(st))
    assert changes[("policy_claim", "id=2", "note")] == ("NULL", "ok")
    assert changes[("policy_claim", "id=1", "(no column changes)")] == ("", "")
    assert ("policy_claim", "id=1", "note") not in changes
    svc.ledger.close()


def test_a_delete_shows_the_cascaded_rows_and_set_null_as_the_new_value(world):
    svc = world.svc()
    _e, st = svc.request("his", "DELETE FROM claims WHERE id = :id", {"id": "41"}, "duplicate claim",
                         "INC-5", world.signer("alice"))
    diff = show_result(st).data["diff"]
    tables = {(d["table"], d["row"]): d for d in diff}
    assert tables[("claims", "41")]["column"] == "(row deleted)"
    assert "P-1001" in tables[("claims", "41")]["old"]
    for table, row in (("refunds", "7"), ("claim_items", "1"), ("claim_items", "2"),
                       ("item_checks", "1")):
        assert tables[(table, row)]["column"].startswith("(row deleted by ")
        assert "ON DELETE CASCADE" in tables[(table, row)]["column"]
    note = [d for d in diff if d["table"] == "claim_notes"]
    assert len(note) == 1 and note[0]["row"] == "1" and note[0]["column"].startswith("claim_id (by ")
    assert "SET NULL" in note[0]["column"] and (note[0]["old"], note[0]["new"]) == ("41", "NULL")
    # rows the cascade does not reach are not listed
    assert ("claim_items", "3") not in tables and ("claim_notes", "2") not in tables
    svc.ledger.close()


def test_a_request_recorded_without_a_preview_gets_one_computed_at_show_time(world):
    svc = world.svc()
    rid = _signed_by_client(world, svc, lambda body: body.pop("preview"))   # as an older opskit did
    st = svc.state(rid)
    assert st.preview is None
    live = svc.preview(st)
    assert live["computed"] == "show"
    result = show_result(st, live)
    assert _changes(result.data["diff"])[("claims", "id=43", "amount")] == ("300.00", "350.00")
    assert any("computed now, read-only" in m and "not what the requester signed" in m
               for m in result.messages)
    # computing it changed nothing
    assert svc.state(st.id).state == "pending"
    svc.ledger.close()


def test_log_shows_the_sqlstate_and_the_database_message_of_a_failed_apply(world, postgres, postgres_db):
    svc = world.svc()
    _e, st = svc.request("his", "UPDATE claims SET amount = :a WHERE id = :id", {"a": "350", "id": "43"},
                         "typo", "INC-8", world.signer("alice"))
    approve_fully(world, svc, st.id)
    # a constraint added after approval (its name carries a terminal escape)
    postgres.psql("ALTER TABLE claims ADD CONSTRAINT \"small\x1b[2J\" CHECK (amount < 320) NOT VALID",
                  postgres_db)
    with pytest.raises(ApplyFailed) as err:
        svc.apply(st.id, world.signer("mike"))
    assert err.value.exit_code == EXIT_FINDINGS
    failed = svc.state(st.id)
    assert failed.outcome["sqlstate"] == "23514"
    row = log_result(svc.all_states(), None).data[0]
    assert "SQLSTATE 23514" in row["failure"] and "violates check constraint" in row["failure"]
    text = render(log_result(svc.all_states(), None))
    assert "SQLSTATE 23514" in text and "\x1b" not in text and "\\x1b" in text
    svc.ledger.close()


def test_a_preview_edited_in_the_ledger_makes_approve_and_verify_refuse(world):
    svc = world.svc()
    _e, st = svc.request("his", "UPDATE claims SET amount = :a WHERE id = :id", {"a": "350", "id": "43"},
                         "typo", "INC-9", world.signer("alice"))
    assert verify(svc.ledger, svc.registry).ok                           # the control
    svc.ledger.close()
    entry = decode(world.raw.texts()[0])
    entry["body"]["preview"]["rows"][0]["new"]["amount"] = "30.00"      # make it look harmless
    world.raw.set(1, encode(entry))
    svc = world.svc()
    with pytest.raises(LedgerTampered) as err:
        svc.approve(st.id, "ok", world.signer("bob"))
    assert "seq 1" in err.value.message
    assert not verify(svc.ledger, svc.registry).ok
    assert len(world.raw.texts()) == 1                                   # nothing appended
    svc.ledger.close()


def test_a_preview_signed_by_a_modified_client_for_other_rows_is_refused(world):
    svc = world.svc()

    def nothing_changes(body):          # what a modified client signs
        body["preview"]["rows"][0]["old"]["amount"] = "350.00"
    rid = _signed_by_client(world, svc, nothing_changes)
    with pytest.raises(LedgerTampered, match="previewed rows .* are not the rows of its before-image"):
        svc.approve(rid, "ok", world.signer("bob"))
    assert len(world.raw.texts()) == 1
    svc.ledger.close()


def test_the_requester_sees_the_diff_the_approvers_will_see(world):
    """``request --dry-run`` and ``request`` print the same row diff as ``show``: the
    requester checks what they are about to sign (only the changed columns)."""
    svc = world.svc()
    params = {"d": "1", "days": "4", "note": "ok", "id": "1"}
    body = svc.prepare("his", UPDATE, params, "rounding", "", world.signer("alice"))
    dry = dry_run_result(body)
    assert _changes(dry.data["diff"])[("policy_claim", "id=1", "amount")] == ("100.00", "101.00")
    assert "101.00" in render(dry) and "row diff" in render(dry)
    entry, st = svc.request("his", UPDATE, params, "rounding", "", world.signer("alice"))
    recorded = request_result(entry, st)
    assert _changes(recorded.data["diff"]) == _changes(show_result(st).data["diff"]) == \
        _changes(dry.data["diff"])
    # days 3 -> 4 changes details; note 'ok' -> 'ok' does not
    listed = {c for (_t, _r, c) in _changes(recorded.data["diff"])}
    assert "details" in listed and "note" not in listed
    svc.ledger.close()
