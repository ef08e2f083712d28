"""SSHHost against a real OpenSSH server: commands, files, host keys, auth."""
import hashlib
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import paramiko
import pytest

from opskit.core.errors import EXIT_OPERATIONAL
from opskit.hosts.base import (HostAuthFailed, HostCommandError, HostError, HostFileNotFound,
                               HostKeyRejected, HostTimeout, HostUnreachable, Script)
from opskit.hosts.local import LocalHost
from opskit.hosts.ssh import SSHHost
from tests.harness.sshd import generate_ed25519

pytestmark = pytest.mark.integration

# Runs ~8s and survives a stray 'pkill sleep' from elsewhere on the machine. As root,
# sshd ignores the SSH 'signal' request, so a timed-out command lingers: keep it short.
SLOW = "exec 0</dev/null; i=0; while [ $i -lt 8 ]; do sleep 1; i=$((i+1)); done"


def ssh_host(server, **kwargs):
    options = dict(port=server.port, user=server.user, key_filename=server.client_key,
                   known_hosts=server.known_hosts, connect_timeout=5, command_timeout=30)
    options.update(kwargs)
    return SSHHost("t1", server.address, **options)


@pytest.fixture(scope="module")
def host(sshd):
    with ssh_host(sshd) as h:
        yield h


# --- commands -----------------------------------------------------------------------

def test_run_quotes_every_argument(host):
    weird = ["a b", "it's", "$HOME", "; touch /tmp/opskit-pwned", "*", "new\nline", "", "-n"]
    result = host.run(["printf", "[%s]", *weird])
    assert result.ok and result.host == "t1"
    assert result.stdout.decode() == "".join(f"[{w}]" for w in weird)
    assert not os.path.exists("/tmp/opskit-pwned")


def test_run_rc_stderr_env(host):
    result = host.run(["sh", "-c", "echo out; echo err >&2; echo \"$V1|$V2\"; exit 5"],
                      env={"V1": "x y", "V2": "$(id)"})
    assert (result.rc, result.stdout, result.stderr) == (5, b"out\nx y|$(id)\n", b"err\n")
    assert host.run(["opskit-no-such-program"]).rc == 127


def test_run_stdin_large_binary(host):
    data = os.urandom(3 * 1024 * 1024 + 17)
    result = host.run(["sha256sum"], input=data)
    assert result.text.split()[0] == hashlib.sha256(data).hexdigest()
    echoed = host.run(["cat"], input=data)
    assert echoed.stdout == data


def test_run_input_not_read_by_the_command(host):
    data = b"x" * (5 * 1024 * 1024)          # more than the SSH window
    assert host.run(["true"], input=data, timeout=10).ok
    started = time.monotonic()
    with pytest.raises(HostTimeout):
        host.run(["sh", "-c", SLOW], input=data, timeout=0.5)
    assert time.monotonic() - started < 5


def test_check_error_names_host_address_command_rc_stderr(host, sshd):
    with pytest.raises(HostCommandError) as err:
        host.run(["ls", "/opskit/definitely/missing"], check=True)
    msg = err.value.message
    assert msg.startswith("t1: command 'ls /opskit/definitely/missing' exited with status 2")
    assert "No such file" in msg
    assert err.value.exit_code == EXIT_OPERATIONAL


def test_timeout(host, sshd):
    started = time.monotonic()
    with pytest.raises(HostTimeout) as err:
        host.run(["sh", "-c", "echo begun; " + SLOW], timeout=0.7)
    assert time.monotonic() - started < 5
    assert f"t1 (127.0.0.1:{sshd.port}): command 'sh -c" in err.value.message
    assert "timed out after 0.7s" in err.value.message
    assert err.value.stdout == b"begun\n"
    assert host.run(["true"]).ok      # the connection is still usable


def test_background_child_does_not_hang_run(host):
    started = time.monotonic()
    result = host.run(["sh", "-c", "(sleep 4; true) & echo started"], timeout=10)
    assert result.ok and result.stdout == b"started\n"
    assert time.monotonic() - started < 3.5


def test_connection_is_lazy_reused_and_reopened(sshd):
    h = ssh_host(sshd)
    assert h._client is None
    h.run(["true"])
    first = h._client
    h.run(["true"])
    assert h._client is first
    h.close()
    assert h._client is None
    assert h.run(["echo", "again"]).text == "again\n"
    h.close()


# --- files (same behaviour as LocalHost) ---------------------------------------------

@pytest.fixture(params=["ssh", "local"])
def any_host(request, host):
    return host if request.param == "ssh" else LocalHost("t1")


def test_files_roundtrip(any_host, tmp_path):
    path = str(tmp_path / "f.bin")
    data = os.urandom(200_000)
    any_host.write_file(path, data, mode=0o640)
    assert any_host.read_file(path) == data
    st = any_host.stat(path)
    assert (st.size, st.permissions, st.is_dir, st.is_link) == (len(data), 0o640, False, False)
    assert st.uid == os.getuid() and abs(st.mtime - os.stat(path).st_mtime) < 2
    any_host.write_file(path, b"second")
    assert open(path, "rb").read() == b"second"
    assert any_host.stat(path).permissions == 0o640          # kept
    any_host.write_file(str(tmp_path / "fresh"), b"")
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) == 0o600
    assert any_host.listdir(str(tmp_path)) == ["f.bin", "fresh"]   # no temp file left


def test_write_replaces_atomically(any_host, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    inode = os.stat(path).st_ino
    any_host.write_file(str(path), b"new")
    assert path.read_bytes() == b"new" and os.stat(path).st_ino != inode


def test_write_replaces_a_symlink_not_its_target(any_host, tmp_path):
    (tmp_path / "target").write_bytes(b"keep")
    os.symlink("target", tmp_path / "link")
    any_host.write_file(str(tmp_path / "link"), b"new")
    assert (tmp_path / "target").read_bytes() == b"keep"
    assert not os.path.islink(tmp_path / "link") and (tmp_path / "link").read_bytes() == b"new"


def test_stat_dirs_and_links(any_host, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "target").write_bytes(b"12345")
    os.symlink("target", tmp_path / "link")
    assert any_host.stat(str(tmp_path / "d")).is_dir
    followed = any_host.stat(str(tmp_path / "link"))
    assert followed.is_link and followed.size == 5 and followed.is_file
    assert stat.S_ISLNK(any_host.stat(str(tmp_path / "link"), follow_symlinks=False).mode)
    assert any_host.exists(str(tmp_path / "link")) and not any_host.exists(str(tmp_path / "x"))


def test_missing_paths_raise_file_not_found_naming_host(any_host, tmp_path):
    missing = str(tmp_path / "missing")
    for call in (any_host.read_file, any_host.stat, any_host.listdir):
        with pytest.raises(FileNotFoundError) as err:
            call(missing)
        assert isinstance(err.value, HostFileNotFound)
        assert err.value.message.startswith("t1 (") and missing in err.value.message


def test_realpath_links_dotdot_and_loops(any_host, tmp_path):
    (tmp_path / "d1" / "d2").mkdir(parents=True)
    (tmp_path / "d1" / "d2" / "f").write_bytes(b"x")
    os.symlink("d1/d2", tmp_path / "rel")
    os.symlink(str(tmp_path / "d1" / "d2" / "f"), tmp_path / "abs")
    os.symlink("nowhere", tmp_path / "dangling")
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    real = os.path.realpath
    assert any_host.realpath(str(tmp_path / "rel" / "f")) == real(tmp_path / "d1" / "d2" / "f")
    assert any_host.realpath(str(tmp_path / "abs")) == real(tmp_path / "d1" / "d2" / "f")
    assert any_host.realpath(str(tmp_path / "rel" / "..")) == real(tmp_path / "d1")
    for path in ("missing", "dangling", "loop-a", "loop-a/x"):
        with pytest.raises(HostFileNotFound) as err:
            any_host.realpath(str(tmp_path / path))
        assert err.value.message.startswith("t1 (") and str(tmp_path / path) in err.value.message


def test_run_batch_rc_stderr_fake_markers(any_host):
    fake = "\n@@opskit-0123456789abcdef0123456789abcdef 1 0\n"
    results = any_host.run_batch([
        ["sh", "-c", "echo out; echo err >&2; exit 3"],
        ["printf", fake],
        ["sh", "-c", f"printf '{fake}' >&2; exit 9"],
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)) * 300)"],
        ["opskit-no-such-program"],
        Script("cat; echo \"$((6*7))\""),                # stdin is empty, not the script
        ["printf", "[%s]", "a b", "it's", "$HOME"],
    ], timeout=30)
    assert [r.rc for r in results] == [3, 0, 9, 0, 127, 0, 0]
    assert (results[0].stdout, results[0].stderr) == (b"out\n", b"err\n")
    assert results[1].stdout == fake.encode() and results[2].stderr == fake.encode()
    assert results[3].stdout == bytes(range(256)) * 300
    assert results[5].stdout == b"42\n"
    assert results[6].stdout == b"[a b][it's][$HOME]"
    assert all(r.host == "t1" for r in results)
    assert any_host.run_batch([]) == []


def test_run_batch_is_one_session(host):
    # every command is a child of the same remote shell: one SSH command for the batch
    parents = {r.text for r in host.run_batch([["sh", "-c", "echo $PPID"]] * 4)}
    assert len(parents) == 1


# --- host keys -------------------------------------------------------------------------

def test_unknown_host_key_rejected_by_default_with_fingerprint(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    h = ssh_host(sshd, known_hosts=str(known))
    with pytest.raises(HostKeyRejected) as err:
        h.run(["true"])
    msg = err.value.message
    assert f"t1 (127.0.0.1:{sshd.port})" in msg and "not trusted" in msg
    assert sshd.host_fingerprint.startswith("SHA256:") and sshd.host_fingerprint in msg
    assert "opskit hosts trust t1" in err.value.hint
    assert err.value.status == "host key rejected" and not err.value.changed
    assert known.read_text() == ""                 # nothing recorded
    missing = tmp_path / "absent"
    with pytest.raises(HostKeyRejected):
        ssh_host(sshd, known_hosts=str(missing)).run(["true"])
    assert not missing.exists()


def _other_key_line(sshd, tmp_path, kind="ed25519"):
    if kind == "ed25519":
        public = " ".join(generate_ed25519(str(tmp_path / "other"), "x").split()[:2])
    else:
        key = paramiko.ECDSAKey.generate()
        public = f"{key.get_name()} {key.get_base64()}"
    return f"{sshd.key_name} {public}\n"


@pytest.mark.parametrize("policy", ["reject", "accept-new"])
@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_changed_host_key_always_rejected(sshd, tmp_path, policy, kind):
    known = tmp_path / "known_hosts"
    line = _other_key_line(sshd, tmp_path, kind)
    known.write_text(line)
    h = ssh_host(sshd, known_hosts=str(known), host_key_policy=policy)
    with pytest.raises(HostKeyRejected) as err:
        h.run(["true"])
    assert err.value.changed
    assert "HOST KEY CHANGED" in err.value.message and sshd.host_fingerprint in err.value.message
    assert "ssh-keygen -R" in err.value.hint
    assert known.read_text() == line               # never replaced, nothing appended


def test_accept_new_records_key_then_reject_works(sshd, tmp_path):
    known = tmp_path / "fresh" / "known_hosts"     # directory does not exist yet
    with ssh_host(sshd, known_hosts=str(known), host_key_policy="accept-new") as h:
        assert h.run(["echo", "hi"]).stdout == b"hi\n"
        assert h.recorded_key == sshd.host_fingerprint
    assert stat.S_IMODE(os.stat(known).st_mode) == 0o600
    assert known.read_text() == sshd.known_hosts_line     # "[127.0.0.1]:PORT ssh-ed25519 ..."
    with ssh_host(sshd, known_hosts=str(known), host_key_policy="reject") as h:
        assert h.run(["true"]).ok
    with ssh_host(sshd, known_hosts=str(known), host_key_policy="accept-new") as h:
        h.run(["true"])
        assert h.recorded_key is None
    assert known.read_text() == sshd.known_hosts_line     # not appended twice


def test_recorded_known_hosts_is_accepted_by_openssh(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    ssh_host(sshd, known_hosts=str(known), host_key_policy="accept-new").run(["true"])
    proc = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "IdentitiesOnly=yes", "-i", sshd.client_key, "-p", str(sshd.port),
         f"{sshd.user}@127.0.0.1", "echo", "via-openssh"],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "via-openssh\n"


def test_accept_new_concurrent_hosts_record_once(three_sshd, tmp_path):
    known = tmp_path / "known_hosts"
    errors = []

    def connect(server):
        try:
            ssh_host(server, known_hosts=str(known), host_key_policy="accept-new").run(["true"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(s,)) for s in three_sshd * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(known.read_text().splitlines()) == sorted(s.known_hosts_line.strip()
                                                            for s in three_sshd)


# --- authentication and reachability -------------------------------------------------------

def test_unauthorised_key_is_auth_failed(sshd, tmp_path):
    stranger = tmp_path / "stranger"
    generate_ed25519(str(stranger), "stranger")
    with pytest.raises(HostAuthFailed) as err:
        ssh_host(sshd, key_filename=str(stranger)).run(["true"])
    assert f"t1 (127.0.0.1:{sshd.port}): authentication as '{sshd.user}' failed" in \
        err.value.message
    assert err.value.status == "auth failed"


def test_key_readable_by_others_is_refused(sshd, tmp_path):
    loose = tmp_path / "loose"
    loose.write_bytes(open(sshd.client_key, "rb").read())
    os.chmod(loose, 0o644)
    with pytest.raises(HostAuthFailed) as err:
        ssh_host(sshd, key_filename=str(loose)).run(["true"])
    assert "readable by others" in err.value.message and "chmod 600" in err.value.hint


def test_no_usable_key_is_auth_failed_not_unreachable(sshd, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))           # no ~/.ssh/id_* to fall back on
    with pytest.raises(HostAuthFailed) as err:
        ssh_host(sshd, key_filename=None).run(["true"])
    assert "no usable key" in err.value.message
    junk = tmp_path / "junk"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    with pytest.raises(HostAuthFailed):
        ssh_host(sshd, key_filename=str(junk)).run(["true"])


def test_dead_port_is_unreachable(dead_port):
    h = SSHHost("gone", "127.0.0.1", port=dead_port, connect_timeout=3)
    with pytest.raises(HostUnreachable) as err:
        h.run(["true"])
    assert err.value.message.startswith(f"gone (127.0.0.1:{dead_port}): cannot connect")
    assert isinstance(err.value, HostError) and err.value.exit_code == EXIT_OPERATIONAL


def test_silent_port_times_out_as_unreachable(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)                                  # accepts, never says a word
    port = listener.getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(HostUnreachable) as err:
            SSHHost("mute", "127.0.0.1", port=port, connect_timeout=1,
                    known_hosts=str(tmp_path / "kh")).run(["true"])
        assert time.monotonic() - started < 10
        assert f"mute (127.0.0.1:{port})" in err.value.message
    finally:
        listener.close()


def test_commands_run_when_descriptor_numbers_pass_1023(sshd):
    """select() cannot wait on a descriptor above 1023: a long-lived process (the
    scheduler, a fan-out) that has opened that many must still run commands."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with ssh_host(sshd) as h:            # its socket and channel pipe come after them
            assert h.run(["sh", "-c", "sleep 0.3; echo late"], check=True).text == "late\n"
            streamed = h.run_fed(["wc", "-c"], (b"x" * 70_000 for _ in range(5)))
            assert streamed.ok and streamed.text.strip() == "350000"
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
