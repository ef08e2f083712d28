"""A clock tests move by hand, for the scheduler (opskit.schedule.daemon)."""
from __future__ import annotations

import datetime as dt
import threading
import time

class FakeClock:
    """A clock tests move by hand: ``sleep`` advances it instantly."""

    def __init__(self, start: dt.datetime):
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def time(self) -> float:
        return self.now().timestamp()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = when

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        self.advance(max(0.0, seconds))
        time.sleep(0.001)   # let other threads run
