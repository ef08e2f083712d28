"""Generated PostgreSQL role graphs for the differential test of effective privileges.

``generate(seed, prefix)`` gives a Graph: SQL that creates cluster roles
``<prefix>NN`` (some NOINHERIT, one SUPERUSER, memberships with and without
ADMIN OPTION, members of pg_read_all_data / pg_write_all_data /
pg_execute_server_program) and, run in a fresh database the owner-to-be
(``graph.db_owner``) owns, schemas, tables, views, sequences, columns and
functions (some SECURITY DEFINER) with owners, grants to roles, to PUBLIC and to
pg_database_owner, revokes (PUBLIC's EXECUTE, an owner's own privilege) and
default privileges followed by objects created under them. The same seed
always gives the same graph. Statements are kept one per list item so a
disagreement can show the ones that touch its role and object.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

TABLE_PRIVS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
SEQ_PRIVS = ("USAGE", "SELECT", "UPDATE")
COL_PRIVS = ("SELECT", "INSERT", "UPDATE", "REFERENCES")
PREDEFINED = ("pg_read_all_data", "pg_write_all_data", "pg_execute_server_program")


@dataclass
class Graph:
    prefix: str
    roles: list[str]
    db_owner: str
    cluster_sql: list[str] = field(default_factory=list)   # run in any database
    db_sql: list[str] = field(default_factory=list)        # run in the graph's database

    def drop_sql(self) -> list[str]:
        return [f"DROP ROLE IF EXISTS {r}" for r in reversed(self.roles)]

    def mentioning(self, *names: str) -> list[str]:
        """The statements naming any of ``names`` (a disagreement's context)."""
        return [s for s in self.cluster_sql + self.db_sql if any(n in s for n in names)]


class _Gen:
    def __init__(self, seed: int, prefix: str, n_roles: int):
        self.r = random.Random(seed)
        self.g = Graph(prefix, [f"{prefix}{i:02d}" for i in range(n_roles)], "")
        self.g.db_owner = self.g.roles[5]

    def role(self) -> str:
        return self.r.choice(self.g.roles)

    def grantee(self) -> str:
        x = self.r.random()
        if x < 0.15:
            return "PUBLIC"
        if x < 0.2:
            return "pg_database_owner"
        return self.role()

    def some(self, items, k_max: int) -> list[str]:
        return self.r.sample(list(items), self.r.randint(1, min(k_max, len(items))))

    def roles_sql(self) -> None:
        out, roles = self.g.cluster_sql, self.g.roles
        for i, name in enumerate(roles):
            attrs = ["NOINHERIT" if self.r.random() < 0.25 else "INHERIT",
                     "LOGIN" if self.r.random() < 0.5 else "NOLOGIN"]
            if i == len(roles) - 1:
                attrs.append("SUPERUSER")
            out.append(f"CREATE ROLE {name} {' '.join(attrs)}")
        # memberships point to higher numbers: no cycles (the server refuses them)
        for i, member in enumerate(roles[:-2]):
            for _ in range(self.r.choice((0, 1, 1, 2, 2, 3))):
                group = roles[self.r.randint(i + 1, len(roles) - 2)]
                admin = " WITH ADMIN OPTION" if self.r.random() < 0.2 else ""
                out.append(f"GRANT {group} TO {member}{admin}")
        for pre in PREDEFINED:
            for _ in range(2):
                out.append(f"GRANT {pre} TO {roles[self.r.randint(10, len(roles) - 2)]}")

    def objects_sql(self) -> None:
        out = self.g.db_sql
        schemas = ["public", "s1", "s2", "s3"]
        for s in schemas[1:]:
            out.append(f"CREATE SCHEMA {s} AUTHORIZATION {self.role()}")
        for s in schemas:
            for _ in range(self.r.randint(0, 3)):
                out.append(f"GRANT {', '.join(self.some(('USAGE', 'CREATE'), 2))} ON SCHEMA "
                           f"{s} TO {self.grantee()}")
        if self.r.random() < 0.5:
            out.append("REVOKE USAGE ON SCHEMA s1 FROM PUBLIC")
        tables = []
        for i in range(10):
            t = f"{self.r.choice(schemas)}.t{i}"
            tables.append(t)
            out.append(f"CREATE TABLE {t} (a int, b text, c int)")
            out.append(f"ALTER TABLE {t} OWNER TO {self.role()}")
        for i in range(2):
            v = f"{self.r.choice(schemas)}.v{i}"
            out.append(f"CREATE VIEW {v} AS SELECT a, b FROM {self.r.choice(tables)}")
            out.append(f"ALTER VIEW {v} OWNER TO {self.role()}")
            tables.append(v)
        for t in tables:
            for _ in range(self.r.randint(0, 4)):
                out.append(f"GRANT {', '.join(self.some(TABLE_PRIVS, 3))} ON {t} TO "
                           f"{self.grantee()}")
            if self.r.random() < 0.4:
                cols = ", ".join(self.some(("a", "b", "c"), 2))
                out.append(f"GRANT {self.r.choice(COL_PRIVS)} ({cols}) ON {t} TO "
                           f"{self.grantee()}")
            if self.r.random() < 0.15:      # an owner without its own privilege
                out.append(f"DO $$ BEGIN EXECUTE format('REVOKE SELECT ON {t} FROM %I', "
                           f"(SELECT pg_get_userbyid(relowner) FROM pg_class "
                           f"WHERE oid = '{t}'::regclass)); END $$")
        for i in range(3):
            q = f"{self.r.choice(schemas)}.q{i}"
            out.append(f"CREATE SEQUENCE {q} OWNED BY NONE")
            out.append(f"ALTER SEQUENCE {q} OWNER TO {self.role()}")
            for _ in range(self.r.randint(0, 2)):
                out.append(f"GRANT {', '.join(self.some(SEQ_PRIVS, 2))} ON SEQUENCE {q} TO "
                           f"{self.grantee()}")
        self.functions_sql(schemas, tables)
        self.default_privileges_sql()
        for t in self.r.sample(tables[:10], 2):       # row-level security (collected only)
            out.append(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
            out.append(f"CREATE POLICY p_{t.split('.')[1]} ON {t} FOR SELECT TO "
                       f"{self.grantee()} USING (a > 0)")

    def functions_sql(self, schemas: list[str], tables: list[str]) -> None:
        out = self.g.db_sql
        for i in range(6):
            f = f"{self.r.choice(schemas)}.f{i}(x int)"
            definer = " SECURITY DEFINER" if self.r.random() < 0.5 else ""
            body = f"UPDATE {self.r.choice(tables[:10])} SET a = x"
            out.append(f"CREATE FUNCTION {f} RETURNS void LANGUAGE sql{definer} "
                       f"AS $$ {body} $$")
            out.append(f"ALTER FUNCTION {f} OWNER TO {self.role()}")
            if self.r.random() < 0.5:
                out.append(f"REVOKE EXECUTE ON FUNCTION {f} FROM PUBLIC")
            for _ in range(self.r.randint(0, 2)):
                out.append(f"GRANT EXECUTE ON FUNCTION {f} TO {self.grantee()}")

    def default_privileges_sql(self) -> None:
        """Future grants, then objects created under them by their creator."""
        out = self.g.db_sql
        creator = self.role()
        out.append(f"GRANT CREATE ON SCHEMA s2 TO {creator}")
        out.append(f"ALTER DEFAULT PRIVILEGES FOR ROLE {creator} IN SCHEMA s2 GRANT SELECT, "
                   f"INSERT ON TABLES TO {self.grantee()}")
        out.append(f"ALTER DEFAULT PRIVILEGES FOR ROLE {creator} REVOKE EXECUTE ON FUNCTIONS "
                   "FROM PUBLIC")
        out.append(f"ALTER DEFAULT PRIVILEGES FOR ROLE {creator} GRANT EXECUTE ON FUNCTIONS "
                   f"TO {self.role()}")
        out.append(f"SET ROLE {creator}")
        out.append("CREATE TABLE s2.future (a int, b text, c int)")
        out.append("CREATE FUNCTION s2.future_f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$")
        out.append("RESET ROLE")


def generate(seed: int, prefix: str, n_roles: int = 36) -> Graph:
    """A role graph and its objects (see module doc)."""
    gen = _Gen(seed, prefix, n_roles)
    gen.roles_sql()
    gen.objects_sql()
    return gen.g
