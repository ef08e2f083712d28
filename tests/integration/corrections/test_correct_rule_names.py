"""Risk rules match the table PostgreSQL resolves, not how its name is spelled (R-DAT-2, R-DAT-3).

On the real PostgreSQL fixture: ``prefunds`` is partitioned (``prefunds_2024``); a
rule on the parent covers a statement written against the partition. A rule naming
``public.settlements`` covers ``UPDATE settlements`` and the reverse. A rule table
that does not resolve on the target is a warning naming it. A request signed by a
client that froze a weaker requirement (an older opskit, or one that left the
resolved names out) is refused at apply, where the names are resolved again.
"""
from __future__ import annotations

import pytest

from opskit.corrections.actions import ApplyFailed
from tests.harness.corrections import approve_fully, make_postgres_world, pg_rows

DDL = """
CREATE TABLE prefunds (id integer NOT NULL, year integer NOT NULL, amount numeric(12,2) NOT NULL,
  PRIMARY KEY (id, year)) PARTITION BY LIST (year);
CREATE TABLE prefunds_2024 PARTITION OF prefunds FOR VALUES IN (2024);
INSERT INTO prefunds VALUES (1, 2024, 5.00);
CREATE VIEW v_prefunds_2024 AS SELECT id, year, amount FROM prefunds_2024 WHERE amount < 100;
"""
RULES = """\
  prefunds-parent:
    tables: [prefunds]
    levels: [clerk, section_head, leader]
    auditor: true
  settlements-qualified:
    tables: [public.settlements]
    approvals: 3
  claims-qualified:
    tables: [public.claims]
    auditor: true
  typo-rule:
    tables: [no_such_table]
    approvals: 2
"""
THREE_LEVELS = (["clerk", "section_head", "leader"], True)


@pytest.fixture
def world(tmp_path, postgres, postgres_db):
    w = make_postgres_world(tmp_path, postgres, postgres_db, DDL)
    w.rules.write_text(w.rules.read_text().replace("rules:\n", "rules:\n" + RULES, 1))
    return w


def _request(world, sql, params):
    svc = world.svc()
    _e, st = svc.request("his", sql, params, "amount keyed in wrong", "INC-3", world.signer("alice"))
    return svc, st


@pytest.mark.parametrize("table", ["prefunds", "prefunds_2024", "public.prefunds_2024", '"prefunds_2024"',
                                   "v_prefunds_2024"])     # through a view on the partition too
def test_a_partition_brings_its_parents_rule(world, table):
    svc, st = _request(world, f"UPDATE {table} SET amount = :a WHERE id = :id", {"a": "6", "id": "1"})
    assert "prefunds-parent" in st.requirement.rules
    assert (st.requirement.levels, st.requirement.auditor) == THREE_LEVELS
    approve_fully(world, svc, st.id)
    _e, done = svc.apply(st.id, world.signer("mike"))
    assert done.state == "applied"


@pytest.mark.parametrize("sql, rule, approvals, auditor", [
    ("UPDATE settlements SET paid = :a WHERE id = :id", "settlements-qualified", 3, False),
    ("UPDATE public.settlements SET paid = :a WHERE id = :id", "settlements-qualified", 3, False),
    ("UPDATE claims SET amount = :a WHERE id = :id", "claims-qualified", 1, True),
    ("UPDATE public.claims SET amount = :a WHERE id = :id", "claims-qualified", 1, True),
    # a rule spelled unqualified ([refunds]) covers the qualified spelling, as before
    ("UPDATE public.refunds SET amount = :a WHERE id = :id", "refunds-three-level", 3, True),
])
def test_a_rule_applies_whatever_the_schema_spelling(world, sql, rule, approvals, auditor):
    table = sql.split()[1].split(".")[-1]
    ids = {"settlements": "1", "claims": "43", "refunds": "7"}
    _svc, st = _request(world, sql, {"a": "7", "id": ids[table]})
    assert rule in st.requirement.rules
    assert (st.requirement.approvals, st.requirement.auditor) == (approvals, auditor)


def test_a_rule_table_that_does_not_resolve_is_a_warning(world, opskit):
    svc = world.svc()
    body = svc.prepare("his", "UPDATE claims SET amount = :a WHERE id = :id", {"a": "7", "id": "43"},
                       "typo", "", world.signer("alice"))
    assert any("'typo-rule'" in w and "'no_such_table'" in w for w in body.get("rule_warnings", []))
    sql = world.base / "fix.sql"
    sql.write_text("UPDATE claims SET amount = :a WHERE id = :id\n")
    run = opskit("correct", "request", "--target", "his", "--sql", sql, "--param", "a=7", "--param", "id=43",
                 "--reason", "typo", env=world.env("alice"))
    assert run.exit_code == 0, run.output
    warnings = [line for line in run.stderr.splitlines() if line.startswith("opskit: warning: ")]
    assert len(warnings) == 1 and "no_such_table" in warnings[0] and "typo-rule" in warnings[0]


def test_a_request_frozen_without_the_resolved_names_is_refused_at_apply(world):
    """As an opskit without name resolution signed it: the partition's parent rule was
    missed, one approval frozen. Apply resolves the names itself and refuses."""
    svc = world.svc()
    body = svc.prepare("his", "UPDATE prefunds_2024 SET amount = :a WHERE id = :id", {"a": "6", "id": "1"},
                       "typo", "", world.signer("alice"))
    body.pop("requester")
    body.pop("table_names", None)
    body["requirement"].update(approvals=1, levels=[], auditor=False, rules=[])
    entry = svc.ledger.append(None, lambda _e, seq: {"kind": "request", "actor": "alice", "body": body,
                                                      "request": f"CR-{seq}"}, world.signer("alice"))
    rid = entry["request"]
    svc.approve(rid, "ok", world.signer("bob"))
    with pytest.raises(ApplyFailed, match=r"public\.prefunds.*need '3 approvals, levels"):
        svc.apply(rid, world.signer("mike"))
    st = svc.state(rid)
    assert st.state == "failed" and st.outcome["stage"] == "rules"
    assert pg_rows(world.url, "SELECT amount FROM prefunds WHERE id = 1") == [(5,)]


TRIGGER = """
CREATE FUNCTION claims_copy() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  EXECUTE format('INSERT INTO %I VALUES ($1, 2024, $2)', 'prefunds_' || '2024') USING NEW.id, NEW.amount;
  RETURN NEW;
END $f$;
CREATE TRIGGER claims_copy AFTER UPDATE ON claims FOR EACH ROW EXECUTE FUNCTION claims_copy();
"""


def test_a_trigger_writing_to_a_partition_needs_the_parents_rule(world, postgres, postgres_db):
    """The trigger's SQL is built at run time, so the request cannot see the table; at
    apply it writes to prefunds_2024, whose parent's rule asks for more: refused."""
    postgres.psql(TRIGGER, postgres_db)
    svc, st = _request(world, "UPDATE claims SET amount = :a WHERE id = :id", {"a": "7", "id": "43"})
    assert "prefunds-parent" not in st.requirement.rules
    approve_fully(world, svc, st.id)
    with pytest.raises(ApplyFailed, match=r"triggers also change prefunds_2024 .*levels clerk"):
        svc.apply(st.id, world.signer("mike"))
    assert svc.state(st.id).outcome["stage"] == "triggers"
    assert pg_rows(world.url, "SELECT id FROM prefunds ORDER BY id") == [(1,)]
    assert pg_rows(world.url, "SELECT amount FROM claims WHERE id = 43") == [(300,)]
