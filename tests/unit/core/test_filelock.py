"""FileLock: real flock locks held by real child processes."""
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from opskit.core.errors import EXIT_OPERATIONAL, LockHeldError, OperationalError
from opskit.core.filelock import FileLock

HOLDER = textwrap.dedent("""
    import sys
    from opskit.core.filelock import FileLock
    lock = FileLock(sys.argv[1], shared=sys.argv[2] == "shared")
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()          # hold until the parent closes our stdin
    lock.release()
    print("released", flush=True)
""")


class Holder:
    """A child process holding a lock until ``release()``."""

    def __init__(self, path, shared=False):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path),
                                      "shared" if shared else "exclusive"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc.stdin.close()


@pytest.fixture
def lock_path(tmp_path):
    return tmp_path / "thing.lock"


def test_exclusive_lock_held_elsewhere_times_out_naming_path_and_pid(lock_path):
    holder = Holder(lock_path)
    try:
        start = time.monotonic()
        with pytest.raises(LockHeldError) as info:
            FileLock(lock_path, timeout=0.3).acquire()
        waited = time.monotonic() - start
        assert 0.25 <= waited < 3
        assert str(lock_path) in info.value.message
        assert f"pid {holder.proc.pid}" in info.value.message
        assert info.value.exit_code == EXIT_OPERATIONAL
    finally:
        holder.release()
    with FileLock(lock_path, timeout=1) as lock:       # free again
        assert lock.locked


def test_timeout_zero_tries_once(lock_path):
    holder = Holder(lock_path)
    try:
        start = time.monotonic()
        with pytest.raises(LockHeldError):
            FileLock(lock_path, timeout=0).acquire()
        assert time.monotonic() - start < 0.5
    finally:
        holder.release()


def test_shared_locks_coexist_and_exclude_exclusive(lock_path):
    holder = Holder(lock_path, shared=True)
    try:
        with FileLock(lock_path, shared=True, timeout=0.5) as lock:
            assert lock.locked
        with pytest.raises(LockHeldError):
            FileLock(lock_path, shared=False, timeout=0.2).acquire()
    finally:
        holder.release()


def test_exclusive_holder_excludes_shared(lock_path):
    holder = Holder(lock_path)
    try:
        with pytest.raises(LockHeldError):
            FileLock(lock_path, shared=True, timeout=0.2).acquire()
    finally:
        holder.release()


def test_blocking_wait_gets_the_lock_when_released(lock_path):
    holder = Holder(lock_path)
    release_after = 0.4

    def release_later():
        time.sleep(release_after)
        holder.release()

    t = threading.Thread(target=release_later)
    start = time.monotonic()
    t.start()
    with FileLock(lock_path):                          # timeout=None: wait as long as needed
        waited = time.monotonic() - start
    t.join()
    assert waited >= release_after * 0.9


def test_killed_holder_releases_the_lock(lock_path):
    holder = Holder(lock_path)
    holder.kill()
    with FileLock(lock_path, timeout=2) as lock:
        assert lock.locked


def test_two_objects_in_one_process_exclude_each_other(lock_path):
    with FileLock(lock_path):
        with pytest.raises(LockHeldError):
            FileLock(lock_path, timeout=0.05).acquire()


def test_lock_file_private_and_kept(lock_path):
    with FileLock(lock_path):
        assert stat.S_IMODE(os.stat(lock_path).st_mode) == 0o600
    assert lock_path.exists()                          # never unlinked: that breaks exclusion


def test_reacquire_same_object_is_an_error(lock_path):
    lock = FileLock(lock_path)
    with lock:
        with pytest.raises(RuntimeError):
            lock.acquire()
    assert not lock.locked
    with lock:                                         # reusable after release
        assert lock.locked


def test_unopenable_lock_file_is_operational_error(tmp_path):
    with pytest.raises(OperationalError) as info:
        FileLock(tmp_path / "no-such-dir" / "x.lock").acquire()
    assert "no-such-dir" in info.value.message


def test_negative_timeout_rejected(lock_path):
    with pytest.raises(ValueError):
        FileLock(lock_path, timeout=-1)
