"""Parse and vet the one statement a correction may run (R-DAT-1, R-DAT-2).

A correction is exactly one ``UPDATE ... SET ... WHERE ...``, ``DELETE FROM
... WHERE ...`` or ``INSERT INTO ... (cols) VALUES (...)`` on one table, with
named parameters (``:name``). Everything else is refused with the reason:
several statements, DDL, statements without WHERE, joins (``UPDATE ...
FROM``, ``DELETE ... USING``), CTEs, ``RETURNING`` (opskit adds its own to
record the after-image), ``INSERT ... SELECT``.

This is a small tokenizer, not a SQL parser: it knows strings, quoted
identifiers, comments, dollar quotes and parameters well enough to split
statements and find the table and the WHERE clause. The database parses the
statement for real when the before-image is read (read-only) at request time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from opskit.core.errors import UsageError

DDL = {"CREATE", "ALTER", "DROP", "TRUNCATE", "GRANT", "REVOKE", "COMMENT", "RENAME", "REINDEX",
       "VACUUM", "ANALYZE", "CLUSTER", "ATTACH", "DETACH", "PRAGMA", "COPY", "LOCK", "SET",
       "RESET", "DO", "CALL", "EXECUTE", "PREPARE", "DEALLOCATE", "BEGIN", "COMMIT", "ROLLBACK",
       "SAVEPOINT", "RELEASE", "START", "END", "REFRESH", "SECURITY", "IMPORT", "LOAD", "DISCARD",
       "LISTEN", "NOTIFY", "REASSIGN", "REPLACE", "UPSERT", "MERGE"}
OPERATIONS = ("UPDATE", "DELETE", "INSERT")
_IDENT = re.compile(r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")(?:\.(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+"))?\Z')
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# token kinds
WORD, STRING, QIDENT, PARAM, PUNCT, SPACE, COMMENT, NUMBER = (
    "word", "string", "qident", "param", "punct", "space", "comment", "number")

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*(?:.|\n)*?\*/)
  | (?P<string>[EeXxBbNn]?'(?:[^']|'')*')
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<cast>::)
  | (?P<param>:[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<punct>.)
""", re.VERBOSE | re.DOTALL)


class SqlRefused(UsageError):
    """The statement is not an acceptable correction; the message says why."""


@dataclass
class Token:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == WORD else ""


def tokenize(sql: str) -> list[Token]:
    """Tokens of ``sql``; unterminated strings, identifiers or comments are refused."""
    out: list[Token] = []
    pos = 0
    while pos < len(sql):
        if sql.startswith("/*", pos) and "*/" not in sql[pos + 2:]:
            raise SqlRefused("unterminated /* comment")
        m = _TOKEN.match(sql, pos)
        kind = m.lastgroup if m.lastgroup != "tag" else "dollar"
        if m.group("dollar") is not None:
            tag = m.group("dollar")
            end = sql.find(tag, m.end())
            if end < 0:
                raise SqlRefused(f"unterminated dollar-quoted string {tag}")
            out.append(Token(STRING, sql[pos:end + len(tag)]))
            pos = end + len(tag)
            continue
        text = m.group(0)
        if kind == "punct" and text in "'\"":
            raise SqlRefused("unterminated quoted string or identifier")
        if kind == "cast":
            kind = PUNCT
        out.append(Token(kind, text))
        pos = m.end()
    return out


def _significant(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if t.kind not in (SPACE, COMMENT)]


def _text(tokens: list[Token]) -> str:
    return "".join(t.text if t.kind != COMMENT else " " for t in tokens).strip()


@dataclass
class Statement:
    """A vetted correction statement.

    operation   UPDATE, DELETE or INSERT
    table       the table as written (maybe schema-qualified or quoted)
    sql         the statement as it will run, without a trailing ';'
    params      names of its :parameters
    target_sql  text between the keyword and SET/WHERE (table [alias]) for the before-image
    where       the WHERE clause text (UPDATE, DELETE); None for INSERT
    insert_rows number of VALUES tuples (INSERT)
    """

    operation: str
    table: str
    sql: str
    params: list[str]
    target_sql: str
    where: str | None = None
    insert_rows: int = 0
    tokens: list[Token] = field(default_factory=list, repr=False)

    def before_image_sql(self) -> str | None:
        """SELECT of the rows the statement will touch (None for INSERT)."""
        if self.operation == "INSERT":
            return None
        return f"SELECT * FROM {self.target_sql} WHERE {self.where}"


def parse_statement(sql: str) -> Statement:
    """Vet ``sql`` as one correction statement; SqlRefused names the reason."""
    tokens = tokenize(sql)
    sig = _significant(tokens)
    # split on top-level ';'
    statements: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.kind == PUNCT and tok.text == ";":
            statements.append([])
        else:
            statements[-1].append(tok)
    nonempty = [s for s in statements if _significant(s)]
    if not nonempty:
        raise SqlRefused("no SQL statement given")
    if len(nonempty) > 1:
        raise SqlRefused(f"{len(nonempty)} statements given; a correction is exactly one "
                         "UPDATE, DELETE or INSERT (R-DAT-2)")
    tokens = nonempty[0]
    sig = _significant(tokens)
    first = sig[0].upper
    if first in DDL:
        raise SqlRefused(f"{first} is refused: a correction changes rows, never schema, "
                         "permissions or session state (DDL/utility statements are not "
                         "corrections, R-DAT-2)")
    if first == "WITH":
        raise SqlRefused("WITH (common table expressions) is refused: write one plain UPDATE, "
                         "DELETE or INSERT")
    if first == "SELECT":
        raise SqlRefused("SELECT changes nothing: a correction is one UPDATE, DELETE or INSERT")
    if first not in OPERATIONS:
        raise SqlRefused(f"statement starts with {sig[0].text!r}; a correction is one UPDATE, "
                         "DELETE or INSERT")
    words = [t.upper for t in sig]
    if "RETURNING" in words:
        raise SqlRefused("RETURNING is refused: opskit adds its own to record the after-image")
    params = []
    for t in sig:
        if t.kind == PARAM and t.text[1:] not in params:
            params.append(t.text[1:])
    if any(t.kind == PUNCT and t.text in ("?", "%") for t in sig):
        raise SqlRefused("use named :parameters only (no ? or % placeholders)")
    text = _text(tokens)
    if first == "UPDATE":
        stmt = _parse_update(sig, tokens)
    elif first == "DELETE":
        stmt = _parse_delete(sig, tokens)
    else:
        stmt = _parse_insert(sig, tokens)
    stmt.sql, stmt.params, stmt.tokens = text, params, tokens
    return stmt


def _index(sig: list[Token], word: str, start: int = 0, depth0: bool = True) -> int:
    depth = 0
    for i in range(start, len(sig)):
        t = sig[i]
        if t.kind == PUNCT and t.text == "(":
            depth += 1
        elif t.kind == PUNCT and t.text == ")":
            depth -= 1
        elif t.upper == word and (depth == 0 or not depth0):
            return i
    return -1


def _table_part(part: list[Token], what: str) -> tuple[str, str]:
    """(table, 'table [alias]') from the tokens naming the target."""
    if not part:
        raise SqlRefused(f"{what}: no table named")
    words = [t.upper for t in part]
    if "ONLY" in words:
        part = [t for t in part if t.upper != "ONLY"]
    if any(t.kind == PUNCT and t.text in ",()" for t in part) or "JOIN" in words:
        raise SqlRefused(f"{what}: exactly one table, no joins or subqueries in the target")
    if words and words[0] == "OR":
        raise SqlRefused(f"{what}: UPDATE OR ... / INSERT OR ... conflict clauses are refused")
    # table name may be schema.table (3 tokens)
    name_tokens = [part[0]]
    i = 1
    if len(part) >= 3 and part[1].kind == PUNCT and part[1].text == ".":
        name_tokens = part[:3]
        i = 3
    table = "".join(t.text for t in name_tokens)
    if not _IDENT.match(table):
        raise SqlRefused(f"{what}: {table!r} is not a table name")
    rest = part[i:]
    if rest and rest[0].upper == "AS":
        rest = rest[1:]
    if len(rest) > 1 or (rest and rest[0].kind not in (WORD, QIDENT)):
        raise SqlRefused(f"{what}: unexpected {' '.join(t.text for t in rest)!r} after the table")
    target = table + (" " + rest[0].text if rest else "")
    return table, target


def _parse_update(sig: list[Token], tokens: list[Token]) -> Statement:
    set_at = _index(sig, "SET")
    if set_at < 0:
        raise SqlRefused("UPDATE without SET")
    table, target = _table_part(sig[1:set_at], "UPDATE")
    if _index(sig, "FROM", set_at) >= 0:
        raise SqlRefused("UPDATE ... FROM (a join) is refused: name the rows with a WHERE, "
                         "using a subquery if needed")
    where_at = _index(sig, "WHERE", set_at)
    if where_at < 0:
        raise SqlRefused("UPDATE without WHERE is refused: a correction names the rows it changes "
                         "(R-DAT-1)")
    where = _where_text(sig, where_at, tokens)
    return Statement("UPDATE", table, "", [], target, where=where)


def _parse_delete(sig: list[Token], tokens: list[Token]) -> Statement:
    if len(sig) < 2 or sig[1].upper != "FROM":
        raise SqlRefused("DELETE must be DELETE FROM table WHERE ...")
    where_at = _index(sig, "WHERE", 2)
    if _index(sig, "USING", 2) >= 0:
        raise SqlRefused("DELETE ... USING (a join) is refused: name the rows with a WHERE, "
                         "using a subquery if needed")
    if where_at < 0:
        raise SqlRefused("DELETE without WHERE is refused: a correction names the rows it removes "
                         "(R-DAT-1)")
    table, target = _table_part(sig[2:where_at], "DELETE")
    where = _where_text(sig, where_at, tokens)
    return Statement("DELETE", table, "", [], target, where=where)


def _where_text(sig: list[Token], where_at: int, tokens: list[Token]) -> str:
    """The WHERE clause exactly as written (comments blanked), so ``>=`` stays ``>=``."""
    if not sig[where_at + 1:]:
        raise SqlRefused("WHERE clause is empty")
    start = next(i for i, t in enumerate(tokens) if t is sig[where_at])
    return _text(tokens[start + 1:])


def _parse_insert(sig: list[Token], tokens: list[Token]) -> Statement:
    if len(sig) < 2 or sig[1].upper != "INTO":
        raise SqlRefused("INSERT must be INSERT INTO table (columns) VALUES (...)")
    values_at = _index(sig, "VALUES")
    if values_at < 0:
        raise SqlRefused("only INSERT ... VALUES is accepted (no INSERT ... SELECT or DEFAULT VALUES)")
    head = sig[2:values_at]
    paren = next((i for i, t in enumerate(head) if t.kind == PUNCT and t.text == "("), -1)
    if paren < 0:
        raise SqlRefused("INSERT must list its columns: INSERT INTO table (col, ...) VALUES (...)")
    table, target = _table_part(head[:paren], "INSERT")
    if _index(sig, "SELECT", values_at, depth0=True) >= 0:
        raise SqlRefused("INSERT ... SELECT is refused")
    if _index(sig, "ON", values_at) >= 0:
        raise SqlRefused("INSERT ... ON CONFLICT is refused: a correction does exactly what it says")
    # count top-level tuples after VALUES
    depth, rows = 0, 0
    for t in sig[values_at + 1:]:
        if t.kind == PUNCT and t.text == "(":
            if depth == 0:
                rows += 1
            depth += 1
        elif t.kind == PUNCT and t.text == ")":
            depth -= 1
        elif depth == 0 and not (t.kind == PUNCT and t.text == ","):
            raise SqlRefused(f"unexpected {t.text!r} after VALUES")
    if rows == 0:
        raise SqlRefused("INSERT without a VALUES tuple")
    return Statement("INSERT", table, "", [], target, insert_rows=rows)


# --- the --table/--where/--set builder ----------------------------------------------

def build_statement(operation: str, table: str, where: str | None,
                    sets: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """SQL text and the extra parameters for ``--table/--where/--set``.
    ``--set col=value`` becomes ``col = :set_col`` with the value as a parameter,
    so values are never pasted into SQL."""
    operation = operation.upper()
    if not _IDENT.match(table or ""):
        raise SqlRefused(f"--table {table!r} is not a table name")
    extra: dict[str, str] = {}
    for col, value in sets:
        if not _COLUMN.match(col):
            raise SqlRefused(f"--set {col!r}: column names are plain identifiers")
        extra[f"set_{col}"] = value
    if operation == "UPDATE":
        if not sets:
            raise SqlRefused("--set col=value is required for an update")
        assignments = ", ".join(f"{c} = :set_{c}" for c, _ in sets)
        sql = f"UPDATE {table} SET {assignments} WHERE {where or ''}"
        if not (where or "").strip():
            raise SqlRefused("--where is required: a correction names the rows it changes (R-DAT-1)")
    elif operation == "DELETE":
        if sets:
            raise SqlRefused("--set makes no sense with --delete")
        if not (where or "").strip():
            raise SqlRefused("--where is required: a correction names the rows it removes (R-DAT-1)")
        sql = f"DELETE FROM {table} WHERE {where}"
    elif operation == "INSERT":
        if where:
            raise SqlRefused("--where makes no sense with --insert")
        if not sets:
            raise SqlRefused("--set col=value (one per column) is required for an insert")
        cols = ", ".join(c for c, _ in sets)
        vals = ", ".join(f":set_{c}" for c, _ in sets)
        sql = f"INSERT INTO {table} ({cols}) VALUES ({vals})"
    else:
        raise SqlRefused(f"unknown operation {operation!r}")
    return sql, extra


# --- parameters ----------------------------------------------------------------------

def parse_assignments(items: list[str] | tuple[str, ...], option: str) -> list[tuple[str, str]]:
    out = []
    for item in items or ():
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise UsageError(f"{option} {item!r}: expected NAME=VALUE")
        out.append((name, value))
    return out


def typed_value(text: str):
    """``--param``/``--set`` values: ``null`` -> NULL; integers -> int; decimals
    -> Decimal (exact, never float); ``'quoted'`` -> the string inside; anything
    else -> the string as given."""
    if text is None:
        return None
    if text == "null" or text == "NULL":
        return None
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    if re.fullmatch(r"[+-]?\d{1,18}", text):
        return int(text)
    if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)", text):
        try:
            return Decimal(text)
        except InvalidOperation:
            return text
    return text


def check_params(stmt: Statement, params: dict) -> None:
    missing = [p for p in stmt.params if p not in params]
    if missing:
        raise SqlRefused("no value for parameter(s) " + ", ".join(":" + p for p in missing),
                         hint="give --param NAME=VALUE for each")
    unused = [p for p in params if p not in stmt.params]
    if unused:
        raise SqlRefused("parameter(s) not used by the statement: " + ", ".join(unused))
    for name in params:
        if not _PARAM_NAME.match(name):
            raise SqlRefused(f"parameter name {name!r} is not an identifier")


def to_pyformat(sql: str) -> str:
    """``:name`` -> ``%(name)s`` for psycopg, with literal ``%`` doubled."""
    out = []
    for tok in tokenize(sql):
        if tok.kind == PARAM:
            out.append(f"%({tok.text[1:]})s")
        else:
            out.append(tok.text.replace("%", "%%"))
    return "".join(out)
