"""Shared set-up for the `opskit correct` tests (no tests here).

An insurance schema (claims, settlements, refunds) on real SQLite or the real
PostgreSQL fixture, six people with Ed25519 keys and roles, and a rules file:
refunds need the three-level chain clerk -> section head -> leader plus an
audit supervisor sign-off (R-DAT-2, R-DAT-3); everything else one approver.
"""
from __future__ import annotations

import sqlite3
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from opskit.core.signing import generate, load_signer
from opskit.corrections.ledger import open_ledger
from opskit.corrections.rulesfile import load_registry
from opskit.corrections.actions import Context, Corrections

PEOPLE = {
    "alice": ["requester"],              # business clerk who raises corrections
    "bob": ["clerk"],                    # first-level reviewer
    "carol": ["section_head"],
    "dan": ["leader"],
    "audrey": ["auditor"],               # audit (稽核) department supervisor
    "mike": ["maintainer"],              # designated system maintainer
    "max": ["maintainer"],               # a second maintainer (for the race)
}

SCHEMA_SQL = [
    "CREATE TABLE claims (id INTEGER PRIMARY KEY, insured_id TEXT NOT NULL, amount NUMERIC(12,2) NOT NULL, "
    "status TEXT NOT NULL)",
    "CREATE TABLE settlements (id INTEGER PRIMARY KEY, claim_id INTEGER NOT NULL, paid NUMERIC(12,2) NOT NULL, "
    "settled_on TEXT NOT NULL)",
    "CREATE TABLE refunds (id INTEGER PRIMARY KEY, claim_id INTEGER NOT NULL, amount NUMERIC(12,2) NOT NULL, "
    "reason TEXT)",
]
DATA_SQL = [
    "INSERT INTO claims VALUES (41, 'P-1001', 88.00, 'settled')",
    "INSERT INTO claims VALUES (42, 'P-1002', 1205.00, 'settled')",
    "INSERT INTO claims VALUES (43, 'P-1003', 300.00, 'open')",
    "INSERT INTO claims VALUES (44, 'P-1003', 310.00, 'open')",
    "INSERT INTO settlements VALUES (1, 42, 1205.00, '2026-10-01')",
    "INSERT INTO refunds VALUES (7, 41, 88.00, 'duplicate payment')",
]


def rules_yaml(keys: dict[str, str], target_url: str, extra: str = "") -> str:
    ops = "\n".join(f"  {name}:\n    public_key: {keys[name]}\n    roles: [{', '.join(roles)}]"
                    for name, roles in PEOPLE.items())
    return textwrap.dedent(f"""\
        targets:
          his:
            url: {target_url}
            description: test insurance database
        operators:
        """) + ops + "\n" + textwrap.dedent("""\
        rules:
          refunds-three-level:
            tables: [refunds]
            levels: [clerk, section_head, leader]
            auditor: true
          big-claims:
            tables: [claims]
            min_rows: 2
            approvals: 2
        default_approvals: 1
        max_rows: 100
        """) + extra


@dataclass
class World:
    base: Path
    config: Path
    rules: Path
    ledger: str
    target_url: str
    keys: dict[str, str] = field(default_factory=dict)     # name -> private key path
    public: dict[str, str] = field(default_factory=dict)   # name -> public key line

    def svc(self, ledger: str | None = None) -> Corrections:
        return Corrections(open_ledger(ledger or self.ledger), load_registry(str(self.rules)), 5.0,
                           Context("tester", "testhost"))

    def signer(self, name: str):
        return load_signer(self.keys[name])

    def env(self, name: str | None = None) -> dict:
        env = {"OPSKIT_CONFIG": str(self.config), "OPSKIT_HOME": str(self.base / "home")}
        if name:
            env["OPSKIT_CORRECTIONS_KEY"] = self.keys[name]
        return env


def make_keys(base: Path) -> tuple[dict, dict]:
    keys, public = {}, {}
    kdir = base / "keys"
    kdir.mkdir(mode=0o700, exist_ok=True)
    for name in PEOPLE:
        path = kdir / name
        _signer, line = generate(str(path), comment=name)
        keys[name], public[name] = str(path), line
    return keys, public


def make_sqlite_target(path: Path) -> str:
    conn = sqlite3.connect(path)
    for sql in SCHEMA_SQL + DATA_SQL:
        conn.execute(sql)
    conn.commit()
    conn.close()
    return str(path)


def make_postgres_target(postgres, db: str) -> str:
    postgres.psql(";\n".join(SCHEMA_SQL + DATA_SQL) + ";", db)
    return postgres.dsn_for(db)


def make_postgres_world(base: Path, postgres, db: str, ddl: str = "") -> "World":
    """A world on the PostgreSQL fixture's database ``db`` (schema, data, then ``ddl``);
    ``world.url`` is the target's URL."""
    url = make_postgres_target(postgres, db)
    if ddl:
        postgres.psql(ddl, db)
    world = make_world(base, url)
    world.url = url
    return world


def pg_rows(url: str, sql: str) -> list[tuple]:
    """The rows of ``sql`` on ``url``, as tuples."""
    import psycopg
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def make_world(base: Path, target_url: str, ledger: str | None = None, extra_rules: str = "",
               extra_config: str | None = None) -> World:
    """A corrections world. ``extra_config`` is appended to opskit.yaml; by default the
    R-SEC-2 gate of 'correct apply' is off (tested in test_highrisk_cli)."""
    keys, public = make_keys(base)
    rules = base / "corrections.yaml"
    rules.write_text(rules_yaml(public, target_url, extra_rules), encoding="utf-8")
    ledger = ledger or str(base / "ledger.sqlite")
    config = base / "opskit.yaml"
    extra = "incidents:\n  high_risk_operations: []\n" if extra_config is None else extra_config
    config.write_text(f"corrections:\n  ledger: {ledger}\n  rules_file: {rules}\n  lock_timeout: 5.0\n"
                      + extra, encoding="utf-8")
    return World(base, config, rules, ledger, target_url, keys, public)


def sqlite_rows(path: str, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def approve_fully(world: World, svc: Corrections, rid: str) -> None:
    """Sign every level the request needs, in order, by the right people."""
    st = svc.state(rid)
    if st.requirement.levels:
        for name in ("bob", "carol", "dan")[: len(st.requirement.levels)]:
            svc.approve(rid, "checked", world.signer(name))
    else:
        for name in ("bob", "carol", "dan")[: st.requirement.approvals]:
            svc.approve(rid, "checked", world.signer(name))
    if st.requirement.auditor:
        svc.approve(rid, "supervised", world.signer("audrey"))
