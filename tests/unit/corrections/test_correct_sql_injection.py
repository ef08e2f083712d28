"""Injection corpus for correction statements (#17 item 1, R-DAT-2).

Every quoting form PostgreSQL has, each hiding ``COMMIT; UPDATE refunds ...``:
the parser (PostgreSQL's own, via pglast) must either refuse the text or read
it as ONE statement whose hidden part is inside a literal or a comment. The
integration test (tests/integration/corrections/test_correct_injection.py) runs the same
corpus against the real PostgreSQL fixture at every stage and checks the
database is unchanged.
"""
from __future__ import annotations

import pytest

from opskit.corrections.sqlcheck import SqlRefused, build_statement, parse_statement, to_pyformat

PAYLOAD = "COMMIT; UPDATE refunds SET amount = 0 WHERE id = 7;"

# (id, sql): PostgreSQL reads several statements, or cannot read it at all -> refused
REFUSED = [
    ("plain", f"UPDATE claims SET status = 'x' WHERE id = :id; {PAYLOAD}"),
    ("e-quote", f"UPDATE claims SET status = E'\\'' WHERE id = :id; {PAYLOAD} --'"),
    ("e-backslash", f"UPDATE claims SET status = E'\\\\' WHERE id = :id; {PAYLOAD} --'"),
    ("scs-off-reading", f"UPDATE claims SET status = 'a\\' WHERE id = :id; {PAYLOAD} --'"),
    ("u-amp", f"UPDATE claims SET status = U&'\\0041' WHERE id = :id; {PAYLOAD} --'"),
    ("u-amp-uescape", f"UPDATE claims SET status = U&'!0041' UESCAPE '!' WHERE id = :id; {PAYLOAD}"),
    ("dollar", f"UPDATE claims SET status = $$x$$ WHERE id = :id; {PAYLOAD} $$"),
    ("dollar-tag", f"UPDATE claims SET status = $t$x$$y$t$ WHERE id = :id; {PAYLOAD} $t$"),
    ("dollar-unterminated", f"UPDATE claims SET status = $a$ x $b$ WHERE id = :id; {PAYLOAD}"),
    ("comment-nested-closed", f"UPDATE claims SET status = 'x' /* /* */ */ WHERE id = :id; {PAYLOAD}"),
    ("comment-unterminated", f"UPDATE claims SET status = 'x' WHERE id = :id /* /* */ ; {PAYLOAD}"),
    ("dash-comment-newline", f"UPDATE claims SET status = 'x' WHERE id = :id -- c\n; {PAYLOAD}"),
    ("cte-write", "WITH w AS (UPDATE refunds SET amount = 0 WHERE id = 7 RETURNING id) "
                  "UPDATE claims SET status = 'x' WHERE id = :id"),
    ("function", "UPDATE claims SET status = 'x' WHERE id = :id AND "
                 "dblink_exec('dbname=x', 'UPDATE refunds SET amount = 0') IS NOT NULL"),
    ("set-config", "UPDATE claims SET status = set_config('default_transaction_read_only', "
                   "'off', false) WHERE id = :id"),
    ("positional", "UPDATE claims SET status = $1 WHERE id = :id"),
]

# (id, sql): ONE statement; the payload is inside a literal or a comment
HARMLESS = [
    ("e-quote", f"UPDATE claims SET status = E'\\'; {PAYLOAD} --' WHERE id = :id"),
    ("e-backslash", f"UPDATE claims SET status = E'\\\\''; {PAYLOAD} --' WHERE id = :id"),
    ("scs-on-reading", f"UPDATE claims SET status = 'a\\''; {PAYLOAD} --' WHERE id = :id"),
    ("u-amp", f"UPDATE claims SET status = U&'\\0027; {PAYLOAD}' WHERE id = :id"),
    ("u-amp-uescape", f"UPDATE claims SET status = U&'!0027; {PAYLOAD}' UESCAPE '!' WHERE id = :id"),
    ("dollar", f"UPDATE claims SET status = $$'; {PAYLOAD} $$ WHERE id = :id"),
    ("dollar-tag", f"UPDATE claims SET status = $t$ $$; {PAYLOAD} $$ $t$ WHERE id = :id"),
    ("comment-nested", f"UPDATE claims SET status = 'x' /* /* */ ; {PAYLOAD} */ WHERE id = :id"),
    ("dash-comment", f"UPDATE claims SET status = 'x' WHERE id = :id -- '; {PAYLOAD}"),
]

# --delete --where texts for the builder
WHERE_REFUSED = [
    f"id = :id; {PAYLOAD}",
    f"id = :id OR E'\\'' = ''; {PAYLOAD} --",
    f"id = :id /* */ ; {PAYLOAD}",
    "id = :id RETURNING *",
]


@pytest.mark.parametrize("sql", [s for _n, s in REFUSED], ids=[n for n, _s in REFUSED])
def test_hidden_statements_are_refused(sql):
    with pytest.raises(SqlRefused):
        parse_statement(sql)


@pytest.mark.parametrize("sql", [s for _n, s in HARMLESS], ids=[n for n, _s in HARMLESS])
def test_hidden_text_inside_a_literal_or_comment_stays_one_statement(sql):
    stmt = parse_statement(sql)
    assert stmt.operation == "UPDATE" and stmt.table == "claims" and stmt.params == ["id"]
    assert stmt.where == "id = :id"
    assert stmt.before_image_sql() == "SELECT * FROM claims WHERE id = :id"
    # comments are blanked in the text that runs: nothing after '--' can swallow RETURNING
    assert "--" not in stmt.sql.replace(" --'", "") and "/*" not in stmt.sql
    assert to_pyformat(stmt.sql).endswith("WHERE id = %(id)s")


@pytest.mark.parametrize("where", WHERE_REFUSED)
def test_builder_where_cannot_smuggle_a_second_statement(where):
    sql, _extra = build_statement("DELETE", "claims", where, [])
    with pytest.raises(SqlRefused):
        parse_statement(sql)
    sql, _extra = build_statement("UPDATE", "claims", where, [("status", "x")])
    with pytest.raises(SqlRefused):
        parse_statement(sql)


def test_parameters_come_from_the_scanner_not_from_text():
    stmt = parse_statement("UPDATE claims SET status = ':not_a_param', amount = :a::numeric "
                           "WHERE id = :id AND status <> $$:nor_this$$ /* :or_this */")
    assert stmt.params == ["a", "id"]
    assert to_pyformat(stmt.sql) == ("UPDATE claims SET status = ':not_a_param', amount = "
                                     "%(a)s::numeric WHERE id = %(id)s AND status <> $$:nor_this$$")
    # a literal % is doubled for psycopg, and so survives as one %
    assert to_pyformat(parse_statement("UPDATE claims SET status = '50%' WHERE id = :id").sql) == \
        "UPDATE claims SET status = '50%%' WHERE id = %(id)s"


def test_allowed_functions_pass_and_schema_qualified_others_do_not():
    parse_statement("UPDATE claims SET status = lower(trim(:s)), amount = round(amount * 1.1, 2) "
                    "WHERE id = :id AND coalesce(status, '') <> 'void'")
    with pytest.raises(SqlRefused, match="public.lower"):
        parse_statement("UPDATE claims SET status = public.lower(:s) WHERE id = :id")
    with pytest.raises(SqlRefused, match="pg_terminate_backend"):
        parse_statement("DELETE FROM claims WHERE id = :id AND pg_terminate_backend(1)")
