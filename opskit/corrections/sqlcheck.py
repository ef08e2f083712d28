"""Parse and vet the one statement a correction may run (R-DAT-1, R-DAT-2).

A correction is exactly one ``UPDATE ... SET ... WHERE ...``, ``DELETE FROM
... WHERE ...`` or ``INSERT INTO ... (cols) VALUES (...)`` on one table, with
named parameters (``:name``). Everything else is refused with the reason:
several statements, DDL and utility statements, statements without WHERE,
joins (``UPDATE ... FROM``, ``DELETE ... USING``), CTEs anywhere, writes
nested in a sub-select, ``RETURNING`` (opskit adds its own to record the
after-image), ``INSERT ... SELECT``/``ON CONFLICT``, and calls of functions
not on the allow-list of side-effect-free functions below (a function in a
WHERE clause runs at request time, before anybody approved anything).

The statement is read by PostgreSQL's own parser (``pglast``, libpg_query),
so strings, escapes (``E'\\''``, ``U&'..' UESCAPE``), dollar quotes and
nested comments mean here exactly what they mean to the server; the targets
pin ``standard_conforming_strings=on`` so the server reads backslashes the
same way, and every statement is sent alone over the extended protocol, which
refuses a second statement (targets.py). ``:name`` parameters are found with
pglast's scanner (a ``:`` token followed at once by a word), never by a regex
over the text, and become ``$n`` for the parse and ``%(name)s`` for psycopg.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from pglast import ast
from pglast.parser import ParseError, parse_sql, scan

from opskit.core.errors import UsageError

_IDENT = re.compile(r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")(?:\.(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+"))?\Z')
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*\Z")
_COMMENTS = ("SQL_COMMENT", "C_COMMENT")

# Functions without side effects that a correction may call (any schema but
# pg_catalog is refused). Everything else -- dblink, pg_terminate_backend,
# set_config, nextval, lo_*, user functions -- is refused: it could act at
# request time or change more than the statement says (R-DAT-2).
ALLOWED_FUNCTIONS = frozenset("""
    abs ceil ceiling floor round trunc sign mod div power sqrt greatest least
    lower upper initcap trim btrim ltrim rtrim substr substring left right length char_length
    octet_length replace translate concat concat_ws lpad rpad split_part strpos position
    starts_with reverse repeat format to_char to_number to_date to_timestamp
    now current_date current_timestamp localtimestamp statement_timestamp transaction_timestamp
    date_trunc date_part extract age make_date make_time make_timestamp make_timestamptz
    make_interval justify_days justify_hours justify_interval
    coalesce nullif array_append array_prepend array_remove array_replace array_cat
    array_length array_position cardinality unnest
    jsonb_set jsonb_insert jsonb_build_object jsonb_build_array jsonb_strip_nulls
    json_build_object json_build_array to_json to_jsonb jsonb_typeof
    count sum min max avg bool_and bool_or every
""".split())


class SqlRefused(UsageError):
    """The statement is not an acceptable correction; the message says why."""


@dataclass
class Statement:
    """A vetted correction statement.

    operation   UPDATE, DELETE or INSERT
    table       the table, as PostgreSQL names it (schema-qualified if written so; quoted if needed)
    sql         the statement as it will run: comments blanked, no trailing ';'
    params      names of its :parameters, in order of first use
    target_sql  ``table [alias]`` for the before-image
    where       the WHERE clause text (UPDATE, DELETE); None for INSERT
    insert_rows number of VALUES tuples (INSERT)
    assigned    the columns an UPDATE sets
    relation    (start, end) of the table name in ``sql``
    """

    operation: str
    table: str
    sql: str
    params: list[str]
    target_sql: str
    where: str | None = None
    insert_rows: int = 0
    relation: tuple[int, int] = field(default=(0, 0), repr=False)
    assigned: tuple[str, ...] = ()      # columns an UPDATE sets (for ON UPDATE cascades)

    def before_image_sql(self) -> str | None:
        """SELECT of the rows the statement will touch (None for INSERT)."""
        if self.operation == "INSERT":
            return None
        return f"SELECT * FROM {self.target_sql} WHERE {self.where}"

    def on_table(self, other: str) -> str:
        """The statement with its table replaced by ``other`` (a scratch copy)."""
        start, end = self.relation
        return self.sql[:start] + other + self.sql[end:]


# --- scanning: PostgreSQL's tokens, and :name parameters among them -----------------------

@dataclass
class _Tok:
    start: int
    end: int          # exclusive
    name: str         # pglast token name: IDENT, SCONST, ASCII_59 (;), WHERE, SQL_COMMENT ...
    text: str


def _scan(sql: str) -> list[_Tok]:
    try:
        return [_Tok(t.start, t.end + 1, t.name, sql[t.start:t.end + 1]) for t in scan(sql)]
    except ParseError as exc:
        raise SqlRefused(f"PostgreSQL cannot read the statement: {exc.args[0]}") from None


def _params(tokens: list[_Tok]) -> list[tuple[int, int, str]]:
    """(start, end, name) of each ``:name``: a ``:`` token directly followed by a word."""
    out = []
    for colon, word in zip(tokens, tokens[1:]):
        if colon.name == "ASCII_58" and word.start == colon.end and _PARAM_NAME.match(word.text):
            out.append((colon.start, word.end, word.text))
    return out


def _replace(sql: str, tokens: list[_Tok], spans: list[tuple[int, int, str]],
             text_of, param_of) -> str:
    """Rebuild ``sql`` from its tokens: each parameter span as ``param_of(name)``, every
    other stretch through ``text_of`` (comments come out as one space)."""
    out, pos = [], 0
    comments = [(t.start, t.end, None) for t in tokens if t.name in _COMMENTS]
    for start, end, name in sorted(spans + comments):
        out.append(text_of(sql[pos:start]))
        out.append(param_of(name) if name is not None else " ")
        pos = end
    out.append(text_of(sql[pos:]))
    return "".join(out)


def params_of(sql: str) -> list[str]:
    """Names of the ``:name`` parameters ``sql`` uses (from PostgreSQL's scanner)."""
    return [name for _s, _e, name in _params(_scan(sql))]


def with_values(sql: str, params: dict) -> str:
    """``sql`` with each ``:name`` shown as the SQL literal of its value, for people to
    read (``show``, ``approve``); never executed -- values are always bound."""
    def literal(name: str) -> str:
        value = typed_value(params[name]) if name in params else None
        if name not in params:
            return ":" + name
        if value is None:
            return "NULL"
        if isinstance(value, (int, Decimal)):
            return str(value)
        return "'" + str(value).replace("'", "''") + "'"
    tokens = _scan(sql)
    return _replace(sql, tokens, _params(tokens), lambda s: s, literal)


def to_pyformat(sql: str) -> str:
    """``:name`` -> ``%(name)s`` for psycopg, every literal ``%`` doubled, comments blanked."""
    tokens = _scan(sql)
    return _replace(sql, tokens, _params(tokens), lambda s: s.replace("%", "%%"),
                    lambda name: f"%({name})s")


# --- the parse tree ---------------------------------------------------------------------

_ROOTS = {ast.UpdateStmt: "UPDATE", ast.DeleteStmt: "DELETE", ast.InsertStmt: "INSERT"}
_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


def _walk(node):
    """Every pglast node below ``node`` (inclusive)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, ast.Node):
            yield item
            stack.extend(getattr(item, a) for a in item.__slots__ if a != "location")


def _check_tree(root) -> None:
    """Refuse CTEs, nested writes and calls of functions off the allow-list, anywhere."""
    for node in _walk(root):
        if isinstance(node, (ast.WithClause, ast.CommonTableExpr)):
            raise SqlRefused("WITH (common table expressions) is refused: write one plain UPDATE, "
                             "DELETE or INSERT")
        if node is not root and isinstance(node, _WRITES):
            raise SqlRefused("a write nested inside the statement is refused: one UPDATE, DELETE or "
                             "INSERT, nothing else changes (R-DAT-2)")
        if isinstance(node, ast.FuncCall):
            names = [n.sval for n in node.funcname]
            qualified = ".".join(names)
            if len(names) > 2 or (len(names) == 2 and names[0] != "pg_catalog") or \
                    names[-1].lower() not in ALLOWED_FUNCTIONS:
                raise SqlRefused(f"function {qualified}() is refused: a correction may call only "
                                 "side-effect-free functions (lower, round, now, coalesce, ...; "
                                 "see ALLOWED_FUNCTIONS in opskit/corrections/sqlcheck.py)")
        if isinstance(node, ast.A_Indirection) and any(isinstance(i, ast.String)
                                                       for i in node.indirection or ()):
            raise SqlRefused("field selection (x).name is refused: PostgreSQL reads it as a call "
                             "of a function name(x) when there is no such field (R-DAT-2)")
        if isinstance(node, ast.SelectStmt) and (node.intoClause or node.lockingClause):
            raise SqlRefused("SELECT ... INTO / FOR UPDATE inside the statement is refused")


def _ident(name: str) -> str:
    from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS, COL_NAME_KEYWORDS
    if _PLAIN.match(name) and name not in RESERVED_KEYWORDS and name not in TYPE_FUNC_NAME_KEYWORDS \
            and name not in COL_NAME_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _table(rel, what: str) -> tuple[str, str]:
    """(table, 'table [alias]') of the statement's RangeVar."""
    if rel.catalogname:
        raise SqlRefused(f"{what}: a table in another database ({rel.catalogname}) is refused")
    table = ".".join(_ident(n) for n in (rel.schemaname, rel.relname) if n)
    alias = f" {_ident(rel.alias.aliasname)}" if rel.alias else ""
    return table, table + alias


def _refuse_kind(root, first: str) -> None:
    if first == "WITH":
        raise SqlRefused("WITH (common table expressions) is refused: write one plain UPDATE, "
                         "DELETE or INSERT")
    if isinstance(root, ast.SelectStmt):
        raise SqlRefused("SELECT changes nothing: a correction is one UPDATE, DELETE or INSERT")
    if isinstance(root, ast.MergeStmt):
        raise SqlRefused("MERGE is refused: a correction is one UPDATE, DELETE or INSERT")
    raise SqlRefused(f"{first} is refused: a correction changes rows, never schema, permissions "
                     "or session state (DDL/utility statements are not corrections, R-DAT-2)")


def _vet_root(root, op: str) -> None:
    # pglast 7 (PostgreSQL 17) calls it returningList, pglast 8 (PostgreSQL 18) returningClause
    if getattr(root, "returningList", None) or getattr(root, "returningClause", None):
        raise SqlRefused("RETURNING is refused: opskit adds its own to record the after-image")
    if op == "UPDATE" and root.fromClause:
        raise SqlRefused("UPDATE ... FROM (a join) is refused: name the rows with a WHERE, "
                         "using a subquery if needed")
    if op == "DELETE" and root.usingClause:
        raise SqlRefused("DELETE ... USING (a join) is refused: name the rows with a WHERE, "
                         "using a subquery if needed")
    if op in ("UPDATE", "DELETE"):
        verb = "changes" if op == "UPDATE" else "removes"
        if root.whereClause is None:
            raise SqlRefused(f"{op} without WHERE is refused: a correction names the rows it {verb} "
                             "(R-DAT-1)")
        if isinstance(root.whereClause, ast.CurrentOfExpr):
            raise SqlRefused("WHERE CURRENT OF (a cursor) is refused: name the rows with a WHERE")
        return
    if not root.cols:
        raise SqlRefused("INSERT must list its columns: INSERT INTO table (col, ...) VALUES (...)")
    sel = root.selectStmt
    if sel is None or not sel.valuesLists or sel.fromClause or sel.targetList:
        raise SqlRefused("only INSERT ... VALUES is accepted (no INSERT ... SELECT or DEFAULT VALUES)")
    if root.onConflictClause is not None:
        raise SqlRefused("INSERT ... ON CONFLICT is refused: a correction does exactly what it says")


def _parsed(sql: str, tokens: list[_Tok]) -> tuple[str, list[_Tok], list[str], list]:
    """(text with comments blanked, its tokens, :parameter names in order, pglast's parse
    of the text with each :name as $n)."""
    # comments become one space (as the server reads them), then everything works on that text
    clean = _replace(sql, tokens, [], lambda s: s, None)
    tokens = _scan(clean)
    spans = _params(tokens)
    names: list[str] = []
    for _s, _e, name in spans:
        if name not in names:
            names.append(name)
    # the text PostgreSQL parses: each :name as $n (spaced, so it never joins a neighbour)
    positional = _replace(clean, tokens, spans, lambda s: s, lambda n: f" ${names.index(n) + 1} ")
    try:
        return clean, tokens, names, parse_sql(positional)
    except ParseError as exc:
        raise SqlRefused(f"PostgreSQL cannot parse the statement: {exc.args[0]}") from None


def _several(count: int) -> SqlRefused:
    return SqlRefused(f"{count} statements given; a correction is exactly one UPDATE, DELETE or "
                      "INSERT (R-DAT-2)")


def parse_statement(sql: str) -> Statement:
    """Vet ``sql`` as one correction statement; SqlRefused names the reason."""
    tokens = _scan(sql)
    if any(t.text == "?" or t.name == "PARAM" or (t.text == "%" and sql[t.end:t.end + 1] in ("s", "("))
           for t in tokens):
        raise SqlRefused("use named :parameters only (no ?, $1 or % placeholders)")
    clean, tokens, names, stmts = _parsed(sql, tokens)
    if not stmts:
        raise SqlRefused("no SQL statement given")
    if len(stmts) > 1:
        raise _several(len(stmts))
    root = stmts[0].stmt
    sig = [t for t in tokens if t.name != "ASCII_59"]
    op = _ROOTS.get(type(root))
    if op is None:
        _refuse_kind(root, sig[0].text.upper())
    _vet_root(root, op)
    _check_tree(root)
    table, target = _table(root.relation, op)
    # the statement as it runs: first to last token, comments blanked, no ';'
    text = clean[sig[0].start:sig[-1].end]
    relation = _relation_span(sig, text, sig[0].start)
    where = None
    if op != "INSERT":
        at = _top_level_where(sig)
        where = text[sig[at].end - sig[0].start:].strip()
    rows = len(root.selectStmt.valuesLists) if op == "INSERT" else 0
    assigned = tuple(t.name for t in root.targetList) if op == "UPDATE" else ()
    return Statement(op, table, text, names, target, where=where, insert_rows=rows, relation=relation,
                     assigned=assigned)


def _relation_span(sig: list[_Tok], text: str, offset: int) -> tuple[int, int]:
    """Where the table name stands in ``text``: after UPDATE [ONLY], FROM [ONLY] or INTO."""
    i = 1 if sig[0].name == "UPDATE" else 2
    if sig[i].name == "ONLY":
        i += 1
    j = i
    while j + 2 < len(sig) and sig[j + 1].name == "ASCII_46":     # schema . table
        j += 2
    return sig[i].start - offset, sig[j].end - offset


def _top_level_where(sig: list[_Tok]) -> int:
    """Index of the statement's own WHERE (outside any parentheses)."""
    depth = 0
    for i, t in enumerate(sig):
        if t.name == "ASCII_40":
            depth += 1
        elif t.name == "ASCII_41":
            depth -= 1
        elif t.name == "WHERE" and depth == 0:
            return i
    raise SqlRefused("WHERE clause not found")   # the parse tree has one: cannot happen


# --- the functions the server resolves (R-DAT-2) -----------------------------------------
#
# Names in the parse tree are not what runs: PostgreSQL reads ``(x).f`` and ``tbl.f`` as
# ``f(x)``, resolves an operator or an allowed name such as ``lower(id)`` to a user
# function in any schema on the search_path, and its grammar differs from pglast's
# (JSON_ARRAY is a plain function call on PostgreSQL 15). So the server itself resolves
# the statement: it becomes the body of a temporary SQL-standard function (``BEGIN
# ATOMIC``), which PostgreSQL parses and stores as a resolved query tree at creation
# without running or planning anything; every function and operator that tree names is
# looked up and checked here. Always inside a transaction that is rolled back.

# fields of PostgreSQL's stored node trees (nodeToString) holding a pg_proc / pg_operator
# oid; identifiers in the text are backslash-escaped, so a name cannot fake one
_PROC_REF = re.compile(r":(?:funcid|opfuncid|aggfnoid|winfnoid|tsmhandler|hashfuncid|negfuncid"
                       r"|startInRangeFunc|endInRangeFunc) (\d+)")
_OPER_REF = re.compile(r":(?:opno|eqop|sortop) (\d+)|:opnos \(o ([\d ]+)\)")


def _typed_literal(value) -> str:
    """A parameter value as the literal of the type psycopg 3 binds it as (int2/int4/int8/
    numeric by size, numeric, bool; a string and NULL untyped), so the server resolves
    functions and operators over it exactly as it will at execution."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        typ = next((t for t, bits in (("int2", 15), ("int4", 31), ("int8", 63))
                    if -2 ** bits <= value < 2 ** bits), "numeric")
        return f"CAST('{value}' AS pg_catalog.{typ})"
    if isinstance(value, Decimal):
        return f"CAST('{value}' AS pg_catalog.numeric)"
    return "'" + str(value).replace("'", "''") + "'"


def resolution_probe(stmt: Statement, params: dict) -> tuple[str, str]:
    """(name, DDL) of the temporary function whose body is ``stmt`` with its parameters as
    typed literals: creating it makes the server resolve, and record, what it calls."""
    import secrets
    tokens = _scan(stmt.sql)
    body = _replace(stmt.sql, tokens, _params(tokens), lambda s: s,
                    lambda n: f" {_typed_literal(params.get(n))} ")
    name = f"pg_temp.opskit_vet_{secrets.token_hex(8)}"
    return name, f"CREATE FUNCTION {name}() RETURNS void LANGUAGE sql BEGIN ATOMIC {body}; END"


_PROCS_SQL = """
SELECT p.oid::int8 AS oid, n.nspname AS schema, p.proname AS name, p.provolatile AS volatile,
       pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, (SELECT pg_catalog.string_agg(
           pg_catalog.format_type(t, NULL), ', ' ORDER BY i) FROM pg_catalog.unnest(p.proargtypes)
           WITH ORDINALITY AS a(t, i))) AS identity,
       EXISTS (SELECT 1 FROM pg_catalog.pg_cast c WHERE c.castfunc = p.oid) OR
       EXISTS (SELECT 1 FROM pg_catalog.pg_operator o WHERE o.oprcode = p.oid
               AND o.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace) AS implicit
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.oid::int8 = ANY(CAST(:oids AS int8[]))"""
_OPERS_SQL = """
SELECT o.oid::int8 AS oid, n.nspname AS schema, o.oprcode::oid::int8 AS code,
       pg_catalog.format('%I.%s(%s, %s)', n.nspname, o.oprname,
                         COALESCE(pg_catalog.format_type(NULLIF(o.oprleft, 0), NULL), 'NONE'),
                         pg_catalog.format_type(o.oprright, NULL)) AS identity
  FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
 WHERE o.oid::int8 = ANY(CAST(:oids AS int8[]))"""


# what else a resolved tree makes the server run: the definitions of the views it reads
# (recursively), the row-level security policies in force for this role on the tables it
# reads, and the CHECK constraints of the domains it casts to explicitly (a CoerceToDomain
# of explicit cast or call format; an assignment to a domain column is the schema's own
# design, like its triggers and defaults)
_VIEW_REF = re.compile(r":relid (\d+) :relkind v ")
_TABLE_REF = re.compile(r":relid (\d+) :relkind [rpf] ")
_DOMAIN_CAST = re.compile(r":resulttype (\d+) :resulttypmod -?\d+ :resultcollid \d+ :coercionformat [01] ")
_VIEWS_SQL = """
SELECT pg_catalog.format('view %s', r.ev_class::pg_catalog.regclass) AS origin, r.ev_action::text AS tree
  FROM pg_catalog.pg_rewrite r WHERE r.ev_type = '1' AND r.ev_class::int8 = ANY(CAST(:oids AS int8[]))"""
_POLICIES_SQL = """
SELECT pg_catalog.format('row-level security policy %I on %s', p.polname,
                         p.polrelid::pg_catalog.regclass) AS origin, e.tree
  FROM pg_catalog.pg_policy p,
       LATERAL (VALUES (p.polqual::text), (p.polwithcheck::text)) AS e(tree)
 WHERE p.polrelid::int8 = ANY(CAST(:oids AS int8[])) AND e.tree IS NOT NULL
   AND pg_catalog.row_security_active(p.polrelid)"""
_DOMAINS_SQL = """
WITH RECURSIVE d(t) AS (SELECT t::oid FROM pg_catalog.unnest(CAST(:oids AS int8[])) AS u(t)
                        UNION SELECT y.typbasetype FROM pg_catalog.pg_type y JOIN d ON y.oid = d.t
                         WHERE y.typtype = 'd')
SELECT pg_catalog.format('domain %s', c.contypid::pg_catalog.regtype) AS origin, c.conbin::text AS tree
  FROM pg_catalog.pg_constraint c JOIN d ON c.contypid = d.t WHERE c.conbin IS NOT NULL"""


def check_resolved(q, stmt: Statement, params: dict) -> None:
    """Have the server resolve ``stmt`` (``q(sql, params) -> (columns, rows)`` runs one
    statement in an open transaction the caller rolls back) and refuse it, naming the
    function, unless every function it calls -- directly, through an operator or a cast,
    in a view it reads, a row-level security policy in force on a table it reads or a
    domain it casts to -- is in pg_catalog and either on
    ALLOWED_FUNCTIONS or a non-volatile implementation of a pg_catalog operator or cast.
    Nothing of the statement runs."""
    stmts = _parsed(stmt.sql, _scan(stmt.sql))[3]
    if len(stmts) != 1:     # a Statement not made by parse_statement: BEGIN ATOMIC takes several
        raise _several(len(stmts))
    name, ddl = resolution_probe(stmt, params)
    q(ddl)
    _c, rows = q("SELECT 'statement' AS origin, prosqlbody::text AS tree FROM pg_catalog.pg_proc "
                 "WHERE oid = CAST(:f AS pg_catalog.regprocedure)", {"f": name + "()"})
    seen: dict[str, set[str]] = {}
    while rows:
        origin, tree = rows[0]["origin"], rows[0]["tree"] or ""
        rows = rows[1:]
        _refuse_calls(q, origin, tree)
        for pattern, sql in ((_VIEW_REF, _VIEWS_SQL), (_TABLE_REF, _POLICIES_SQL),
                             (_DOMAIN_CAST, _DOMAINS_SQL)):
            oids = sorted({o for o in pattern.findall(tree)} - seen.get(sql, set()))
            seen.setdefault(sql, set()).update(oids)
            if oids:
                rows += q(sql, {"oids": [int(o) for o in oids]})[1]


def _refuse_calls(q, origin: str, tree: str) -> None:
    """Refuse the first function or operator of one stored node tree off the allow-list."""
    what = origin if origin == "statement" else f"{origin}, which the statement reads,"
    procs = [int(m) for m in _PROC_REF.findall(tree) if m != "0"]
    opers = [int(o) for m in _OPER_REF.findall(tree) for o in " ".join(m).split() if o != "0"]
    if opers:
        _c, found = q(_OPERS_SQL, {"oids": sorted(set(opers))})
        for op in sorted(found, key=lambda r: opers.index(r["oid"])):
            if op["schema"] != "pg_catalog":
                raise SqlRefused(f"refused: {what} uses operator {op['identity']}, not a "
                                 "pg_catalog operator (R-DAT-2)")
            procs.append(op["code"])
    if not procs:
        return
    _c, found = q(_PROCS_SQL, {"oids": sorted(set(procs))})
    for fn in sorted(found, key=lambda r: procs.index(r["oid"])):
        named = fn["schema"] == "pg_catalog" and fn["name"] in ALLOWED_FUNCTIONS
        implicit = fn["schema"] == "pg_catalog" and fn["implicit"] and fn["volatile"] != "v"
        if not (named or implicit):
            raise SqlRefused(f"refused: {what} calls {fn['identity']}, not an allowed function "
                             "(R-DAT-2; see ALLOWED_FUNCTIONS in opskit/corrections/sqlcheck.py)")


# --- the new values, computed read-only for the approver (#17) --------------------------

NEW_PREFIX = "opskit:new:"      # alias of each computed value: no business column is named so


@dataclass
class NewValues:
    """SELECTs that compute what the statement will write, changing nothing.

    queries  (sql, columns): for an UPDATE one SELECT of every row it matches (``*``)
             and the new value of each assigned column, aliased NEW_PREFIX + index;
             for an INSERT one SELECT per VALUES tuple. ``:name`` parameters, bound.
    pending  columns whose new value only the apply knows, each with why
    """

    queries: list[tuple[str, list[str]]]
    pending: list[str]


def _named(text: str, names: list[str]) -> str:
    """Deparsed text with each ``$n`` back as its ``:name``."""
    tokens = _scan(text)
    spans = [(t.start, t.end, names[int(t.text[1:]) - 1]) for t in tokens if t.name == "PARAM"]
    return _replace(text, tokens, spans, lambda s: s, lambda n: ":" + n)


def _assigned_value(target, value):
    """(expression node, None) for one assigned column, or (None, why it is not
    computable before apply)."""
    if isinstance(value, ast.MultiAssignRef):
        value = value.source.args[value.colno - 1] if isinstance(value.source, ast.RowExpr) else None
    if getattr(target, "indirection", None):
        return None, "assigned through a subscript or field"
    if value is None:
        return None, "assigned from a multi-column sub-select"
    if isinstance(value, ast.SetToDefault):
        return None, "set to its DEFAULT"
    return value, None


def new_values_sql(stmt: Statement, types: dict[str, str]) -> NewValues:
    """Rewrite the vetted UPDATE or INSERT into SELECTs of the values it will write
    (pglast parses and deparses each expression), each cast to its column's type
    (``types``: column -> SQL type) so the value is the one the column will hold."""
    from pglast.stream import RawStream
    _clean, _tokens, names, stmts = _parsed(stmt.sql, _scan(stmt.sql))
    root = stmts[0].stmt
    pending: list[str] = []

    def select(pairs) -> tuple[str, list[str]]:
        exprs, cols = [], []
        for target, value in pairs:
            node, why = _assigned_value(target, value)
            if why:
                pending.append(f"{target.name} ({why})")
                continue
            text = "(" + _named(RawStream()(node), names) + ")"
            typ = types.get(target.name)
            exprs.append(f'{f"CAST({text} AS {typ})" if typ else text} AS "{NEW_PREFIX}{len(cols)}"')
            cols.append(target.name)
        return ", ".join(exprs), cols

    if stmt.operation == "UPDATE":
        exprs, cols = select((t, t.val) for t in root.targetList)
        sql = f"SELECT *{', ' + exprs if exprs else ''} FROM {stmt.target_sql} WHERE {stmt.where}"
        return NewValues([(sql, cols)], pending)
    if stmt.operation == "INSERT":
        queries = []
        for values in root.selectStmt.valuesLists:
            exprs, cols = select(zip(root.cols, values))
            queries.append(("SELECT " + exprs if exprs else "", cols))
        return NewValues(queries, pending)
    return NewValues([], [])


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


