"""The insurance database for permission tests, on the real PostgreSQL server.

``perms_pg`` (session scope) creates the cluster-wide group and login roles
of tests/fixtures/perms/trees.py (prefixed ``ins_`` / named after people
nobody else's tests use) and a database ``perms_insurance`` loaded with
tests/fixtures/perms/insurance.sql. ``perms_pg.entry(tmp_path)`` gives a
``perms.databases`` config entry (password in a 0600 file, never in the
DSN); ``with perms_pg.changed(do_sql, undo_sql):`` breaks something for one
test and puts it back afterwards (also when the test fails).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import pytest

from tests.fixtures.perms.trees import SCHEMA_SQL

DBNAME = "perms_insurance"
GROUP_ROLES = ("ins_dba", "ins_claims_ro", "ins_claims_rw", "ins_refund", "ins_benefit")
LOGIN_ROLES = {"he.ping": ["ins_dba"], "wu.xia": ["ins_claims_rw", "ins_refund"],
               "xuj": ["ins_claims_rw", "ins_benefit"], "ma.lin": ["ins_claims_ro"]}
FROZEN_ROLES = ("guo.qiang",)


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class PermsDB:
    server: object
    dbname: str = DBNAME

    def sql(self, text: str) -> str:
        return self.server.psql(text, self.dbname)

    def entry(self, tmp_path) -> dict:
        pw = os.path.join(os.fspath(tmp_path), "pg.password")
        with open(pw, "w") as fh:
            fh.write(self.server.password + "\n")
        os.chmod(pw, 0o600)
        return {"host": self.server.host, "port": self.server.port,
                "user": self.server.superuser, "dbname": self.dbname, "password_file": pw}

    def spec(self, tmp_path, name: str = "insurance"):
        from opskit.perms.postgres import DatabaseSpec
        return DatabaseSpec(name, **self.entry(tmp_path))

    @contextlib.contextmanager
    def changed(self, do_sql: str, undo_sql: str):
        self.sql(do_sql)
        try:
            yield
        finally:
            self.sql(undo_sql)


@pytest.fixture(scope="session")
def perms_pg(postgres):
    """The insurance database with its roles (see module doc)."""
    stmts = [f"CREATE ROLE {r} NOLOGIN" for r in GROUP_ROLES]
    stmts.append("GRANT ins_claims_ro TO ins_claims_rw")      # rw inherits ro (recursive)
    for login, groups in LOGIN_ROLES.items():
        stmts.append(f"CREATE ROLE {q(login)} LOGIN IN ROLE {', '.join(groups)}")
    for login in FROZEN_ROLES:
        stmts.append(f"CREATE ROLE {q(login)} NOLOGIN")
    postgres.psql(";\n".join(stmts) + ";")
    postgres.create_database(DBNAME)
    with open(SCHEMA_SQL, encoding="utf-8") as fh:
        postgres.psql(fh.read(), DBNAME)
    yield PermsDB(postgres)
    postgres.drop_database(DBNAME)
    roles = [*LOGIN_ROLES, *FROZEN_ROLES, *GROUP_ROLES]
    postgres.psql(";\n".join(f"DROP ROLE IF EXISTS {q(r)}" for r in roles) + ";", check=False)
