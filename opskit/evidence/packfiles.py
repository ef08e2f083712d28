"""The pack folder and what the evidence sources share: every file written or
copied into the pack gets its SHA-256 recorded; stored JSON records are read
with their times."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable

from .model import Item


def parse_when(text) -> dt.datetime | None:
    """An aware datetime from ISO-8601 text (``Z`` or an offset; naive = UTC)."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Pack:
    """The output folder: every file written or copied gets its SHA-256 recorded."""

    def __init__(self, out_dir: str):
        self.dir = os.path.abspath(out_dir)
        self.files: list[dict] = []

    def record(self, rel: str, source: str | None) -> dict:
        """Hash ``rel`` (already in the pack) and list it."""
        path = os.path.join(self.dir, rel)
        os.chmod(path, 0o600)
        entry = {"file": rel, "sha256": sha256_file(path), "bytes": os.path.getsize(path),
                 "source": source}
        self.files = [f for f in self.files if f["file"] != rel] + [entry]
        return entry

    def _dest(self, rel: str) -> str:
        dest = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
        return dest

    def copy(self, src: str, rel: str) -> dict:
        shutil.copyfile(src, self._dest(rel))
        return self.record(rel, os.path.abspath(src))

    def write(self, rel: str, text: str, source: str | None = None) -> dict:
        with open(self._dest(rel), "w", encoding="utf-8") as fh:
            fh.write(text)
        return self.record(rel, source)

    def item(self, entry: dict, what: str, when: dt.datetime | None = None) -> Item:
        """An evidence Item pointing at a pack file."""
        return Item(what, entry["file"], entry["sha256"], iso(when) if when else None)


@dataclass
class Context:
    """What every evidence source gets."""

    state_dir: str
    audit_log: str
    pack: Pack
    since: dt.datetime
    now: dt.datetime
    run: Callable[[list[str]], tuple[int, str, str]]   # opskit ARGS -> (exit, stdout, stderr)
    sites: list[dict] = field(default_factory=list)    # {name, url, endpoint_url}
    repo: str | None = None                             # the local repository location
    include_data: bool = False
    periods: dict = field(default_factory=dict)       # duty -> cadence.Period
    cache: dict = field(default_factory=dict)
    anchor_dirs: list[str] = field(default_factory=list)   # signed audit checkpoints
    anchor_keys: dict = field(default_factory=dict)        # raw public key -> name

    def regularity(self, duty: str, label: str, times):
        """periods.regularity of ``times`` for ``duty`` at its configured cadence."""
        from .periods import regularity
        period = self.periods[duty]
        return regularity(label, times, period.every_s, period.grace_s, self.since, self.now,
                          period.basis)

    def once(self, key: str, make: Callable):
        """``make()`` computed once per pack (sources share command outputs)."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


def first_error(stderr: str, stdout: str = "") -> str:
    """The one-line reason from a failed opskit sub-command."""
    for line in (stderr or "").splitlines():
        if line.startswith("opskit: error:"):
            return line[len("opskit: error:"):].strip()
    text = (stderr or stdout or "").strip().splitlines()
    return text[-1] if text else "no output"


def read_json(path: str):
    """Parsed JSON of ``path``; None when unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def json_files(folder: str, skip_suffixes: tuple[str, ...] = ()) -> list[str]:
    """Sorted ``*.json`` names in ``folder`` (not hidden, not ``skip_suffixes``)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if n.endswith(".json") and not n.startswith(".")
                  and not n.endswith(skip_suffixes))
