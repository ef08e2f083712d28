"""Repository locks (format doc, Locks): shared for backup/restore/check,
exclusive for prune; stale ones recognised and removable."""
from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import threading
from dataclasses import dataclass

from opskit.core.errors import LockHeldError

from .backends import BackendError
from .repository import CorruptObject, Repository

REFRESH_S = 300


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class LockInfo:
    id: str
    exclusive: bool
    host: str
    pid: int
    user: str
    time: str
    refreshed: str
    stale: bool
    why_stale: str = ""

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return f"{kind} lock by {self.user}@{self.host} pid {self.pid} since {self.time}"


def list_locks(repo: Repository, stale_after_s: float) -> list[LockInfo]:
    out = []
    host = socket.gethostname()
    for name, _size in repo.backend.list("locks/"):
        lid = name.split("/")[-1]
        try:
            data = repo.load_file("locks", "lock", lid)
        except (CorruptObject, BackendError):
            continue  # vanished or unreadable: not a lock we can honour
        refreshed = _parse(data.get("refreshed") or data["time"])
        age = (_now() - refreshed).total_seconds()
        stale, why = False, ""
        if data["host"] == host and not _pid_alive(int(data["pid"])):
            stale, why = True, f"process {data['pid']} is gone"
        elif age > stale_after_s:
            stale, why = True, f"not refreshed for {int(age // 60)} min"
        out.append(LockInfo(lid, bool(data["exclusive"]), data["host"], int(data["pid"]),
                            data.get("user", "?"), data["time"], _iso(refreshed), stale, why))
    return out


class RepoLock:
    """Context manager holding a shared or exclusive repository lock."""

    def __init__(self, repo: Repository, *, exclusive: bool = False, stale_after_s: float = 3600):
        self.repo = repo
        self.exclusive = exclusive
        self.stale_after_s = stale_after_s
        self.lock_id: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since = _now()

    def _body(self) -> dict:
        try:
            user = getpass.getuser()
        except Exception:
            user = str(os.geteuid())
        return {"exclusive": self.exclusive, "host": socket.gethostname(), "pid": os.getpid(),
                "user": user, "time": _iso(self._since), "refreshed": _iso(_now())}

    def acquire(self) -> None:
        self.lock_id = self.repo.save_file("locks", "lock", self._body())
        for other in list_locks(self.repo, self.stale_after_s):
            if other.id == self.lock_id or other.stale:
                continue
            if self.exclusive or other.exclusive:
                self.release()
                raise LockHeldError(
                    f"repository {self.repo.backend.location} is locked: {other.describe()}",
                    hint="wait for it to finish; if that process is dead, run 'opskit backup unlock'")
        self._thread = threading.Thread(target=self._refresh_loop, daemon=True,
                                        name="opskit-lock-refresh")
        self._thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                new_id = self.repo.save_file("locks", "lock", self._body())
                old, self.lock_id = self.lock_id, new_id
                if old:
                    self.repo.backend.delete(f"locks/{old}")
            except Exception:
                pass  # a missed refresh only risks the lock looking stale later

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lock_id:
            try:
                self.repo.backend.delete(f"locks/{self.lock_id}")
            except BackendError:
                pass
            self.lock_id = None

    def __enter__(self) -> "RepoLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def remove_locks(repo: Repository, *, all_locks: bool, stale_after_s: float) -> list[LockInfo]:
    """Remove stale locks (or every lock with ``all_locks``); returns what was removed."""
    removed = []
    for info in list_locks(repo, stale_after_s):
        if all_locks or info.stale:
            repo.backend.delete(f"locks/{info.id}")
            removed.append(info)
    return removed
