"""The person's PostgreSQL login role on the configured databases (R-ACC-6).

For each database in ``perms.databases`` (handed in by the CLI as objects
with ``name``, ``conninfo()``, ``password()`` and ``describe()``), connected
as the configured (superuser) role:

1. found: does the login role exist, may it log in, its memberships, its
   backends;
2. done: ``ALTER ROLE ... NOLOGIN``, every membership revoked (a frozen
   person holds no roles, as the roster says for someone not active), its
   backends ended with ``pg_terminate_backend``;
3. verified: read again -- the role cannot log in, is a member of nothing,
   has no backend. The server enforces ``rolcanlogin``, so a login with the
   role is refused whatever password it had.

Identifiers are quoted with psycopg's ``sql.Identifier``; values are bound
parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opskit.core.optional import require

_STATE_SQL = """
SELECT r.rolcanlogin,
       COALESCE((SELECT array_agg(g.rolname ORDER BY g.rolname)
                 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                 WHERE m.member = r.oid), '{}'),
       (SELECT count(*) FROM pg_catalog.pg_stat_activity a WHERE a.usename = r.rolname)
FROM pg_catalog.pg_roles r WHERE r.rolname = %s"""


@dataclass
class DbFreeze:
    database: str
    where: str
    status: str = "ok"               # ok | failed
    error: str | None = None
    role: bool = False               # the login role exists
    found: dict = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and not self.remaining

    def as_dict(self) -> dict:
        return {"database": self.database, "where": self.where, "status": self.status,
                "error": self.error, "role": self.role, "found": self.found, "done": self.done,
                "remaining": self.remaining, "verified": self.ok}


def _state(cur, login: str) -> dict | None:
    cur.execute(_STATE_SQL, (login,))
    row = cur.fetchone()
    if row is None:
        return None
    return {"login": bool(row[0]), "member_of": list(row[1]), "backends": int(row[2])}


def freeze_database(spec: Any, login: str, dry_run: bool = False,
                    connect_timeout: float = 10.0) -> DbFreeze:
    """Freeze ``login``'s role on one database; never raises for database errors."""
    psycopg = require("psycopg", extra="postgres")
    sql = require("psycopg.sql", extra="postgres")
    out = DbFreeze(spec.name, spec.describe())
    kwargs: dict[str, Any] = {"connect_timeout": int(connect_timeout), "autocommit": True}
    try:
        pw = spec.password()
        if pw is not None:
            kwargs["password"] = pw
        with psycopg.connect(spec.conninfo(), **kwargs) as conn, conn.cursor() as cur:
            before = _state(cur, login)
            if before is None:
                return out
            out.role, out.found = True, before
            if dry_run:
                return out
            ident = sql.Identifier(login)
            if before["login"]:
                cur.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
                out.done.append("ALTER ROLE NOLOGIN")
            for group in before["member_of"]:
                cur.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), ident))
                out.done.append(f"REVOKE {group}")
            cur.execute("SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM "
                        "pg_catalog.pg_stat_activity WHERE usename = %s", (login,))
            ended = cur.fetchone()[0]
            if ended:
                out.done.append(f"ended {ended} backend(s)")
            out.remaining = _left(_state(cur, login), cur, login)
    except (psycopg.Error, OSError) as exc:
        out.status = "failed"
        out.error = f"database {spec.name} ({spec.describe()}): " + \
            (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return out


def _left(after: dict | None, cur, login: str) -> list[str]:
    """What still lets the role in (backends get a moment to go away)."""
    import time
    left = []
    if after is None:
        return left
    for _ in range(20):
        if not after["backends"]:
            break
        time.sleep(0.1)
        after = _state(cur, login) or after
    if after["login"]:
        left.append("role may still log in")
    left += [f"member of {g}" for g in after["member_of"]]
    if after["backends"]:
        left.append(f"{after['backends']} backend(s) still connected")
    return left
