"""The fork pool ends when a worker fails, however much work is still queued (issue 27).

Each case runs in a fresh interpreter: the bug was a process that never
exited (its exit handler waited on a queue feeder blocked on a full pipe)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from opskit.backup.forkpool import ForkPool, WorkerError

    MODE = sys.argv[1]

    def handle(state, batch):
        if MODE == "raise" and batch[0][0] >= 64:
            raise RuntimeError("damaged blob")
        if MODE == "kill" and batch[0][0] >= 64:
            os.kill(os.getpid(), signal.SIGKILL)
        if MODE == "slow":
            import time; time.sleep(0.01)
        return len(batch)

    pool = ForkPool(1, init=lambda: None, handle=handle, batch_items=4)
    done = []
    pool.on_batch = done.append
    try:
        for i in range(1000):       # big items: the task pipe fills while the worker is busy
            pool.submit((i, b"x" * 20000))
        pool.drain()
    except WorkerError as exc:
        print("stopped:", exc)
        sys.exit(3)
    print("done", sum(done))
""")


def _run(mode: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.monotonic() - started


@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_a_failing_worker_ends_the_process_promptly(mode):
    proc, took = _run(mode)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "stopped: worker" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr      # no feeder-thread noise at exit
    assert took < 10, f"took {took:.1f} s"


def test_a_healthy_pool_answers_every_item():
    """The control case: nothing fails, every item is handled exactly once."""
    proc, _took = _run("ok")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["done", "1000"]
