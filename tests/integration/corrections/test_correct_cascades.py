"""Cascades are part of the change: images, risk rules, apply-time check, RLS (issue #17 item 4).

On the real PostgreSQL fixture: ``refunds`` and ``claim_items`` reference ``claims``
ON DELETE CASCADE, ``claim_notes`` ON DELETE SET NULL. A one-row delete on ``claims``
records every cascaded row in the request, needs the approvals of every table it
reaches (refunds: three levels and the auditor, R-DAT-3), and is refused at apply
when the cascade would now change other rows than were approved. A table the
statement can reach whose rows RLS hides from the correction role is a refusal.
"""
from __future__ import annotations

import uuid

import psycopg
import pytest

from opskit.corrections.ledger import Refused
from opskit.corrections.sqlcheck import SqlRefused
from tests.harness.corrections import approve_fully, make_postgres_target, make_world

FKS = """
ALTER TABLE refunds ADD FOREIGN KEY (claim_id) REFERENCES claims (id) ON DELETE CASCADE;
CREATE TABLE claim_items (id integer PRIMARY KEY,
  claim_id integer NOT NULL REFERENCES claims (id) ON DELETE CASCADE, code text NOT NULL);
CREATE TABLE claim_notes (id integer PRIMARY KEY,
  claim_id integer REFERENCES claims (id) ON DELETE SET NULL, note text);
CREATE TABLE item_checks (id integer PRIMARY KEY,
  item_id integer NOT NULL REFERENCES claim_items (id) ON DELETE CASCADE);
INSERT INTO claim_items VALUES (1, 41, 'X1'), (2, 41, 'X2'), (3, 44, 'X3'), (4, 42, 'X4');
INSERT INTO claim_notes VALUES (1, 41, 'called'), (2, 42, 'ok');
INSERT INTO item_checks VALUES (1, 2);
"""
DELETE = "DELETE FROM claims WHERE id = :id"


@pytest.fixture
def world(tmp_path, postgres, postgres_db):
    url = make_postgres_target(postgres, postgres_db)
    postgres.psql(FKS, postgres_db)
    w = make_world(tmp_path, url)
    w.url = url
    return w


def _count(url, sql):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def test_a_delete_records_every_cascaded_row_and_needs_every_tables_approvals(world):
    svc = world.svc()
    _e, st = svc.request("his", DELETE, {"id": "41"}, "duplicate claim", "INC-5", world.signer("alice"))
    effects = {(e["table"], e["operation"], e["via"].split(" ", 1)[1]): sorted(r["id"] for r in e["rows"])
               for e in st.effects}
    assert effects == {("refunds", "DELETE", "ON DELETE CASCADE"): [7],
                       ("claim_items", "DELETE", "ON DELETE CASCADE"): [1, 2],
                       ("item_checks", "DELETE", "ON DELETE CASCADE"): [1],
                       ("claim_notes", "UPDATE", "ON DELETE SET NULL"): [1]}
    # the approver sees them
    from opskit.corrections.report import review_lines, show_result
    assert any(line.startswith("cascades: ") and "1 row(s) of refunds" in line for line in review_lines(st))
    assert any((t.title or "").startswith("cascade: DELETE refunds") for t in show_result(st).tables)
    # the cascade to refunds brings the refunds rule: three levels and the auditor
    assert st.requirement.levels == ["clerk", "section_head", "leader"] and st.requirement.auditor
    svc.approve(st.id, "ok", world.signer("bob"))
    with pytest.raises(Refused, match="not approved"):
        svc.apply(st.id, world.signer("mike"))              # one approval is not enough
    assert _count(world.url, "SELECT count(*) FROM refunds") == 1
    for name, role in (("carol", None), ("dan", None), ("audrey", None)):
        svc.approve(st.id, "ok", world.signer(name), role)
    _e, done = svc.apply(st.id, world.signer("mike"))
    assert done.state == "applied"
    assert _count(world.url, "SELECT count(*) FROM refunds") == 0
    assert _count(world.url, "SELECT count(*) FROM claim_items WHERE claim_id = 41") == 0
    assert _count(world.url, "SELECT count(*) FROM claim_notes WHERE claim_id IS NULL") == 1
    # the export's row diff lists the cascaded rows with the constraint that removes them
    from opskit.corrections.report import row_diff
    diff = {(d["table"], d["column"].split(" by ")[0]) for d in row_diff(done)}
    assert diff == {("claims", "(row deleted)"), ("refunds", "(row deleted"),
                    ("claim_items", "(row deleted"), ("item_checks", "(row deleted"),
                    ("claim_notes", "claim_id (by claim_notes_claim_id_fkey ON DELETE SET NULL)")}
    svc.ledger.close()


def test_a_delete_without_a_refund_needs_only_the_claims_rules(world):
    svc = world.svc()
    _e, st = svc.request("his", DELETE, {"id": "44"}, "entered twice", "INC-6", world.signer("alice"))
    assert [(e["table"], len(e["rows"])) for e in st.effects] == [("claim_items", 1)]
    assert not st.requirement.levels and not st.requirement.auditor and st.requirement.approvals == 1
    svc.ledger.close()


def test_a_cascade_that_grew_since_approval_is_refused_at_apply(world, postgres, postgres_db):
    svc = world.svc()
    _e, st = svc.request("his", DELETE, {"id": "44"}, "entered twice", "INC-6", world.signer("alice"))
    approve_fully(world, svc, st.id)
    # a refund arrives for the claim after the one approval: it would vanish unapproved
    postgres.psql("INSERT INTO refunds VALUES (8, 44, 10.00, 'late')", postgres_db)
    from opskit.corrections.actions import ApplyFailed
    with pytest.raises(ApplyFailed, match="cascades change differ.*refunds"):
        svc.apply(st.id, world.signer("mike"))
    assert _count(world.url, "SELECT count(*) FROM claims WHERE id = 44") == 1
    assert _count(world.url, "SELECT count(*) FROM refunds WHERE id = 8") == 1
    assert svc.state(st.id).outcome["stage"] == "cascade"
    svc.ledger.close()


def test_rows_hidden_by_rls_on_a_reachable_table_are_a_refusal(tmp_path, postgres, postgres_db):
    url = make_postgres_target(postgres, postgres_db)
    postgres.psql(FKS, postgres_db)
    role, pw = "corr_" + uuid.uuid4().hex[:8], "pw-" + uuid.uuid4().hex[:8]
    postgres.create_role(role, pw)
    postgres.psql(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}; "
                  f"GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; "
                  "ALTER TABLE item_checks ENABLE ROW LEVEL SECURITY", postgres_db)
    world = make_world(tmp_path, postgres.dsn_for(postgres_db, role, pw))
    svc = world.svc()
    with pytest.raises(SqlRefused, match="item_checks has row-level security"):
        svc.request("his", DELETE, {"id": "44"}, "entered twice", "INC-6", world.signer("alice"))
    # a table the statement cannot reach does not matter
    _e, st = svc.request("his", "UPDATE claims SET status = :s WHERE id = :id", {"s": "closed", "id": "44"},
                         "closed", "INC-7", world.signer("alice"))
    assert st.effects == []
    # RLS switched on after approval: the apply refuses too, nothing deleted
    postgres.psql("ALTER TABLE item_checks DISABLE ROW LEVEL SECURITY", postgres_db)
    _e, st = svc.request("his", DELETE, {"id": "44"}, "entered twice", "INC-8", world.signer("alice"))
    approve_fully(world, svc, st.id)
    postgres.psql("ALTER TABLE item_checks ENABLE ROW LEVEL SECURITY", postgres_db)
    from opskit.corrections.actions import ApplyFailed
    with pytest.raises(ApplyFailed, match="item_checks has row-level security"):
        svc.apply(st.id, world.signer("mike"))
    assert _count(url, "SELECT count(*) FROM claims WHERE id = 44") == 1
    svc.ledger.close()


VIEWS = """
CREATE VIEW v_refund_pending AS SELECT * FROM refunds WHERE reason IS NOT NULL;
CREATE VIEW v_refund_big AS SELECT * FROM v_refund_pending WHERE amount > 50;
CREATE VIEW v_claim_refund AS SELECT r.id, r.amount, c.status FROM refunds r JOIN claims c
  ON c.id = r.claim_id;
CREATE VIEW v_claims_instead AS SELECT * FROM claims;
CREATE FUNCTION v_claims_write() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN UPDATE refunds SET amount = 0; RETURN NEW; END $$;
CREATE TRIGGER v_claims_write INSTEAD OF UPDATE ON v_claims_instead
  FOR EACH ROW EXECUTE FUNCTION v_claims_write();
"""


@pytest.mark.parametrize("view", ["v_refund_pending", "v_refund_big"])
def test_an_updatable_view_brings_its_base_tables_rules(world, postgres, postgres_db, view):
    postgres.psql(VIEWS, postgres_db)
    svc = world.svc()
    _e, st = svc.request("his", f"UPDATE {view} SET amount = :a WHERE id = :id", {"a": "80", "id": "7"},
                         "wrong amount", "INC-9", world.signer("alice"))
    assert st.requirement.levels == ["clerk", "section_head", "leader"] and st.requirement.auditor
    body = st.history[0]["body"]
    assert body["base_tables"][-1] == "refunds"
    svc.approve(st.id, "ok", world.signer("bob"))
    with pytest.raises(Refused, match="not approved"):
        svc.apply(st.id, world.signer("mike"))
    svc.ledger.close()


@pytest.mark.parametrize("view, why", [("v_claim_refund", "reads 2 relations"),
                                       ("v_claims_instead", "INSTEAD OF triggers")])
def test_a_view_without_one_resolvable_base_is_refused(world, postgres, postgres_db, view, why):
    postgres.psql(VIEWS, postgres_db)
    svc = world.svc()
    with pytest.raises(SqlRefused, match=why):
        svc.request("his", f"UPDATE {view} SET status = :s WHERE id = :id", {"s": "x", "id": "41"},
                    "typo", "INC-9", world.signer("alice"))
    assert _count(world.url, "SELECT count(*) FROM refunds WHERE amount = 0") == 0
    svc.ledger.close()


TRIGGERS = """
CREATE TABLE claim_history (id serial PRIMARY KEY, claim_id integer, old_amount numeric(12,2),
  new_amount numeric(12,2));
CREATE FUNCTION claims_history() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  INSERT INTO claim_history (claim_id, old_amount, new_amount) VALUES (OLD.id, OLD.amount, NEW.amount);
  RETURN NEW; END $$;
CREATE TRIGGER claims_history AFTER UPDATE OF amount ON claims FOR EACH ROW
  EXECUTE FUNCTION claims_history();
CREATE FUNCTION claims_refund_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  UPDATE refunds SET amount = NEW.amount WHERE claim_id = NEW.id; RETURN NEW; END $$;
CREATE FUNCTION claims_hidden_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
  EXECUTE format('UPDATE %I SET reason = $1 WHERE claim_id = $2', 'ref' || 'unds')
    USING NEW.status, NEW.id; RETURN NEW; END $$;
"""
UPDATE_AMOUNT = ("UPDATE claims SET amount = :a WHERE id = :id", {"a": "90", "id": "41"})
UPDATE_STATUS = ("UPDATE claims SET status = :s WHERE id = :id", {"s": "reopened", "id": "41"})


def test_what_triggers_write_is_recorded_in_the_applied_entry(world, postgres, postgres_db):
    postgres.psql(TRIGGERS, postgres_db)
    svc = world.svc()
    _e, st = svc.request("his", *UPDATE_AMOUNT, "typo", "INC-10", world.signer("alice"))
    assert st.history[0]["body"]["trigger_tables"] == ["claim_history"]
    assert st.requirement.approvals == 1 and not st.requirement.auditor
    approve_fully(world, svc, st.id)
    _e, done = svc.apply(st.id, world.signer("mike"))
    side = done.outcome["trigger_effects"]
    assert [(e["table"], e["inserted"], e["updated"], e["deleted"]) for e in side] == [
        ("claim_history", 1, 0, 0)]
    assert [(r["claim_id"], r["old_amount"], r["new_amount"]) for r in side[0]["rows"]] == [
        (41, "88.00", "90.00")]
    svc.ledger.close()


def _with_trigger(world, postgres, postgres_db, function: str, change: tuple):
    """Install TRIGGERS plus an AFTER UPDATE trigger on claims running ``function``;
    request ``change``: (service, request state)."""
    postgres.psql(TRIGGERS + f"CREATE TRIGGER {function} AFTER UPDATE ON claims FOR EACH ROW "
                  f"EXECUTE FUNCTION {function}();", postgres_db)
    svc = world.svc()
    _e, st = svc.request("his", *change, "typo", "INC-11", world.signer("alice"))
    return svc, st


def test_a_trigger_named_table_brings_its_rules_at_request_time(world, postgres, postgres_db):
    svc, st = _with_trigger(world, postgres, postgres_db, "claims_refund_sync", UPDATE_AMOUNT)
    assert "refunds" in st.history[0]["body"]["trigger_tables"]
    assert st.requirement.levels == ["clerk", "section_head", "leader"] and st.requirement.auditor
    approve_fully(world, svc, st.id)
    _e, done = svc.apply(st.id, world.signer("mike"))
    assert ("refunds", 0, 1, 0) in [(e["table"], e["inserted"], e["updated"], e["deleted"])
                                    for e in done.outcome["trigger_effects"]]
    svc.ledger.close()


def test_a_trigger_writing_a_table_it_does_not_name_is_caught_at_apply(world, postgres, postgres_db):
    svc, st = _with_trigger(world, postgres, postgres_db, "claims_hidden_sync", UPDATE_STATUS)
    assert st.requirement.approvals == 1 and not st.requirement.auditor    # dynamic SQL: not seen
    approve_fully(world, svc, st.id)
    from opskit.corrections.actions import ApplyFailed
    with pytest.raises(ApplyFailed, match="triggers also change refunds"):
        svc.apply(st.id, world.signer("mike"))
    assert _count(world.url, "SELECT count(*) FROM claims WHERE status = 'reopened'") == 0
    assert _count(world.url, "SELECT count(*) FROM refunds WHERE reason = 'reopened'") == 0
    assert svc.state(st.id).outcome["stage"] == "triggers"
    svc.ledger.close()
