"""What a correction touches beyond its own rows: foreign-key cascades (PostgreSQL).

A ``DELETE`` (or an ``UPDATE`` of a referenced key) on one table changes rows of
every table whose foreign key says ``ON DELETE/UPDATE CASCADE``, ``SET NULL`` or
``SET DEFAULT``, recursively. ``cascades`` walks those constraints in pg_constraint
and reads the rows each one will change, as nested SELECTs on the statement's own
WHERE clause and parameters, so the risk rules and the images see every table and
row the statement touches (R-DAT-2, R-DAT-3; issue #17 item 4).

What triggers change is known only when the statement runs: inside the apply
transaction ``trigger_effects`` reads the transaction's own table statistics
(``pg_stat_xact_user_tables``: rows inserted, updated and deleted per table, by
anything, no privilege needed), takes away what the statement and its cascades
account for, and reads the rows this transaction wrote in each remaining table
(``xmin`` = its transaction id). The caller applies those tables' rules.

Rows the correction role cannot see are no effect it may leave out: any table the
statement can reach with row-level security on, for a role that does not bypass it,
is a refusal naming the table (``hidden_tables``).
"""
from __future__ import annotations

from dataclasses import dataclass

from .sqlcheck import SqlRefused, Statement

MAX_DEPTH = 16      # a cascade deeper than this is refused, not cut short

# one row per foreign key that references :t, with its columns in key order
_FKS = """
SELECT c.conname AS name, CAST(CAST(c.conrelid AS regclass) AS text) AS child,
       CAST(c.confdeltype AS text) AS on_delete, CAST(c.confupdtype AS text) AS on_update,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i)
         AS child_cols,
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i)
         AS parent_cols
FROM pg_constraint c
WHERE c.contype = 'f' AND c.confrelid = CAST(:t AS regclass)
ORDER BY c.conname
"""
_ACTIONS = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass
class Effect:
    """Rows of ``table`` a cascade changes: deleted (CASCADE on delete) or updated."""

    table: str
    operation: str      # DELETE or UPDATE
    via: str            # "<constraint> ON DELETE CASCADE"
    rows: list[dict]
    columns: tuple[str, ...] = ()   # the foreign-key columns a SET NULL/DEFAULT or ON UPDATE changes

    def to_dict(self) -> dict:
        out = {"table": self.table, "operation": self.operation, "via": self.via, "rows": self.rows}
        if self.operation == "UPDATE":
            out["columns"] = list(self.columns)     # not in effects_digest: display only
        return out


def effects_digest(effects: list[dict]) -> str:
    """SHA-256 of the cascaded rows, each with its table and operation, as a multiset."""
    from .targets import image_digest
    return image_digest([{"table": e["table"], "operation": e["operation"], "row": r}
                         for e in effects for r in e["rows"]])


def _regclass_array(tables: list[str]) -> str:
    """A text[] literal of table names, for CAST(:ts AS regclass[])."""
    return "{" + ",".join('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in tables) + "}"


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def cascades(tx, stmt: Statement, params: dict, lock: bool = False) -> list[Effect]:
    """Every row a foreign-key action of ``stmt`` changes, table by table (empty on
    SQLite and for INSERT). ``lock`` reads them ``FOR UPDATE`` (inside the apply).
    Through a view, the cascades of its base table."""
    if tx.kind == "sqlite" or stmt.operation == "INSERT":
        return []
    out: list[Effect] = []
    root = f"SELECT * FROM {stmt.target_sql} WHERE {stmt.where}"
    table = (base_tables(tx, stmt.table) or [_table_name(tx, stmt.table)])[-1]
    _walk(tx, table, root, stmt.operation, set(stmt.assigned), params, lock, out, 0)
    return out


_RELATION = """
SELECT CAST(c.relkind AS text) AS kind,
       (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid AND (t.tgtype & 64) <> 0) AS instead,
       (SELECT count(*) FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.is_instead
          AND r.ev_type <> '1') AS rules
FROM pg_class c WHERE c.oid = CAST(:t AS regclass)
"""
# the relations a view's SELECT rule reads (pg_depend of its _RETURN rule)
_VIEW_BASES = """
SELECT DISTINCT CAST(CAST(d.refobjid AS regclass) AS text) AS base
FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
  AND d.classid = CAST('pg_rewrite' AS regclass) AND d.refclassid = CAST('pg_class' AS regclass)
WHERE r.ev_class = CAST(:t AS regclass) AND r.rulename = '_RETURN' AND d.refobjid <> r.ev_class
"""


def base_tables(tx, table: str) -> list[str]:
    """Through an updatable view, the relations down to the table the statement really
    changes (view on view: each in turn, the table last); [] for a table. A view whose
    effect PostgreSQL cannot resolve to one base table (INSTEAD OF triggers, DO INSTEAD
    rules, a join or no table) is refused (SqlRefused), naming it (issue #17 item 5)."""
    if tx.kind == "sqlite":
        return []
    chain: list[str] = []
    current = _table_name(tx, table)
    while True:
        _c, rel = tx.q(_RELATION, {"t": current})
        kind = rel[0]["kind"]
        if kind in ("r", "p"):
            return chain
        if kind != "v":
            raise SqlRefused(f"{current} is not a table or view (relkind {kind}); not corrected")
        if int(rel[0]["instead"]) or int(rel[0]["rules"]):
            raise SqlRefused(f"view {current} changes data through INSTEAD OF triggers or rules: what "
                             "it touches cannot be resolved; correct its base tables directly")
        _c, bases = tx.q(_VIEW_BASES, {"t": current})
        if len(bases) != 1:
            raise SqlRefused(f"view {current} reads {len(bases)} relations "
                             f"({', '.join(b['base'] for b in bases) or 'none'}); only a view on one "
                             "table resolves to the table it changes; correct the table directly")
        current = bases[0]["base"]
        if current in chain:
            raise SqlRefused(f"view {table} refers to itself through {current}")
        chain.append(current)


def _walk(tx, table: str, rows_sql: str, operation: str, assigned: set[str], params: dict,
          lock: bool, out: list[Effect], depth: int) -> None:
    """Follow the foreign keys referencing ``table`` whose rows ``rows_sql`` selects."""
    _c, fks = tx.q(_FKS, {"t": table})
    for fk in fks:
        action = _ACTIONS.get(fk["on_delete"] if operation == "DELETE" else fk["on_update"])
        if action is None or (operation == "UPDATE" and not assigned & set(fk["parent_cols"])):
            continue            # NO ACTION / RESTRICT: the statement fails instead
        child, child_cols = fk["child"], fk["child_cols"]
        keys = ", ".join(_qi(c) for c in child_cols)
        refs = ", ".join(f"p.{_qi(c)}" for c in fk["parent_cols"])
        sql = f"SELECT * FROM {child} WHERE ({keys}) IN (SELECT {refs} FROM ({rows_sql}) AS p)"
        _c, rows = tx.q(sql + (" FOR UPDATE" if lock else ""), params)
        if not rows:
            continue
        if depth >= MAX_DEPTH:
            raise SqlRefused(f"the statement cascades more than {MAX_DEPTH} levels deep (at {child} "
                             f"via {fk['name']}); not a correction")
        verb = "DELETE" if operation == "DELETE" and action == "CASCADE" else "UPDATE"
        side = "DELETE" if operation == "DELETE" else "UPDATE"
        out.append(Effect(child, verb, f"{fk['name']} ON {side} {action}", rows, tuple(child_cols)))
        # deleted children cascade further; children whose key changes, through that key
        _walk(tx, child, sql, verb, set(child_cols), params, lock, out, depth + 1)


def _table_name(tx, table: str) -> str:
    _c, rows = tx.q("SELECT CAST(CAST(CAST(:t AS regclass) AS oid) AS regclass) AS r", {"t": table})
    return str(rows[0]["r"])


# a relation as the server resolves the name (search_path), then its partition ancestors
_NAMES = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
FROM (SELECT to_regclass(:t) AS r) s
CROSS JOIN LATERAL (SELECT s.r AS relid, 0 AS up UNION ALL
                    SELECT a.relid, 1 FROM pg_partition_ancestors(s.r) a WHERE a.relid <> s.r) x
JOIN pg_class c ON c.oid = x.relid JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY x.up
"""


def relation_names(tx, tables: list[str]) -> dict[str, list[str]]:
    """For each spelling in ``tables``: the schema-qualified name of the relation the
    server resolves it to (with the session's search_path), then those of every
    partition ancestor (a partition brings its parents' rules); [] when it does not
    resolve. Empty on SQLite (no schemas, no partitions). The risk rules match on
    these, not on how a name happens to be spelled (rulesfile.Registry.requirement)."""
    if tx.kind == "sqlite":
        return {}
    out: dict[str, list[str]] = {}
    for table in dict.fromkeys(tables):
        tx.q("SAVEPOINT opskit_names")
        try:
            _c, rows = tx.q(_NAMES, {"t": table})
        except Exception:  # noqa: BLE001 - psycopg.Error: a name PostgreSQL cannot even parse
            tx.q("ROLLBACK TO SAVEPOINT opskit_names")
            rows = []
        tx.q("RELEASE SAVEPOINT opskit_names")
        out[table] = [r["name"] for r in rows]
    return out


def reachable(tx, table: str, operation: str) -> list[str]:
    """Every table a foreign-key action from ``table`` can reach, whatever the rows."""
    seen: list[str] = []
    todo = [_table_name(tx, table)]
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.append(t)
        _c, fks = tx.q(_FKS, {"t": t})
        todo.extend(fk["child"] for fk in fks
                    if (fk["on_delete"] if operation == "DELETE" else fk["on_update"]) in _ACTIONS)
    return seen


def hidden_tables(tx, tables: list[str]) -> list[str]:
    """The tables among ``tables`` whose rows row-level security may hide from this
    role: RLS enabled, and the role neither bypasses it nor owns the table unforced."""
    _c, rows = tx.q(
        "SELECT CAST(CAST(c.oid AS regclass) AS text) AS t FROM pg_class c "
        "WHERE c.oid = ANY(CAST(:ts AS regclass[])) AND c.relrowsecurity "
        "AND NOT (SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user) "
        "AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE'))",
        {"ts": _regclass_array(tables)})
    return [r["t"] for r in rows]


def check_visible(tx, stmt: Statement) -> None:
    """Refuse (SqlRefused, naming the table) when the statement can reach a table whose
    rows row-level security hides from the correction role: those rows would change
    unseen by the images and the risk rules."""
    if tx.kind == "sqlite" or stmt.operation == "INSERT":
        return
    bases = base_tables(tx, stmt.table)
    hidden = hidden_tables(tx, bases + reachable(tx, (bases or [stmt.table])[-1], stmt.operation))
    if hidden:
        raise SqlRefused(f"{', '.join(hidden)} has row-level security the correction role does not "
                         "bypass: rows it cannot see could change unseen (R-DAT-2); refused. Run "
                         "corrections on such tables with a role that has BYPASSRLS")


_XACT = ("SELECT CAST(CAST(relid AS regclass) AS text) AS t, n_tup_ins AS ins, n_tup_upd AS upd, "
         "n_tup_del AS del FROM pg_stat_xact_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 "
         "ORDER BY 1")
_COUNTS = ("INSERT", "UPDATE", "DELETE")


def trigger_effects(tx, stmt: Statement, rows: int, effects: list[dict], ignore: str) -> list[dict]:
    """Inside the open apply transaction, after the statement ran: per table, the rows
    inserted/updated/deleted beyond the statement itself and its FK cascades (that is,
    by triggers), with the row versions this transaction wrote there. ``ignore``: a
    table of opskit's own (the commit marker). Empty on SQLite."""
    if tx.kind == "sqlite":
        return []
    expected: dict[str, list[int]] = {}

    def add(table: str, operation: str, n: int) -> None:
        expected.setdefault(table, [0, 0, 0])[_COUNTS.index(operation)] += n

    add((base_tables(tx, stmt.table) or [_table_name(tx, stmt.table)])[-1], stmt.operation, rows)
    for eff in effects:
        add(eff["table"], eff["operation"], len(eff["rows"]))
    _c, changed = tx.q(_XACT)
    out = []
    for r in changed:
        if r["t"] == ignore:
            continue
        have = [int(r["ins"]), int(r["upd"]), int(r["del"])]
        extra = [max(0, n - e) for n, e in zip(have, expected.get(r["t"], [0, 0, 0]))]
        if not any(extra):
            continue
        # the versions written by this transaction (not by a subtransaction of a trigger's
        # EXCEPTION block: those counts are right, their rows may be missing here)
        _c, written = tx.q(f"SELECT * FROM {r['t']} WHERE CAST(CAST(xmin AS text) AS bigint) = "
                           "txid_current() % 4294967296")
        out.append({"table": r["t"], "inserted": extra[0], "updated": extra[1], "deleted": extra[2],
                    "rows": written})
    return out


def trigger_touches(side: list[dict]) -> list[tuple[str, str, int]]:
    """(table, operation, rows) of what triggers changed, for the risk rules."""
    return [(e["table"], op, e[key]) for e in side
            for op, key in (("INSERT", "inserted"), ("UPDATE", "updated"), ("DELETE", "deleted"))
            if e[key]]


def trigger_tables(tx, tables: list[str]) -> list[str]:
    """Request time, read-only: tables named in the source of the user triggers on
    ``tables`` (pg_trigger -> pg_proc.prosrc, word match on the table name). A heuristic
    so the likely trigger effects bring their rules up front; the apply's count of what
    triggers really changed (``trigger_effects``) is the check that holds."""
    if tx.kind == "sqlite" or not tables:
        return []
    _c, rows = tx.q(
        "SELECT DISTINCT CAST(CAST(c.oid AS regclass) AS text) AS t FROM pg_trigger g "
        "JOIN pg_proc p ON p.oid = g.tgfoid JOIN pg_class c ON c.relkind IN ('r', 'p') "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT g.tgisinternal AND g.tgrelid = ANY(CAST(:ts AS regclass[])) "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND p.prosrc ~* ('\\m' || c.relname || '\\M') ORDER BY 1",
        {"ts": _regclass_array(tables)})
    return [r["t"] for r in rows]


def triggers_on(tx, tables: list[str]) -> list[dict]:
    """Request time, read-only: ``{table, triggers}`` for each of ``tables`` that has
    user triggers (what they change is known only at apply: the approver is told)."""
    if not tables:
        return []
    if tx.kind == "sqlite":
        found: dict[str, list[str]] = {}
        for t in tables:
            _c, rows = tx.q("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t "
                            "ORDER BY name", {"t": t.rpartition(".")[2]})
            if rows:
                found[t] = [r["name"] for r in rows]
        return [{"table": t, "triggers": names} for t, names in found.items()]
    _c, rows = tx.q(
        "SELECT CAST(CAST(g.tgrelid AS regclass) AS text) AS t, "
        "array_agg(CAST(g.tgname AS text) ORDER BY g.tgname) AS names FROM pg_trigger g "
        "WHERE NOT g.tgisinternal AND g.tgrelid = ANY(CAST(:ts AS regclass[])) GROUP BY g.tgrelid "
        "ORDER BY 1", {"ts": _regclass_array(tables)})
    return [{"table": r["t"], "triggers": list(r["names"])} for r in rows]
