"""The batched host access of opskit.accounts.target: one round trip reads many files
(symlinks never followed) and runs many independent steps, each reporting its status."""
import os

import pytest

from opskit.accounts.target import (SYMLINK, Step, Target, gather, run_steps,
                                    run_steps_then_gather)
from opskit.hosts import HostCommandError, LocalHost


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


def test_steps_and_gather_share_one_batch_and_fake_markers_change_nothing(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    target = Target.of(LocalHost("h", sysroot=str(root)))
    fake = "@@opskit-step-end 0 0\n@@opskit-end 2\n"
    steps = [Step("h", "a", "write", "writes", [f"printf '{fake}'",
                                                 f"echo written > {root}/etc/motd", "exit 4"]),
             Step("h", "b", "two", "ok", ["echo fine"])]
    got = run_steps_then_gather(target, steps, {"motd": "/etc/motd"},
                                {"c": f"printf '{fake}'"}, timeout=30)
    assert [s.ok for s in steps] == [False, True]
    assert steps[0].error == "exit status 4: @@opskit-step-end 0 0\n@@opskit-end 2"
    assert got["motd"] == b"written\n"                  # read after the step wrote it
    assert got["c"] == fake.encode() and got["c.rc"] == b"0"


def test_steps_after_the_batch_died_did_not_run(tmp_path):
    out = tmp_path / "out"
    steps = [Step("h", "a", "one", "first", [f"echo one > {out}"]),
             Step("h", "b", "two", "kills the batch shell", ["echo bye", "kill -9 $$"]),
             Step("h", "c", "three", "never", [f"echo three >> {out}"])]
    run_steps(Target(LocalHost("h")), steps, timeout=30)
    assert [s.ok for s in steps] == [True, False, False]
    assert steps[1].error == steps[2].error == ("did not run (the batch stopped early: "
                                                "exit status -9)")
    assert out.read_text() == "one\n"


def test_gather_with_a_dead_batch_names_what_got_no_answer(tmp_path):
    target = Target(LocalHost("h"))
    with pytest.raises(HostCommandError) as err:
        gather(target, {"p": str(tmp_path / "x")}, {"ok": "echo fine", "dies": "kill -9 $$",
                                                    "after": "true"}, timeout=30)
    assert err.value.message.startswith("h (local): reading account data failed "
                                        "(no answer for dies, after): ")
