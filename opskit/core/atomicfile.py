"""Write a whole file or nothing: readers and crashes never see half of one."""
from __future__ import annotations

import contextlib
import os
import tempfile


def write_atomic(path: str, data: bytes | str, mode: int = 0o600, *, sync_dir: bool = False) -> str:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it
    over ``path``. ``sync_dir`` also makes the rename itself durable (a record a
    later step relies on after a power cut). Returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path
