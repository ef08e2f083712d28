"""Tampering with the correction ledger is detected and the first bad entry named (R-AUD-1, R-DAT-1).

Every kind from issue 10 -- edited, deleted, reordered, forged -- plus an
edit with the hash recomputed, an entry signed by a declared key that breaks
the workflow, and a cut-off tail (caught with a checkpoint). Run against the
SQLite ledger and the PostgreSQL ledger, tampering with the stored rows
directly as someone with database access would.
"""
from __future__ import annotations

import sqlite3

import psycopg
import pytest

from opskit.core.signing import generate
from opskit.corrections.ledger import TABLE, build_entry, decode, encode, entry_hash, text_hash
from opskit.corrections.verify import verify
from tests.harness.corrections import make_postgres_target, make_sqlite_target, make_world


class Raw:
    """Direct read/write of the ledger table, bypassing opskit."""

    def __init__(self, location: str):
        self.location = location

    def _conn(self):
        if self.location.startswith("postgresql://"):
            return psycopg.connect(self.location)
        return sqlite3.connect(self.location)

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.location.startswith("postgresql://") else sql

    def texts(self) -> list[str]:
        with self._conn() as c:
            return [r[0] for r in c.execute(f"SELECT entry FROM {TABLE} ORDER BY seq").fetchall()]

    def set(self, seq: int, text: str) -> None:
        with self._conn() as c:
            c.execute(self._q(f"UPDATE {TABLE} SET entry = ? WHERE seq = ?"), (text, seq))

    def delete(self, seq: int) -> None:
        with self._conn() as c:
            c.execute(self._q(f"DELETE FROM {TABLE} WHERE seq = ?"), (seq,))

    def add(self, entry: dict, text: str) -> None:
        with self._conn() as c:
            c.execute(self._q(f"INSERT INTO {TABLE} (seq, request, kind, entry) VALUES (?, ?, ?, ?)"),
                      (entry["seq"], entry["request"], entry["kind"], text))


@pytest.fixture(params=["sqlite", "postgres"])
def world(request, tmp_path):
    if request.param == "sqlite":
        w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))
    else:
        postgres = request.getfixturevalue("postgres")
        db = request.getfixturevalue("postgres_db")
        w = make_world(tmp_path, make_postgres_target(postgres, db), ledger=postgres.dsn_for(db))
    svc = w.svc()
    # two corrections, four entries each
    for rid_params in ({"a": "120.50", "id": "42"}, {"a": "90", "id": "41"}):
        _e, st = svc.request("his", "UPDATE claims SET amount = :a WHERE id = :id", rid_params,
                             "amount keyed in wrong", "INC-7", w.signer("alice"))
        svc.approve(st.id, "ok", w.signer("bob"))
        svc.apply(st.id, w.signer("mike"))
    svc.ledger.close()
    w.raw = Raw(w.ledger)
    assert len(w.raw.texts()) == 8
    return w


def _check(world, kind: str, seq: int, fragment: str, checkpoints=None):
    svc = world.svc()
    try:
        report = verify(svc.ledger, svc.registry, checkpoints)
    finally:
        svc.ledger.close()
    assert not report.ok
    assert report.kind_of_tampering == kind, report.describe()
    assert report.first_bad_seq == seq, report.describe()
    assert fragment in report.problem, report.describe()
    return report


def test_intact_ledger_verifies(world):
    svc = world.svc()
    report = verify(svc.ledger, svc.registry)
    assert report.ok and report.entries_checked == 8 and report.signatures_checked == 8
    assert report.requests == 2 and report.head["seq"] == 8


def test_an_edited_entry_is_named(world):
    texts = world.raw.texts()
    entry = decode(texts[0])
    entry["body"]["before"][0]["amount"] = "1.00"             # rewrite the before-image
    world.raw.set(1, encode(entry))
    _check(world, "edited", 1, "content does not match its hash")


def test_an_edit_with_the_hash_recomputed_fails_its_signature(world):
    texts = world.raw.texts()
    entry = decode(texts[1])                                    # bob's approval
    entry["body"]["comment"] = "I never checked this"
    entry["hash"] = entry_hash(entry)
    world.raw.set(2, encode(entry))
    _check(world, "forged", 2, "signature does not verify")


def test_a_deleted_entry_is_named(world):
    world.raw.delete(3)
    _check(world, "deleted", 4, "seq 3 missing")


def test_reordered_entries_are_named(world):
    texts = world.raw.texts()
    world.raw.set(2, texts[2])
    world.raw.set(3, texts[1])
    _check(world, "reordered", 3, "entries reordered")


def test_an_entry_forged_with_an_undeclared_key_is_named(world, tmp_path):
    texts = world.raw.texts()
    last = decode(texts[-1])
    mallory, _ = generate(str(tmp_path / "mallory"))
    entry, text = build_entry(seq=9, prev=text_hash(texts[-1]), kind="request", request="CR-9",
                              actor="dan", body={"x": 1}, signer=mallory)
    world.raw.add(entry, text)
    assert last["seq"] == 8
    _check(world, "forged", 9, "not declared for any operator")


def test_an_entry_claiming_someone_elses_name_is_named(world):
    texts = world.raw.texts()
    # bob (declared, clerk) signs an approval but writes 'dan' as the actor
    entry, text = build_entry(seq=9, prev=text_hash(texts[-1]), kind="approve", request="CR-1",
                              actor="dan", body={"level": "leader"}, signer=world.signer("bob"))
    world.raw.add(entry, text)
    _check(world, "forged", 9, "claims actor 'dan'")


def test_a_validly_signed_self_approval_written_behind_opskits_back_is_named(world):
    svc = world.svc()
    _e, st = svc.request("his", "UPDATE claims SET amount = 5 WHERE id = 44", {}, "r", "", world.signer("bob"))
    svc.ledger.close()
    texts = world.raw.texts()
    entry, text = build_entry(seq=10, prev=text_hash(texts[-1]), kind="approve", request=st.id,
                              actor="bob", body={"level": "clerk"}, signer=world.signer("bob"))
    world.raw.add(entry, text)
    _check(world, "workflow", 10, "may not approve it")


def test_a_cut_off_tail_is_caught_by_a_checkpoint(world):
    svc = world.svc()
    head = verify(svc.ledger, svc.registry).head
    svc.ledger.close()
    world.raw.delete(8)
    world.raw.delete(7)
    svc = world.svc()
    assert verify(svc.ledger, svc.registry).ok             # without a checkpoint: invisible (documented)
    svc.ledger.close()
    _check(world, "truncated", 7, "ledger truncated", checkpoints=[head])
