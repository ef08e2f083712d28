"""Blob backends: a handful of methods over named immutable objects.

Names are slash-separated relative paths from the format doc
(``config``, ``keys/<id>``, ``data/ab/<id>``, ``index/<id>``, ...).

Adding a backend is one module with a ``Backend`` subclass plus one
``register_backend`` line below (restic's ``location.Register`` is the
model). Registrations name ``module:Class`` so a backend's own dependency
(boto3, paramiko) is imported only when a location of its scheme is opened.
"""
from __future__ import annotations

import importlib

from .base import Backend, BackendError, ObjectLocked, ObjectNotFound
from .local import LocalBackend

_REGISTRY: dict[str, tuple[str, str]] = {}


def register_backend(scheme: str, target: str, example: str) -> None:
    """Make ``scheme://`` locations open with ``target`` (``"module:Class"``,
    relative to this package). ``example`` is shown in errors."""
    _REGISTRY[scheme.lower()] = (target, example)


register_backend("file", "local:LocalBackend", "a path or file:///PATH")
register_backend("s3", "s3:S3Backend", "s3://BUCKET/PREFIX")
register_backend("sftp", "sftp:SFTPBackend", "sftp://USER@HOST:PORT/PATH")


def _backend_class(scheme: str, location: str) -> type[Backend]:
    if scheme not in _REGISTRY:
        from opskit.core.errors import ConfigError
        known = ", ".join(example for _, example in _REGISTRY.values())
        raise ConfigError(f"repository location {location!r}: scheme '{scheme}://' is not "
                          f"supported (use {known})")
    module, cls = _REGISTRY[scheme][0].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def open_backend(location: str, settings: dict | None = None) -> Backend:
    """Backend for a repository location: a path (or ``file://``), or a registered
    ``scheme://`` URL. ``settings`` holds a site's options (``sites.<name>`` in the
    config: endpoint, credentials, key file, known_hosts, ...)."""
    scheme = location.split("://", 1)[0].lower() if "://" in location else "file"
    if scheme == "file":
        return LocalBackend(location[len("file://"):] if location.startswith("file://") else location)
    return _backend_class(scheme, location)(location, settings)


__all__ = ["Backend", "BackendError", "ObjectLocked", "ObjectNotFound", "LocalBackend",
           "open_backend", "register_backend"]
