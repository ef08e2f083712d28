"""The HTML export shows what each request changes, old -> new (issue #17 item 9).

Real SQLite target, subprocess export; the page is read as HTML (the diff table
rendered by corrections/templates/export.html), and it must still verify offline.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.harness.corrections import approve_fully, make_sqlite_target, make_world


class _Diff(HTMLParser):
    """Rows of the table with class 'diff', as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.rows, self._in, self._cell = [], False, None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "diff") in attrs:
            self._in = True
        elif self._in and tag == "tr":
            self.rows.append([])
        elif self._in and tag == "td":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif self._in and tag == "td":
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_the_html_export_renders_the_row_diff(opskit, tmp_path):
    w = make_world(tmp_path, make_sqlite_target(tmp_path / "his.sqlite"))
    svc = w.svc()
    _e, upd = svc.request("his", "UPDATE claims SET amount = :a WHERE id = :id", {"a": "350", "id": "43"},
                          "typo <b>x</b>", "INC-1", w.signer("alice"))
    approve_fully(w, svc, upd.id)
    svc.apply(upd.id, w.signer("mike"))
    _e, dele = svc.request("his", "DELETE FROM refunds WHERE id = :id", {"id": "7"}, "duplicate", "INC-2",
                           w.signer("alice"))
    svc.ledger.close()
    out = tmp_path / "ledger.html"
    run = opskit("correct", "export", "--format", "html", "--out", out, env=w.env())
    assert run.exit_code == 0, run.output
    page = out.read_text()
    parser = _Diff()
    parser.feed(page)
    rows = [r for r in parser.rows if r]
    # the applied update: exactly the changed column, old -> new; unchanged columns not listed
    assert [upd.id, "applied", "claims", "id=43", "amount", "300", "350"] in [
        r[:5] + [re.sub(r"\.0+$", "", r[5]), re.sub(r"\.0+$", "", r[6])] for r in rows]
    assert not any(r[0] == upd.id and r[4] in ("status", "insured_id", "id") for r in rows)
    # the pending delete: the row that will go, whole
    pending = [r for r in rows if r[0] == dele.id]
    assert len(pending) == 1 and pending[0][4] == "(row deleted)" and "duplicate payment" in pending[0][5]
    assert "<b>x</b>" not in page
    ok = opskit("correct", "verify", "--ledger", out, env=w.env())
    assert ok.exit_code == 0, ok.output
