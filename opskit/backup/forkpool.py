"""A small pool of forked worker processes fed in batches.

Forking (not spawning) lets workers inherit the open repository, its keys
and its in-memory index without pickling them, and lets the work itself
(hashing, compression, encryption, file I/O) run on every core, free of
Python's GIL. Work goes out in batches to keep inter-process traffic low.

Fork before starting threads of your own: a forked child only has the
thread that forked it.
"""
from __future__ import annotations

import errno
import multiprocessing as mp
import multiprocessing.queues as mpq
import os
import queue
import signal
import traceback
from typing import Any, Callable

from opskit.core.errors import OperationalError


class WorkerError(OperationalError):
    """A worker process failed (storage error, crash); the job stops, exit 3."""


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (SIGTERM to the
    main process, systemd KillMode=process, timeout(1)); elsewhere the task
    loop notices the parent is gone within a second."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:             # died before prctl took effect
        os._exit(1)


def _next_task(tasks, parent_pid: int):
    while True:
        try:
            return tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:
                os._exit(1)


def _child(init, handle, finish, tasks, results, parent_pid) -> None:
    _die_with_parent(parent_pid)
    try:
        state = init()
        while True:
            batch = _next_task(tasks, parent_pid)
            if batch is None:
                results.put(("done", finish(state)))
                return
            results.put(("batch", (len(batch), handle(state, batch))))
    except BaseException as exc:  # report, never leave the parent waiting
        results.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"))


class _TaskQueue(mpq.Queue):
    """The task queue. Once the pool is closed its feeder thread may still hold
    batches no worker will read; closing our read end makes its writes fail
    with EPIPE, which is expected then and must not print a traceback."""

    @staticmethod
    def _on_queue_feeder_error(e, obj):
        if getattr(e, "errno", None) != errno.EPIPE:
            mpq.Queue._on_queue_feeder_error(e, obj)


class ForkPool:
    """``init()`` runs once per child and makes its state; ``handle(state, batch)``
    returns what the parent's ``on_batch(result, size)`` receives;
    ``finish(state)`` runs when the pool drains and goes to ``on_done``."""

    def __init__(self, count: int, *, init: Callable[[], Any], handle: Callable[[Any, list], Any],
                 finish: Callable[[Any], Any] = lambda state: None, name: str = "opskit-worker",
                 batch_items: int = 64, batch_bytes: int = 8 << 20):
        ctx = mp.get_context("fork")
        self.tasks = _TaskQueue(count * 4, ctx=ctx)
        self.results = ctx.Queue()
        self.procs = [ctx.Process(target=_child, args=(init, handle, finish, self.tasks, self.results,
                                                       os.getpid()),
                                  daemon=True, name=f"{name}-{i}") for i in range(count)]
        for p in self.procs:
            p.start()
        self.batch_items = batch_items
        self.batch_bytes = batch_bytes
        self._batch: list = []
        self._batch_size = 0
        self.outstanding = 0              # items submitted and not yet answered
        self._done = 0
        self.on_batch: Callable[[Any], None] = lambda result: None
        self.on_done: Callable[[Any], None] = lambda final: None

    def submit(self, item: Any, size: int = 0) -> None:
        self._batch.append(item)
        self._batch_size += size
        self.outstanding += 1
        if len(self._batch) >= self.batch_items or self._batch_size >= self.batch_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_size = self._batch, [], 0
        while True:
            try:
                self.tasks.put(batch, block=False)
                return
            except queue.Full:
                # every worker is busy and more batches wait: sleep until one
                # answers (it then takes the next batch) rather than retrying on
                # a timer, which cost the parent CPU on every tick (#23). poll
                # notices a worker that died and so will never answer.
                self.poll(block=True)

    def poll(self, *, block: bool) -> None:
        """Handle answers that are ready (with ``block``, wait for at least one)."""
        while True:
            try:
                kind, payload = self.results.get(timeout=0.5 if block else 0)
            except queue.Empty:
                if block:
                    self._check_alive(expect_running=self.outstanding > 0)
                    continue
                return
            self._handle(kind, payload)
            if block:
                return

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "error":
            self.close()
            raise WorkerError(f"worker failed: {payload.splitlines()[0]}")
        if kind == "batch":
            count, result = payload
            self.outstanding -= count
            self.on_batch(result)
        elif kind == "done":
            self._done += 1
            self.on_done(payload)

    def _check_alive(self, expect_running: bool) -> None:
        """Raise when a worker died, or when every worker is gone while work is
        still unanswered (nothing would ever answer it)."""
        dead = [p for p in self.procs if not p.is_alive() and p.exitcode not in (0, None)]
        if not dead and expect_running and not any(p.is_alive() for p in self.procs):
            dead = self.procs[:1]
        if dead:
            self.close()
            raise WorkerError(f"worker {dead[0].name} died (exit code {dead[0].exitcode})")

    def drain(self) -> None:
        """Wait for every item, then stop the workers (each reports ``finish``)."""
        self.flush()
        while self.outstanding:
            self.poll(block=True)
        for _ in self.procs:
            self.tasks.put(None)
        while self._done < len(self.procs):
            self.poll(block=True)
        for p in self.procs:
            p.join(timeout=10)

    def close(self) -> None:
        """Stop the workers at once (after an error) and drop queued work.

        Batches still buffered for the dead workers would keep the queue's
        feeder thread blocked on a full pipe, and the exit handler joining
        that thread would wait forever: a restore that hit a damaged tree
        never ended (issue 27). So the thread is not joined at exit, and our
        read end is closed so its pending writes fail at once."""
        self.tasks.cancel_join_thread()
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)
        self.tasks.close()
        self.results.close()
