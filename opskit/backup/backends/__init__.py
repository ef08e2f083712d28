"""Blob backends: a handful of methods over named immutable objects.

Names are slash-separated relative paths from the format doc
(``config``, ``keys/<id>``, ``data/ab/<id>``, ``index/<id>``, ...).
Local directories (local.py), S3 (s3.py) and SFTP (sftp.py).
"""
from __future__ import annotations

from .base import Backend, BackendError, ObjectLocked, ObjectNotFound
from .local import LocalBackend


def open_backend(location: str, settings: dict | None = None) -> Backend:
    """Backend for a repository location: a path (or ``file://``), ``s3://bucket/prefix``
    or ``sftp://user@host:port/path``. ``settings`` holds a site's options
    (``sites.<name>`` in the config: endpoint, credentials, key file, known_hosts, ...)."""
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme == "s3":
        from .s3 import S3Backend
        return S3Backend(location, settings)
    if scheme == "sftp":
        from .sftp import SFTPBackend
        return SFTPBackend(location, settings)
    if scheme and scheme != "file":
        from opskit.core.errors import ConfigError
        raise ConfigError(f"repository location {location!r}: scheme '{scheme}://' is not "
                          "supported (use a path, s3://BUCKET/PREFIX or sftp://USER@HOST:PORT/PATH)")
    if location.startswith("file://"):
        location = location[len("file://"):]
    return LocalBackend(location)


__all__ = ["Backend", "BackendError", "ObjectLocked", "ObjectNotFound", "LocalBackend", "open_backend"]
