"""The documented PostgreSQL ledger hardening works (issue #17 item 7, R-AUD-1).

The ledger table is owned by a separate role; the writer opskit uses has INSERT and
SELECT only. The whole workflow (request, approvals, a race of appliers) runs as
that writer, and the writer can neither change nor remove entries nor grant itself
the right to.
"""
from __future__ import annotations

import uuid

import pytest

from opskit.corrections.ledger import TABLE
from opskit.corrections.verify import verify
from tests.harness.postgres import PsqlError
from tests.harness.corrections import approve_fully, make_sqlite_target, make_world

HARDEN = """
CREATE ROLE {owner} NOLOGIN;
CREATE TABLE opskit_correction_ledger (seq bigint PRIMARY KEY, request text NOT NULL,
                                       kind text NOT NULL, entry text NOT NULL);
CREATE INDEX opskit_correction_ledger_request ON opskit_correction_ledger (request);
ALTER TABLE opskit_correction_ledger OWNER TO {owner};
REVOKE ALL ON opskit_correction_ledger FROM PUBLIC;
GRANT INSERT, SELECT ON opskit_correction_ledger TO {writer};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
"""


@pytest.fixture
def hardened(tmp_path, postgres, postgres_db):
    tag = uuid.uuid4().hex[:8]
    owner, writer, pw = f"lowner_{tag}", f"lwriter_{tag}", f"pw-{tag}"
    postgres.create_role(writer, pw)
    postgres.psql(HARDEN.format(owner=owner, writer=writer), postgres_db)
    world = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"),
                       ledger=postgres.dsn_for(postgres_db, writer, pw))
    yield world, writer, pw
    postgres.psql(f"DROP TABLE IF EXISTS {TABLE}", postgres_db)
    postgres.psql(f"DROP ROLE IF EXISTS {owner}")


def test_an_insert_select_writer_runs_the_whole_workflow(hardened, opskit):
    world, _writer, _pw = hardened
    svc = world.svc()
    _e, st = svc.request("his", "UPDATE claims SET amount = :a WHERE id = :id", {"a": "350", "id": "43"},
                         "typo", "INC-1", world.signer("alice"))
    approve_fully(world, svc, st.id)
    svc.ledger.close()
    run = opskit("correct", "apply", st.id, env=world.env("mike"))
    assert run.exit_code == 0, run.output
    svc = world.svc()
    try:
        assert svc.state(st.id).state == "applied"
        assert verify(svc.ledger, svc.registry).ok
    finally:
        svc.ledger.close()


@pytest.mark.parametrize("sql", [f"UPDATE {TABLE} SET kind = 'reject'",
                                 f"DELETE FROM {TABLE}",
                                 f"TRUNCATE {TABLE}",
                                 f"DROP TABLE {TABLE}",
                                 f"ALTER TABLE {TABLE} ADD COLUMN x int",
                                 f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE"])
def test_the_writer_cannot_rewrite_or_remove_entries(hardened, postgres, postgres_db, sql):
    world, writer, pw = hardened
    svc = world.svc()
    svc.request("his", "UPDATE claims SET amount = :a WHERE id = :id", {"a": "350", "id": "43"},
                "typo", "INC-1", world.signer("alice"))
    svc.ledger.close()
    with pytest.raises(PsqlError, match="permission denied|must be owner"):
        postgres.psql(f"BEGIN; {sql}; COMMIT", postgres_db, user=writer, password=pw)
    assert postgres.rows(f"SELECT count(*) FROM {TABLE}", postgres_db) == [("1",)]


def test_the_writer_cannot_grant_itself_delete(hardened, postgres, postgres_db):
    _world, writer, pw = hardened
    # a non-owner without the grant option: PostgreSQL grants nothing (a warning, not an error)
    postgres.psql(f"GRANT DELETE, UPDATE, TRUNCATE ON {TABLE} TO {writer}", postgres_db, user=writer,
                  password=pw, check=False)
    got = postgres.rows(f"SELECT has_table_privilege('{writer}', '{TABLE}', 'DELETE'), "
                        f"has_table_privilege('{writer}', '{TABLE}', 'UPDATE'), "
                        f"has_table_privilege('{writer}', '{TABLE}', 'TRUNCATE'), "
                        f"has_table_privilege('{writer}', '{TABLE}', 'INSERT')", postgres_db)
    assert got == [("f", "f", "f", "t")]
