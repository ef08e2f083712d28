"""Which snapshots are archives (R-AUD-6): by tag, by backed-up path, or because
their whole repository is marked in the config (``archives:``).

``reason`` answers with a short text naming the mark (shown in refusals, the
registers and ``opskit archive list``), or None for an ordinary snapshot.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


def _norm(path: str) -> str:
    return os.path.normpath(path) if path.startswith("/") else path.rstrip("/")


def _under(path: str, mark: str) -> bool:
    """``path`` is ``mark`` or below it (/srv/a2 is not below /srv/a)."""
    return path == mark or path.startswith(mark if mark.endswith("/") else mark + "/")


@dataclass(frozen=True)
class Marks:
    """The archive marks of one config."""

    tags: tuple[str, ...] = ("archive",)
    paths: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config) -> Marks:
        """The marks under ``archives:`` of a loaded config."""
        return cls(tuple(config.get("archives.tags") or ()),
                   tuple(config.get("archives.paths") or ()),
                   tuple(config.get("archives.repositories") or ()))

    def repository(self, location: str, repo_id: str) -> str | None:
        """Why the whole repository is an archive, or None."""
        for mark in self.repositories:
            if _norm(mark) == _norm(location) or (len(mark) >= 8 and repo_id.startswith(mark)):
                return f"repository {mark} (archives.repositories)"
        return None

    def reason(self, snap: dict, location: str, repo_id: str) -> str | None:
        """Why ``snap`` is an archive, or None."""
        whole = self.repository(location, repo_id)
        if whole:
            return whole
        tags = sorted(set(snap.get("tags") or ()) & set(self.tags))
        if tags:
            return f"tag {tags[0]}"
        for path in snap.get("paths") or ():
            for mark in self.paths:
                if _under(_norm(path), _norm(mark)):
                    return f"path {path} (archives.paths {mark})"
        return None

    def archived(self, snaps: list[dict], location: str, repo_id: str) -> list[tuple[dict, str]]:
        """(snapshot, reason) of each archive among ``snaps``."""
        out = []
        for snap in snaps:
            why = self.reason(snap, location, repo_id)
            if why:
                out.append((snap, why))
        return out
