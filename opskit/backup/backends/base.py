"""The backend interface every storage location implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator

from opskit.core.errors import OperationalError


class BackendError(OperationalError):
    """Storage failed (I/O, network, permissions). Exit 3; names the location."""


class ObjectNotFound(BackendError):
    """The named object does not exist."""


class ObjectLocked(BackendError):
    """The object is under retention (S3 Object Lock) and cannot be deleted yet.
    Callers that delete (prune) report it and keep going."""

    def __init__(self, message: str, *, name: str, retain_until: str | None = None):
        super().__init__(message)
        self.name = name
        self.retain_until = retain_until


class Backend(ABC):
    """Immutable named objects. Implementations must make ``put`` atomic:
    readers see the whole object or nothing."""

    location: str

    @abstractmethod
    def put(self, name: str, data: bytes | memoryview) -> None: ...

    @abstractmethod
    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Yield (name, size) of every object under ``prefix`` (a folder like 'data/')."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def size(self, name: str) -> int: ...

    def close(self) -> None:
        """Release connections; local backends have none."""
