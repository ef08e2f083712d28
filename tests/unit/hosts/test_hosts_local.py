"""LocalHost (the inventory's local entries): commands, timeouts, files, sysroot."""
import os
import stat
import sys
import time

import pytest

from opskit.core.errors import EXIT_OPERATIONAL, OperationalError
from opskit.hosts.base import (Host, HostBatchError, HostCommandError, HostError,
                               HostFileNotFound, HostPathError, HostTimeout, RunResult, Script)
from opskit.hosts.local import LocalHost


@pytest.fixture
def host():
    with LocalHost("box") as h:
        yield h


def test_run_argv_is_not_a_shell_string(host, tmp_path):
    weird = ["a b", "it's", "$HOME", "; rm -rf /", "*", "new\nline", ""]
    result = host.run([sys.executable, "-c", "import sys; print(repr(sys.argv[1:]))", *weird])
    assert isinstance(result, RunResult)
    assert result.ok and result.rc == 0 and result.host == "box"
    assert result.stdout.decode().strip() == repr(weird)
    assert result.duration > 0


def test_run_rc_stderr_input_env(host):
    result = host.run(["sh", "-c", "cat; echo oops >&2; echo $OPSKIT_T; exit 4"],
                      input=b"fed\n", env={"OPSKIT_T": "v 1"})
    assert (result.rc, result.stdout, result.stderr) == (4, b"fed\nv 1\n", b"oops\n")
    assert "PATH" in host.run(["env"], env={"X": "1"}).text   # env adds, not replaces


def test_check_raises_naming_host_command_rc_and_stderr(host):
    with pytest.raises(HostCommandError) as err:
        host.run(["sh", "-c", "echo first >&2; echo the-real-reason >&2; exit 3"], check=True)
    exc = err.value
    assert isinstance(exc, OperationalError) and exc.exit_code == EXIT_OPERATIONAL
    assert exc.message.startswith("box: command 'sh -c")
    assert "exited with status 3" in exc.message and "the-real-reason" in exc.message
    assert exc.result.rc == 3


def test_missing_program_is_rc_127(host):
    result = host.run(["opskit-no-such-program"])
    assert result.rc == 127 and b"command not found" in result.stderr


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1].startswith("Z")   # zombie: dead, not reaped
    except FileNotFoundError:
        return True


def test_timeout_kills_the_whole_process_group(host):
    started = time.monotonic()
    with pytest.raises(HostTimeout) as err:
        host.run(["sh", "-c", "(i=0; while [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done) & "
                               "echo $!; wait"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert "box (local): command 'sh -c" in err.value.message and "timed out after 0.5s" in \
        err.value.message
    child = int(err.value.stdout.split()[0])
    deadline = time.monotonic() + 5
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), "the background child of a timed-out command survived"


def test_files_roundtrip(host, tmp_path):
    path = str(tmp_path / "f.txt")
    host.write_file(path, b"one", mode=0o640)
    assert host.read_file(path) == b"one"
    st = host.stat(path)
    assert st.size == 3 and st.permissions == 0o640 and st.is_file and not st.is_dir
    assert st.uid == os.getuid()
    host.write_file(path, b"two")                      # mode kept when not given
    assert host.stat(path).permissions == 0o640
    host.write_file(str(tmp_path / "new"), b"")        # new files are private by default
    assert host.stat(str(tmp_path / "new")).permissions == 0o600
    assert host.listdir(str(tmp_path)) == ["f.txt", "new"]   # no temp files left
    assert host.exists(path) and not host.exists(str(tmp_path / "nope"))
    assert host.stat(str(tmp_path)).is_dir


def test_write_is_atomic_replace(host, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    inode = os.stat(path).st_ino
    host.write_file(str(path), b"new")
    assert path.read_bytes() == b"new" and os.stat(path).st_ino != inode


def test_missing_file_errors_name_host(host, tmp_path):
    for call in (lambda p: host.read_file(p), lambda p: host.stat(p), lambda p: host.listdir(p)):
        with pytest.raises(FileNotFoundError) as err:
            call(str(tmp_path / "missing"))
        assert isinstance(err.value, HostFileNotFound) and isinstance(err.value, HostError)
        assert err.value.message.startswith("box (local): ")
        assert err.value.filename == str(tmp_path / "missing")
    with pytest.raises(HostError):
        host.write_file(str(tmp_path / "no" / "dir" / "f"), b"x")


def test_symlink_stat(host, tmp_path):
    (tmp_path / "target").write_bytes(b"12345")
    os.symlink("target", tmp_path / "link")
    followed = host.stat(str(tmp_path / "link"))
    assert followed.is_link and followed.size == 5 and stat.S_ISREG(followed.mode)
    own = host.stat(str(tmp_path / "link"), follow_symlinks=False)
    assert own.is_link and stat.S_ISLNK(own.mode)


# --- realpath -------------------------------------------------------------------------

def test_realpath_follows_relative_and_absolute_links(host, tmp_path):
    (tmp_path / "d1" / "d2").mkdir(parents=True)
    (tmp_path / "d1" / "d2" / "f").write_bytes(b"x")
    os.symlink("d1/d2", tmp_path / "rel")                      # relative
    os.symlink(str(tmp_path / "d1" / "d2" / "f"), tmp_path / "abs")   # absolute
    os.symlink("../rel/f", tmp_path / "d1" / "chain")          # a link through a link
    real_f = os.path.realpath(tmp_path / "d1" / "d2" / "f")
    assert host.realpath(str(tmp_path / "rel" / "f")) == real_f
    assert host.realpath(str(tmp_path / "abs")) == real_f
    assert host.realpath(str(tmp_path / "d1" / "chain")) == real_f
    assert host.realpath(str(tmp_path / "d1" / "d2" / "f")) == real_f   # no link at all
    assert host.realpath("/") == "/"


def test_realpath_dotdot_applies_where_the_link_led(host, tmp_path):
    (tmp_path / "d1" / "d2").mkdir(parents=True)
    os.symlink("d1/d2", tmp_path / "link")
    # the kernel's answer: '..' of the link's target (d1), not of the link's directory
    assert host.realpath(str(tmp_path / "link" / "..")) == os.path.realpath(tmp_path / "d1")
    assert host.realpath(str(tmp_path / "d1" / ".." / "d1" / "." / "d2")) == \
        os.path.realpath(tmp_path / "d1" / "d2")
    assert host.realpath("/../../..") == "/"


def test_realpath_relative_path_starts_at_the_working_directory(host, tmp_path, monkeypatch):
    (tmp_path / "f").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert host.realpath("f") == os.path.realpath(tmp_path / "f")
    assert host.realpath(".") == os.path.realpath(tmp_path)


@pytest.mark.parametrize("make, path", [
    (lambda t: None, "missing"),
    (lambda t: os.symlink("nowhere", t / "dangling"), "dangling"),
    (lambda t: os.symlink("self", t / "self"), "self"),
    (lambda t: (os.symlink("b", t / "a"), os.symlink("a", t / "b")), "a/x"),
])
def test_realpath_missing_dangling_and_loops_are_not_found(host, tmp_path, make, path):
    make(tmp_path)
    with pytest.raises(HostFileNotFound) as err:
        host.realpath(str(tmp_path / path))
    assert err.value.message.startswith("box (local): ") and str(tmp_path / path) in \
        err.value.message


def test_realpath_through_a_file_is_refused(host, tmp_path):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(HostError) as err:
        host.realpath(str(tmp_path / "f" / "x"))
    assert "Not a directory" in err.value.message and not isinstance(err.value, FileNotFoundError)


# --- run_batch --------------------------------------------------------------------------

def test_run_batch_gives_each_command_its_rc_stdout_stderr(host):
    results = host.run_batch([
        ["sh", "-c", "echo out; echo err >&2; exit 3"],
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)))"],
        ["printf", "%s", "no newline"],
        ["opskit-no-such-program"],
        ["exit", "4"],                                   # a program name, never a builtin
        ["cat"],                                         # stdin is empty, not the script
        Script("x=$((2+3)); echo \"$x\"; echo oops >&2; exit 6"),
        Script("if then fi"),                            # a syntax error stays in its script
        ["echo", "$HOME", "a b"],
    ], timeout=30)
    assert [r.rc for r in results] == [3, 0, 0, 127, 127, 0, 6, 2, 0]
    assert (results[0].stdout, results[0].stderr) == (b"out\n", b"err\n")
    assert results[1].stdout == bytes(range(256)) and results[1].stderr == b""
    assert results[2].stdout == b"no newline"
    assert b"not found" in results[3].stderr
    assert results[5].stdout == b""
    assert (results[6].stdout, results[6].stderr) == (b"5\n", b"oops\n")
    assert results[7].stderr and results[7].stdout == b""
    assert results[8].stdout == b"$HOME a b\n"
    assert all(r.host == "box" for r in results)
    assert results[0].argv == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert results[6].argv == ["sh", "-s"]          # a script is never shown in messages


def test_run_batch_is_one_shell(host):
    # every command is a child of the same batch shell: one process, one round trip over SSH
    parents = {r.text for r in host.run_batch([["sh", "-c", "echo $PPID"]] * 3)}
    assert len(parents) == 1


def test_run_batch_output_that_looks_like_a_marker_is_just_output(host):
    fake = "\n@@opskit-0123456789abcdef0123456789abcdef 1 0\n@@opskit-step-end 0 0\n"
    results = host.run_batch([["printf", fake], ["sh", "-c", f"printf '{fake}' >&2; exit 9"],
                              ["echo", "last"]])
    assert [r.rc for r in results] == [0, 9, 0]
    assert results[0].stdout == fake.encode() and results[1].stderr == fake.encode()
    assert results[2].stdout == b"last\n"


def test_run_batch_empty_runs_nothing(host):
    assert host.run_batch([]) == []


def test_run_batch_script_never_on_a_command_line(host):
    secret = "opskit-batch-secret-" + os.urandom(4).hex()
    result = host.run_batch([Script(f"s={secret}; ps -e -o args")])[0]
    assert result.ok and b"sh -s" in result.stdout and secret.encode() not in result.stdout


def test_run_batch_timeout_covers_the_whole_batch(host):
    started = time.monotonic()
    with pytest.raises(HostTimeout):
        host.run_batch([["sleep", "0.4"]] * 10, timeout=1)
    assert time.monotonic() - started < 5


def test_run_batch_shell_dying_early_reports_what_finished(host):
    with pytest.raises(HostBatchError) as err:
        host.run_batch([["echo", "one"], Script("echo dying >&2; kill -9 $$"), ["echo", "never"]])
    exc = err.value
    assert isinstance(exc, HostCommandError) and exc.exit_code == EXIT_OPERATIONAL
    assert [r.stdout for r in exc.results] == [b"one\n"]
    assert exc.reason == "dying"
    assert exc.message == "box (local): batch stopped after 1 of 3 commands: dying"


class LoopingHost(LocalHost):
    """A LocalHost using the interface's default run_batch (one run per command)."""

    run_batch = Host.run_batch


def test_default_run_batch_runs_each_command_alone():
    host = LoopingHost("loop")
    results = host.run_batch([["sh", "-c", "echo a; echo b >&2; exit 2"], ["cat"],
                              Script("echo \"$((1+1))\"; exit 5"), ["opskit-no-such-program"]])
    assert [(r.rc, r.stdout, r.stderr) for r in results[:3]] == [
        (2, b"a\n", b"b\n"), (0, b"", b""), (5, b"2\n", b"")]
    assert results[3].rc == 127 and results[2].argv == ["sh", "-s"]
    assert host.run_batch([]) == []
    started = time.monotonic()
    with pytest.raises(HostTimeout):                  # the deadline is the batch's, not each's
        host.run_batch([["sleep", "0.4"]] * 10, timeout=1)
    assert time.monotonic() - started < 3


# --- sysroot --------------------------------------------------------------------------

@pytest.fixture
def sysroot(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("imageuser:x:1000:1000::/home/i:/bin/sh\n")
    (tmp_path / "outside").write_text("secret")
    return root


def test_sysroot_maps_file_paths(sysroot):
    host = LocalHost("img", sysroot=str(sysroot))
    assert host.sysroot == str(sysroot)
    assert host.read_file("/etc/passwd").startswith(b"imageuser")
    assert host.read_file("etc/passwd").startswith(b"imageuser")     # relative = from the root
    assert host.listdir("/") == ["etc"]
    host.write_file("/etc/motd", b"hi")
    assert (sysroot / "etc" / "motd").read_bytes() == b"hi"
    assert host.exists("/etc/motd") and not host.exists("/etc/shadow")
    assert host.stat("/").is_dir
    assert host.read_file("/etc/../etc/passwd").startswith(b"imageuser")   # stays inside
    # commands run on the real machine; the caller passes the root itself
    assert host.run(["ls", host.sysroot]).text.split() == ["etc"]


@pytest.mark.parametrize("path", ["../outside", "/../outside", "/etc/../../outside",
                                  "etc/../../../../etc/passwd"])
def test_sysroot_refuses_dotdot_escape(sysroot, path):
    host = LocalHost("img", sysroot=str(sysroot))
    with pytest.raises(HostPathError) as err:
        host.read_file(path)
    assert "img (local, sysroot" in err.value.message and "leaves the sysroot" in err.value.message
    with pytest.raises(HostPathError):
        host.write_file(path, b"x")
    assert (sysroot.parent / "outside").read_text() == "secret"


def test_sysroot_refuses_symlink_escape(sysroot):
    os.symlink("/etc", sysroot / "abs")                 # absolute: the real /etc
    os.symlink("../..", sysroot / "etc" / "up")         # relative, climbing out
    host = LocalHost("img", sysroot=str(sysroot))
    for path in ("/abs/passwd", "/etc/up/outside", "/etc/up"):
        with pytest.raises(HostPathError) as err:
            host.read_file(path)
        assert "outside the sysroot" in err.value.message
    with pytest.raises(HostPathError):
        host.write_file("/etc/up/outside", b"pwned")
    host.write_file("/etc/up", b"now a file")          # the link itself is replaced, inside
    assert (sysroot / "etc" / "up").read_bytes() == b"now a file"
    with pytest.raises(HostPathError):
        host.listdir("/abs")
    with pytest.raises(HostPathError):
        host.stat("/abs")
    assert (sysroot.parent / "outside").read_text() == "secret"
    # the link itself can be inspected without following it
    assert host.stat("/abs", follow_symlinks=False).is_link
    assert host.exists("/abs")


def test_sysroot_symlink_inside_is_followed(sysroot):
    os.symlink("passwd", sysroot / "etc" / "alias")
    os.symlink("/etc", sysroot / "etc2")   # absolute, but resolving inside? no: real /etc
    host = LocalHost("img", sysroot=str(sysroot))
    assert host.read_file("/etc/alias").startswith(b"imageuser")
    with pytest.raises(HostPathError):
        host.read_file("/etc2/passwd")


def test_sysroot_must_exist(tmp_path):
    with pytest.raises(HostPathError):
        LocalHost("img", sysroot=str(tmp_path / "nope"))


# --- sysroot: realpath resolves as chroot would ------------------------------------------

def test_sysroot_realpath_absolute_link_resolves_inside(sysroot):
    os.symlink("/etc/passwd", sysroot / "abs")                 # absolute: the tree's /etc
    os.symlink("/etc", sysroot / "etc-dir")
    os.symlink("../../../../..", sysroot / "etc" / "up")      # climbs past the root: stays at /
    host = LocalHost("img", sysroot=str(sysroot))
    assert host.realpath("/abs") == "/etc/passwd"
    assert host.realpath("/etc-dir/passwd") == "/etc/passwd"
    assert host.realpath("/etc/up") == "/"
    assert host.realpath("/etc/up/etc/passwd") == "/etc/passwd"
    assert host.realpath("/../../etc/passwd") == "/etc/passwd"
    assert host.realpath("etc/passwd") == "/etc/passwd"       # relative: from the root
    assert host.realpath("/") == "/"


def test_sysroot_realpath_never_answers_with_the_real_machine(sysroot):
    # /usr/bin exists on the real machine, not in the tree: chroot finds nothing there
    os.symlink("/usr/bin", sysroot / "bin")
    os.symlink("../../outside", sysroot / "etc" / "out")       # the file next to the tree
    os.symlink(str(sysroot.parent / "outside"), sysroot / "full")   # its real absolute path
    host = LocalHost("img", sysroot=str(sysroot))
    for path in ("/bin", "/etc/out", "/full"):
        with pytest.raises(HostFileNotFound) as err:
            host.realpath(path)
        assert err.value.message.startswith("img (local, sysroot")
    (sysroot / "outside").write_text("in the tree")
    assert host.realpath("/etc/out") == "/outside"             # '..' at the root stays there
