"""LocalHost (the inventory's local entries): commands, timeouts, files, sysroot."""
import os
import stat
import sys
import time

import pytest

from opskit.core.errors import EXIT_OPERATIONAL, OperationalError
from opskit.hosts.base import (HostCommandError, HostError, HostFileNotFound, HostPathError,
                               HostTimeout, RunResult)
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
