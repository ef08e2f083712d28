"""Run one function on many hosts at once; every host gets exactly one outcome.

``fan_out(specs, func)`` connects to each host (a ``HostSpec``; a ready
``Host`` is used as is), calls ``func(host)`` and closes what it opened. At
most ``concurrency`` hosts run at once. Outcomes come back in input order; an
exception or a timeout becomes a failed outcome, never a missing row.

Threads are daemon threads rather than a ThreadPoolExecutor: a host stuck
past its timeout is abandoned (its connection closed to unblock it) and its
slot given to the next host, and a stuck thread never keeps the process
from exiting (executor threads are joined at interpreter exit).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .base import Host, HostTimeout


@dataclass
class HostOutcome:
    """What happened on one host.

    ok        func returned without raising
    value     what func returned (None on failure)
    error     one line for people (the host is named), None when ok
    status    'ok', or the failure's HostError.status ('unreachable', 'timeout', ...)
    hint      what the operator may do about it, when known
    duration  seconds from the start of this host's task to its end
    """

    name: str
    ok: bool
    value: Any = None
    error: str | None = None
    duration: float = 0.0
    status: str = "ok"
    hint: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "status": self.status, "value": self.value,
                "error": self.error, "hint": self.hint, "duration": round(self.duration, 3)}


def describe_error(exc: BaseException) -> str:
    """One line for a failure: HostErrors already name the host; others get their type."""
    message = getattr(exc, "message", None)
    if message:
        return message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def failed(name: str, exc: BaseException, duration: float) -> HostOutcome:
    return HostOutcome(name, False, None, describe_error(exc), duration,
                       getattr(exc, "status", "error"), getattr(exc, "hint", None), exc)


class _Task:
    def __init__(self, index: int, item: Any):
        self.index, self.item = index, item
        self.name = str(getattr(item, "name", item))
        if isinstance(item, Host):
            self.where = item.describe()
        else:
            endpoint = getattr(item, "endpoint", None)
            self.where = f"{self.name} ({endpoint})" if endpoint else self.name
        self.started = 0.0
        self.host: Host | None = None


def fan_out(specs: Sequence[Any], func: Callable[[Host], Any], *, concurrency: int = 16,
            timeout_per_host: float | None = None, ssh_settings: Any = None) -> list[HostOutcome]:
    """Call ``func(host)`` for every entry of ``specs``; one HostOutcome each, in order.

    specs             HostSpecs (connected with ``ssh_settings``, closed afterwards)
                      or Host objects (used and left open)
    concurrency       hosts in flight at once (>= 1)
    timeout_per_host  seconds from a host's start (connecting included) after
                      which it is reported as 'timeout' and abandoned
    """
    tasks = [_Task(i, item) for i, item in enumerate(specs)]
    outcomes: list[HostOutcome | None] = [None] * len(tasks)
    cond = threading.Condition()
    concurrency = max(1, int(concurrency))

    def work(task: _Task) -> None:
        owned = not isinstance(task.item, Host)
        try:
            task.host = task.item.connect(ssh_settings) if owned else task.item
            outcome = HostOutcome(task.name, True, func(task.host),
                                  duration=time.monotonic() - task.started)
        except BaseException as exc:  # every failure becomes a row
            outcome = failed(task.name, exc, time.monotonic() - task.started)
        finally:
            if owned and task.host is not None:
                _close_quietly(task.host)
        with cond:
            if outcomes[task.index] is None:      # not already reported as timed out
                outcomes[task.index] = outcome
            cond.notify_all()

    waiting = list(tasks)
    running: list[_Task] = []
    with cond:
        while True:
            running = [t for t in running if outcomes[t.index] is None]
            now = time.monotonic()
            if timeout_per_host is not None:
                for task in [t for t in running if now - t.started >= timeout_per_host]:
                    outcomes[task.index] = failed(task.name, HostTimeout(
                        f"{task.where}: no result within {timeout_per_host:g}s; abandoned",
                        host=task.name), now - task.started)
                    running.remove(task)
                    if task.host is not None and not isinstance(task.item, Host):
                        threading.Thread(target=_close_quietly, args=(task.host,),
                                         daemon=True).start()
            while waiting and len(running) < concurrency:
                task = waiting.pop(0)
                task.started = time.monotonic()
                running.append(task)
                threading.Thread(target=work, args=(task,), name=f"fanout-{task.name}",
                                 daemon=True).start()
            if not running and not waiting:
                break
            wait = None
            if timeout_per_host is not None:
                wait = max(0.0, min(t.started + timeout_per_host for t in running) - now)
            cond.wait(wait if wait is None else min(wait + 0.001, 1.0))
    return outcomes  # type: ignore[return-value]


def _close_quietly(host: Host) -> None:
    try:
        host.close()
    except Exception:
        pass
