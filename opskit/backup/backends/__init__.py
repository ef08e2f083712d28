"""Blob backends: a handful of methods over named immutable objects.

Names are slash-separated relative paths from the format doc
(``config``, ``keys/<id>``, ``data/ab/<id>``, ``index/<id>``, ...).
Local directories now; S3 and SFTP join in the replication issue.
"""
from __future__ import annotations

from .base import Backend, BackendError, ObjectNotFound
from .local import LocalBackend


def open_backend(location: str) -> Backend:
    """Backend for a repository location (a path, or later s3:// and sftp:// URLs)."""
    if "://" in location and not location.startswith("file://"):
        scheme = location.split("://", 1)[0]
        raise BackendError(f"repository location {location!r}: scheme '{scheme}://' is not "
                           "supported yet (use a local path)")
    if location.startswith("file://"):
        location = location[len("file://"):]
    return LocalBackend(location)


__all__ = ["Backend", "BackendError", "ObjectNotFound", "LocalBackend", "open_backend"]
