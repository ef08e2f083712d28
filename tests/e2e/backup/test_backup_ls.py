"""``opskit backup ls`` reads like ``ls -l`` (issue #22 item 8): each entry's mode
text, owner, group and mtime are compared with what coreutils' ``ls`` says of
the source; ``--json`` keeps typed fields."""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess

import pytest

from tests.harness.backup import BackupCli, write

pytestmark = pytest.mark.e2e

TZ = "Asia/Kolkata"   # +05:30, never UTC: local time must be local


def _ls(path: str) -> list[str]:
    """``ls -ld`` of ``path``: mode, links, owner, group, size..., minute mtime."""
    out = subprocess.run(["ls", "-ld", "--time-style=+%Y-%m-%d %H:%M", "--", path],
                         capture_output=True, text=True, check=True, env={**os.environ, "TZ": TZ})
    return out.stdout.split()


@pytest.fixture
def listed(tmp_path):
    """A source with every entry type and special bit, backed up once."""
    src = tmp_path / "src"
    (src / "shared").mkdir(parents=True)
    os.chmod(src / "shared", 0o1777)
    (src / "nox").mkdir()
    os.chmod(src / "nox", 0o1770)
    write(src / "report", b"x" * 10, 0o640)
    write(src / "suid", b"#!/bin/sh\n", 0o4755)
    write(src / "sgid", b"", 0o2640)
    write(src / "orphan", b"no owner", 0o600)
    os.chown(src / "orphan", 4242, 4343)         # ids with no name: shown as numbers
    os.symlink("report", src / "link")
    os.mkfifo(src / "pipe", 0o644)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.fspath(src / "sock"))
    sock.close()
    os.utime(src / "report", ns=(1_700_000_000_123_456_789,) * 2)
    cli = BackupCli(tmp_path)
    cli.backup(src)
    return cli, src


def test_json_keeps_typed_fields(listed):
    cli, src = listed
    rows = {r["path"]: r for r in cli.json("ls", "latest", str(src))}
    report = rows[f"{src}/report"]
    assert report["mode"] == 0o640 and report["mode_text"] == "-rw-r-----"
    assert report["size"] == 10 and report["target"] is None
    when = dt.datetime.fromisoformat(report["mtime"])
    assert when.tzinfo is not None and when.timestamp() == 1_700_000_000
    link = rows[f"{src}/link"]
    assert link["type"] == "symlink" and link["target"] == "report"
    assert link["mode_text"].startswith("l") and link["size"] == len("report")
    orphan = rows[f"{src}/orphan"]
    assert (orphan["uid"], orphan["gid"], orphan["user"], orphan["group"]) == (4242, 4343, None,
                                                                              None)
    assert rows[f"{src}/suid"]["mode"] == 0o4755 and rows[f"{src}/shared"]["mode"] == 0o1777
    assert isinstance(rows[str(src)]["uid"], int) and isinstance(rows[str(src)]["gid"], int)


def test_table_reads_like_ls_l(listed):
    cli, src = listed
    run = cli("ls", "latest", str(src), env={"TZ": TZ})
    assert run.exit_code == 0, run.output
    # rows after the header and its rule, by path (a symlink's row ends "-> target")
    lines = {line.split(" -> ")[0].split()[-1]: line for line in run.stdout.splitlines()[2:]}
    names = ["shared", "nox", "report", "suid", "sgid", "orphan", "link", "pipe", "sock"]
    for name in names:
        path = f"{src}/{name}"
        mode, _links, owner, group, _size, day, minute = _ls(path)[:7]
        cells = lines[path].split()
        assert cells[0] == mode.rstrip(".+"), (name, lines[path])
        assert cells[1:3] == [owner, group], (name, lines[path])
        assert f"{day} {minute}" in lines[path], (name, lines[path], TZ)
    assert [lines[f"{src}/{n}"].split()[0] for n in ("shared", "nox", "suid", "sgid", "pipe",
                                                     "sock", "link")] == [
        "drwxrwxrwt", "drwxrwx--T", "-rwsr-xr-x", "-rw-r-S---", "prw-r--r--", "srwxr-xr-x",
        "lrwxrwxrwx"]
    assert lines[f"{src}/link"].endswith(f"{src}/link -> report")
    assert lines[f"{src}/orphan"].split()[1:3] == ["4242", "4343"]
    assert "0o" not in run.stdout                      # no Python octal literals


def test_a_char_device_is_listed_with_c(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    try:
        os.mknod(src / "null", 0o20620, os.makedev(1, 3))
    except PermissionError:
        pytest.fail("cannot make device nodes here (needs CAP_MKNOD; CI runs as root)", pytrace=False)
    os.chmod(src / "null", 0o620)           # mknod's mode is masked by the umask
    cli = BackupCli(tmp_path)
    cli.backup(src)
    row, = cli.json("ls", "latest", f"{src}/null")
    assert row["mode_text"] == "crw--w----" and (row["major"], row["minor"]) == (1, 3)
    assert row["size"] is None
