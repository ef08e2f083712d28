"""Statement vetting, parameters, keys and risk rules of `opskit correct` (R-DAT-1, R-DAT-2, R-DAT-3)."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from decimal import Decimal

import pytest

from opskit.core.errors import EXIT_USAGE, ConfigError, OperationalError
import opskit.core.signing as keymod
from opskit.corrections.rulesfile import load_registry
from opskit.corrections.sqlcheck import (SqlRefused, build_statement, check_params, parse_statement,
                                         to_pyformat, typed_value)


@pytest.mark.parametrize("sql, reason", [
    ("UPDATE claims SET amount = 1 WHERE id = 1; DELETE FROM refunds WHERE id = 7", "2 statements"),
    ("UPDATE claims SET amount = 1 WHERE id = 1;;SELECT 1", "2 statements"),
    ("DROP TABLE claims", "DROP is refused"),
    ("ALTER TABLE claims ADD COLUMN x int", "ALTER is refused"),
    ("TRUNCATE refunds", "TRUNCATE is refused"),
    ("GRANT ALL ON claims TO mallory", "GRANT is refused"),
    ("CREATE TABLE x (a int)", "CREATE is refused"),
    ("UPDATE claims SET amount = 0", "without WHERE"),
    ("DELETE FROM refunds", "without WHERE"),
    ("UPDATE claims SET amount = 0 WHERE", "syntax error at end of input"),
    ("UPDATE claims c SET amount = s.paid FROM settlements s WHERE s.claim_id = c.id", "UPDATE ... FROM"),
    ("DELETE FROM refunds USING claims WHERE claims.id = refunds.claim_id", "DELETE ... USING"),
    ("UPDATE claims SET amount = 0 WHERE id = 1 RETURNING *", "RETURNING"),
    ("WITH x AS (DELETE FROM refunds WHERE id = 7 RETURNING *) SELECT 1", "WITH"),
    ("SELECT * FROM claims", "SELECT changes nothing"),
    ("INSERT INTO refunds (id) SELECT id FROM claims", "VALUES"),
    ("INSERT INTO refunds (id, claim_id, amount) VALUES (1, 2, 3) ON CONFLICT DO NOTHING", "ON CONFLICT"),
    ("INSERT INTO refunds VALUES (1, 2, 3, 'x')", "list its columns"),
    ("UPDATE claims, refunds SET amount = 0 WHERE id = 1", 'syntax error at or near ","'),
    ("UPDATE claims SET amount = ? WHERE id = 1", "named :parameters"),
    ("UPDATE claims SET status = 'x WHERE id = 1", "unterminated"),
    ("", "no SQL statement"),
    # PostgreSQL reads (x).f as f(x) (SQL probe finding 1); the server-side check also sees it
    ("UPDATE claims SET note = :n WHERE id = 1 AND (26786).pg_terminate_backend", "field selection"),
    ("UPDATE claims SET amount = 1 WHERE id = 1 AND (id).pg_cancel_backend", "field selection"),
    ("UPDATE claims SET note = ('s1'::regclass).nextval::text WHERE id = 1", "field selection"),
    ("UPDATE claims SET note = 'a' WHERE EXISTS (SELECT ('SELECT 1').ts_stat)", "field selection"),
    ("INSERT INTO refunds (id, reason) VALUES (1, (('x')).\"pg_sleep\")", "field selection"),
])
def test_refused_statements_name_the_reason(sql, reason):
    with pytest.raises(SqlRefused) as err:
        parse_statement(sql)
    assert reason in err.value.message
    assert err.value.exit_code == EXIT_USAGE


def test_semicolons_and_keywords_inside_strings_and_comments_do_not_count():
    stmt = parse_statement("UPDATE claims SET status = 'paid; DROP TABLE claims' -- no; really\n"
                           "WHERE id = :id /* ; */ ;")
    assert stmt.operation == "UPDATE" and stmt.table == "claims"
    assert stmt.params == ["id"]
    assert stmt.before_image_sql() == "SELECT * FROM claims WHERE id = :id"


def test_where_clause_keeps_operators_and_casts_intact():
    stmt = parse_statement("UPDATE public.claims AS c SET amount = amount * 1 "
                           "WHERE c.amount >= :min::numeric AND c.id <> 3")
    assert stmt.table == "public.claims"
    assert stmt.before_image_sql() == ("SELECT * FROM public.claims c WHERE c.amount >= :min::numeric "
                                       "AND c.id <> 3")
    assert to_pyformat(stmt.where) == "c.amount >= %(min)s::numeric AND c.id <> 3"


def test_subscripts_stay_allowed_and_parameters_reach_the_server_as_typed_literals():
    """Only field selection is refused statically, not subscripts; the probe function the
    server resolves holds each parameter as a literal of the type psycopg binds it as."""
    from opskit.corrections.sqlcheck import resolution_probe
    stmt = parse_statement("UPDATE claims SET status = (ARRAY['a', :s])[1] -- c\n"
                           "WHERE id = :id AND amount > :a AND insured_id <> :n AND id < :big")
    name, ddl = resolution_probe(stmt, {"s": "it's", "id": 42, "a": Decimal("1.50"), "n": None,
                                        "big": 2 ** 40})
    assert name.startswith("pg_temp.opskit_vet_")
    assert ddl == (f"CREATE FUNCTION {name}() RETURNS void LANGUAGE sql BEGIN ATOMIC "
                   "UPDATE claims SET status = (ARRAY['a',  'it''s' ])[1]  \n"
                   "WHERE id =  CAST('42' AS pg_catalog.int2)  AND amount >  "
                   "CAST('1.50' AS pg_catalog.numeric)  AND insured_id <>  NULL  AND id <  "
                   "CAST('1099511627776' AS pg_catalog.int8) ; END")


def test_subquery_in_where_is_allowed_and_insert_counts_tuples():
    stmt = parse_statement("DELETE FROM refunds WHERE claim_id IN (SELECT id FROM claims WHERE status = 'void')")
    assert stmt.operation == "DELETE"
    ins = parse_statement("INSERT INTO refunds (id, claim_id, amount) VALUES (1, 2, 3.5), (2, 2, 4)")
    assert ins.insert_rows == 2 and ins.before_image_sql() is None


def test_builder_parameterises_values_and_refuses_missing_where():
    sql, extra = build_statement("UPDATE", "claims", "id = :id", [("amount", "120.50")])
    assert sql == "UPDATE claims SET amount = :set_amount WHERE id = :id"
    assert extra == {"set_amount": "120.50"}
    with pytest.raises(SqlRefused, match="--where is required"):
        build_statement("UPDATE", "claims", "", [("amount", "1")])
    with pytest.raises(SqlRefused, match="--where is required"):
        build_statement("DELETE", "claims", None, [])
    with pytest.raises(SqlRefused, match="plain identifiers"):
        build_statement("UPDATE", "claims", "id = 1", [("amount = 0, status", "x")])
    with pytest.raises(SqlRefused, match="not a table name"):
        build_statement("UPDATE", "claims; DROP TABLE x", "id = 1", [("a", "1")])
    sql, _ = build_statement("INSERT", "refunds", None, [("id", "9"), ("amount", "1.5")])
    assert parse_statement(sql).insert_rows == 1


def test_typed_values_are_exact_and_parameters_must_match():
    assert typed_value("42") == 42 and isinstance(typed_value("42"), int)
    assert typed_value("120.50") == Decimal("120.50")
    assert typed_value("'42'") == "42"
    assert typed_value("null") is None
    assert typed_value("P-1002") == "P-1002"
    stmt = parse_statement("UPDATE claims SET amount = :a WHERE id = :id")
    with pytest.raises(SqlRefused, match=":id"):
        check_params(stmt, {"a": "1"})
    with pytest.raises(SqlRefused, match="not used"):
        check_params(stmt, {"a": "1", "id": "2", "extra": "3"})


# --- keys ---------------------------------------------------------------------------

def test_keygen_writes_a_private_0600_key_and_a_declarable_public_line(tmp_path):
    signer, line = keymod.generate(str(tmp_path / "k" / "id_ed25519"), comment="alice")
    mode = stat.S_IMODE(os.stat(signer.path).st_mode)
    assert mode == 0o600
    assert line.startswith("ssh-ed25519 AAAA") and line.endswith(" alice")
    assert keymod.parse_public_key(line) == signer.public_raw
    loaded = keymod.load_signer(signer.path)
    sig = loaded.sign(b"abc")
    assert keymod.verify_signature(signer.public_raw, sig, b"abc")
    assert not keymod.verify_signature(signer.public_raw, sig, b"abd")
    with pytest.raises(Exception, match="refusing to overwrite"):
        keymod.generate(signer.path)


def test_an_existing_openssh_ed25519_key_is_accepted_and_rsa_refused(tmp_path):
    ssh_keygen = shutil.which("ssh-keygen")
    assert ssh_keygen, "ssh-keygen is needed (openssh-client)"
    path = tmp_path / "id_ed25519"
    subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bob@host", "-f", str(path)], check=True)
    signer = keymod.load_signer(str(path))
    pub_line = (tmp_path / "id_ed25519.pub").read_text().strip()
    assert keymod.parse_public_key(pub_line) == signer.public_raw
    # the fingerprint matches what ssh-keygen prints
    out = subprocess.run([ssh_keygen, "-l", "-f", str(path) + ".pub"], capture_output=True, text=True).stdout
    assert signer.fingerprint in out
    rsa = tmp_path / "id_rsa"
    subprocess.run([ssh_keygen, "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(rsa)], check=True)
    with pytest.raises(OperationalError, match="needs an Ed25519 key"):
        keymod.load_signer(str(rsa))
    with pytest.raises(ValueError, match="ssh-ed25519"):
        keymod.parse_public_key((tmp_path / "id_rsa.pub").read_text())


def test_a_key_readable_by_others_or_encrypted_without_passphrase_is_refused(tmp_path, monkeypatch):
    signer, _ = keymod.generate(str(tmp_path / "k"))
    os.chmod(signer.path, 0o644)
    with pytest.raises(OperationalError, match="readable by others"):
        keymod.load_signer(signer.path)
    ssh_keygen = shutil.which("ssh-keygen")
    enc = tmp_path / "enc"
    subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", "s3cret-pass", "-f", str(enc)], check=True)
    with pytest.raises(OperationalError, match="encrypted") as err:
        keymod.load_signer(str(enc))
    assert "s3cret" not in str(err.value)
    monkeypatch.setenv(keymod.PASSPHRASE_ENV, "s3cret-pass")
    assert keymod.load_signer(str(enc)).public_raw


# --- rules ----------------------------------------------------------------------------

def _rules(tmp_path, text):
    path = tmp_path / "corrections.yaml"
    path.write_text(text)
    return load_registry(str(path))


def test_risk_rules_combine_levels_approvals_and_auditor(tmp_path):
    _s, key = keymod.generate(str(tmp_path / "a"))
    reg = _rules(tmp_path, f"""
targets:
  his: {{url: his.sqlite}}
operators:
  a: {{public_key: {key}, roles: [clerk]}}
rules:
  refunds:
    tables: [refunds, benefits]
    levels: [leader, clerk, section_head]
  many-rows:
    min_rows: 10
    approvals: 4
  audit-deletes:
    operations: [delete]
    auditor: true
default_approvals: 1
""")
    r = reg.requirement("his", "refunds", "UPDATE", 1)
    assert r.levels == ["clerk", "section_head", "leader"]          # R-DAT-3 order, whatever was written
    assert r.approvals == 3 and not r.auditor and r.rules == ["refunds"]
    r = reg.requirement("his", "public.refunds", "DELETE", 12)
    assert r.approvals == 4 and r.auditor and set(r.rules) == {"refunds", "many-rows", "audit-deletes"}
    r = reg.requirement("his", "claims", "UPDATE", 1)
    assert r.approvals == 1 and r.rules == [] and not r.levels
    assert reg.targets["his"].url == str(tmp_path / "his.sqlite")


@pytest.mark.parametrize("bad, message", [
    ("operators:\n  a: {public_key: ssh-rsa AAAAB3Nza, roles: [clerk]}\n", "ssh-ed25519"),
    ("operators:\n  a: {public_key: KEY, roles: [boss]}\n", "unknown role"),
    ("rules:\n  r: {levels: [clerk, clerk]}\n", "listed twice"),
    ("rules:\n  r: {targets: [nope]}\n", "unknown target"),
    ("rules:\n  r: {approvals: 0}\n", "at least 1"),
    ("operators:\n  a: {public_key: KEY}\n  b: {public_key: KEY}\n", "one key, one person"),
])
def test_bad_rules_files_name_file_line_and_key(tmp_path, bad, message):
    _s, key = keymod.generate(str(tmp_path / "a"))
    with pytest.raises(ConfigError) as err:
        _rules(tmp_path, bad.replace("KEY", key))
    assert message in err.value.message
    assert "corrections.yaml:" in err.value.message


def test_the_rules_file_example_in_the_guide_is_valid(tmp_path):
    import re
    from pathlib import Path
    guide = (Path(__file__).resolve().parents[3] / "docs" / "corrections.md").read_text(encoding="utf-8")
    block = guide.split("### 2. Write the rules file", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    counter = iter(range(100))
    text = re.sub(r"ssh-ed25519 AAAA\S*( \S+)?",
                  lambda m: keymod.generate(str(tmp_path / f"k{next(counter)}"))[1], block)
    reg = _rules(tmp_path, text)
    assert set(reg.operators) >= {"li.si", "wang.wu", "zhao.liu", "qian.qi", "sun.ba"}
    r = reg.requirement("his", "refunds", "UPDATE", 1)
    assert r.levels == ["clerk", "section_head", "leader"] and r.auditor
    assert reg.requirement("his", "claims", "DELETE", 1).approvals == 2
