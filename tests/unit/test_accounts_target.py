"""The batched host access of opskit.accounts.target: one round trip reads many files
(symlinks never followed) and runs many independent steps, each reporting its status."""
import os

from opskit.accounts.target import SYMLINK, Step, Target, gather, run_steps
from opskit.hosts import LocalHost


def test_gather_reads_files_without_following_symlinks(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    (root / "etc" / "odd name").write_bytes(b"\x00\xffbinary")
    os.symlink("/etc/hostname", root / "etc" / "link")
    target = Target.of(LocalHost("h", sysroot=str(root)))
    got = gather(target, {"p": "/etc/passwd", "o": "/etc/odd name", "l": "/etc/link",
                          "m": "/etc/missing"}, {"c": "echo hi; exit 3"})
    assert got["p"] == b"root:x:0:0::/root:/bin/sh\n" and got["o"] == b"\x00\xffbinary"
    assert got["l"] == SYMLINK and got["m"] is None
    assert got["c"] == b"hi\n" and got["c.rc"] == b"3"


def test_run_steps_reports_each_step_and_keeps_going(tmp_path):
    target = Target(LocalHost("h"))
    out = tmp_path / "out"
    steps = [Step("h", "a", "one", "first", [f"echo one > {out}"]),
             Step("h", "b", "two", "fails", ["echo doing", "false", f"echo never >> {out}"]),
             Step("h", "c", "three", "reads no stdin", ["cat", f"echo three >> {out}"])]
    run_steps(target, steps, timeout=30)
    assert [s.ok for s in steps] == [True, False, True]
    assert steps[1].error.startswith("exit status 1: doing")
    assert out.read_text() == "one\nthree\n"
