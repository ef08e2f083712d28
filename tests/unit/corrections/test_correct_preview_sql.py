"""The vetted UPDATE/INSERT rewritten into read-only SELECTs of the values it will write,
and the row diff built from them (issue #17 "Approver view"). No database: the SQL text
and the diff rows are checked; tests/integration/corrections/test_correct_approver_view.py
runs them on PostgreSQL."""
from __future__ import annotations

from opskit.corrections import workflow as wf
from opskit.corrections.report import row_diff
from opskit.corrections.sqlcheck import NEW_PREFIX, new_values_sql, parse_statement


def test_an_update_becomes_a_select_of_every_row_and_each_new_value_cast_to_its_column():
    stmt = parse_statement("UPDATE claims c SET amount = c.amount + :d, note = lower(:n) "
                           "WHERE c.id = :id AND note <> ':not_a_param'")
    plan = new_values_sql(stmt, {"amount": "numeric(12,2)"})
    [(sql, cols)] = plan.queries
    assert cols == ["amount", "note"] and plan.pending == []
    assert sql.startswith("SELECT *, CAST((c.amount + :d) AS numeric(12,2)) AS \"opskit:new:0\", "
                          "(lower(:n)) AS \"opskit:new:1\" FROM claims c WHERE ")
    assert sql.endswith("c.id = :id AND note <> ':not_a_param'")
    assert "$" not in sql                      # parameters stay named, bound at run time
    assert not sql.lstrip().upper().startswith(("UPDATE", "DELETE", "INSERT"))


def test_multi_column_assignment_is_split_and_what_only_the_apply_knows_is_named():
    stmt = parse_statement("UPDATE claims SET (amount, status) = (:a, 'open'), codes[1] = 'x', "
                           "note = DEFAULT WHERE id = :id")
    plan = new_values_sql(stmt, {})
    [(sql, cols)] = plan.queries
    assert cols == ["amount", "status"]
    assert '(:a) AS "opskit:new:0"' in sql and "('open') AS \"opskit:new:1\"" in sql
    assert plan.pending == ["codes (assigned through a subscript or field)", "note (set to its DEFAULT)"]


def test_an_insert_becomes_one_select_per_values_tuple():
    stmt = parse_statement("INSERT INTO claims (id, amount, status) VALUES (:i, 1.5, DEFAULT), (:j, 2, 'x')")
    plan = new_values_sql(stmt, {"amount": "numeric(12,2)"})
    assert [c for _s, c in plan.queries] == [["id", "amount"], ["id", "amount", "status"]]
    assert plan.queries[0][0] == ('SELECT (:i) AS "opskit:new:0", '
                                  'CAST((1.5) AS numeric(12,2)) AS "opskit:new:1"')
    assert plan.pending == ["status (set to its DEFAULT)"]


def test_a_delete_has_nothing_to_compute():
    assert new_values_sql(parse_statement("DELETE FROM claims WHERE id = :id"), {}).queries == []


def _state(**kw) -> wf.RequestState:
    st = wf.RequestState(id="CR-1", table="claims", operation="UPDATE",
                         sql="UPDATE claims SET amount = :a WHERE id = :id", params={"a": "1", "id": "43"})
    for k, v in kw.items():
        setattr(st, k, v)
    return st


def test_the_diff_lists_only_the_changed_columns_and_rows_left_as_they_are():
    preview = {"computed": "request", "pending": [], "rows": [
        {"key": {"id": 43}, "old": {"amount": "300.00", "meta": {"a": 1}},
         "new": {"amount": "1.00", "meta": None}},
        {"key": {"id": 44}, "old": {}, "new": {}}]}
    diff = row_diff(_state(preview=preview))
    got = [(d["row"], d["column"], d["old"], d["new"]) for d in diff]
    assert got == [("id=43", "amount", "300.00", "1.00"), ("id=43", "meta", '{"a": 1}', "NULL"),
                   ("id=44", "(no column changes)", "", "")]
    assert NEW_PREFIX not in repr(diff)


def test_after_apply_the_diff_is_the_after_image_not_the_preview():
    before = [{"id": 43, "amount": "300.00", "status": "open"}]
    after = [{"id": 43, "amount": "7.00", "status": "open"}]
    preview = {"rows": [{"key": {"id": 43}, "old": {"amount": "300.00"}, "new": {"amount": "1.00"}}]}
    st = _state(preview=preview, before=before, state=wf.APPLIED, outcome={"after": after})
    assert [(d["column"], d["old"], d["new"]) for d in row_diff(st)] == [("amount", "300.00", "7.00")]
