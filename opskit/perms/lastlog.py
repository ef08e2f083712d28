"""Last login per account, from whichever login records a host keeps.

Read through the Host interface (files only, no commands), so a sysroot, this
machine and an SSH host read the same way. Every source that exists is read
and the newest login per account wins; which sources existed is reported, so
"no login recorded" is only ever concluded when at least one source exists.

    wtmpdb    /var/lib/wtmpdb/wtmp.db        SQLite, table wtmp (Type 3 = user login, usec)
    lastlog2  /var/lib/lastlog/lastlog2.db   SQLite, table Lastlog2 (Name, Time in s)
    lastlog   /var/log/lastlog               292-byte records indexed by uid
    wtmp      /var/log/wtmp, /var/log/wtmp.1 384-byte utmp records (type 7 = user login)
"""
from __future__ import annotations

import os
import sqlite3
import struct
import tempfile

from opskit.hosts.base import Host, HostError

WTMPDB = "/var/lib/wtmpdb/wtmp.db"
LASTLOG2 = "/var/lib/lastlog/lastlog2.db"
LASTLOG = "/var/log/lastlog"
WTMP = ("/var/log/wtmp", "/var/log/wtmp.1")
LASTLOG_RECORD = 292                       # int32 time, char line[32], char host[256]
UTMP = struct.Struct("<hhi32s4s32s256shhiii4i20s")   # 384 bytes (glibc x86_64 / aarch64)
USER_PROCESS = 7
MAX_LASTLOG_BYTES = 256 * 1024 * 1024      # a sparse lastlog of a huge uid is not read whole


def _read(host: Host, path: str, warnings: list[str]) -> bytes | None:
    try:
        return host.read_file(path)
    except FileNotFoundError:
        return None
    except HostError as exc:
        warnings.append(f"{path}: cannot read: {exc.message}")
        return None


def _sqlite_rows(data: bytes, sql: str, path: str, warnings: list[str]) -> list[tuple]:
    fd, tmp = tempfile.mkstemp(prefix="opskit-lastlog-", suffix=".db")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        conn = sqlite3.connect(f"file:{tmp}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        warnings.append(f"{path}: not a readable SQLite database: {exc}")
        return []
    finally:
        os.unlink(tmp)


def read_last_logins(host: Host, accounts: dict) -> tuple[dict[str, dict], list[str], list[str]]:
    """(login -> {'time': epoch seconds, 'source': name}, sources found, warnings)."""
    best: dict[str, dict] = {}
    sources: list[str] = []
    warnings: list[str] = []

    def seen(user: str, when: int, source: str) -> None:
        if not user or when <= 0:
            return
        cur = best.get(user)
        if cur is None or when > cur["time"]:
            best[user] = {"time": int(when), "source": source}

    data = _read(host, WTMPDB, warnings)
    if data is not None:
        sources.append("wtmpdb")
        for user, login in _sqlite_rows(data, "SELECT User, MAX(Login) FROM wtmp WHERE Type = 3 "
                                              "GROUP BY User", WTMPDB, warnings):
            if isinstance(login, int):
                seen(str(user), login // 1_000_000, "wtmpdb")
    data = _read(host, LASTLOG2, warnings)
    if data is not None:
        sources.append("lastlog2")
        for name, when in _sqlite_rows(data, "SELECT Name, Time FROM Lastlog2", LASTLOG2,
                                       warnings):
            if isinstance(when, int):
                seen(str(name), when, "lastlog2")
    try:
        size = host.stat(LASTLOG).size
    except FileNotFoundError:
        size = None
    except HostError as exc:
        warnings.append(f"{LASTLOG}: cannot stat: {exc.message}")
        size = None
    if size is not None:
        sources.append("lastlog")
        if size > MAX_LASTLOG_BYTES:
            warnings.append(f"{LASTLOG} is {size // (1024 * 1024)} MiB (sparse, a very large "
                            "uid exists); not read")
        else:
            data = _read(host, LASTLOG, warnings) or b""
            for acct in accounts.values():
                off = acct.uid * LASTLOG_RECORD
                if acct.uid >= 0 and off + 4 <= len(data):
                    (when,) = struct.unpack_from("<i", data, off)
                    seen(acct.name, when, "lastlog")
    for path in WTMP:
        data = _read(host, path, warnings)
        if data is None:
            continue
        if "wtmp" not in sources:
            sources.append("wtmp")
        usable = len(data) - len(data) % UTMP.size
        for off in range(0, usable, UTMP.size):
            rec = UTMP.unpack_from(data, off)
            if rec[0] != USER_PROCESS:
                continue
            user = rec[5].split(b"\0", 1)[0].decode("utf-8", "replace")
            seen(user, rec[10], "wtmp")
    return best, sources, warnings
