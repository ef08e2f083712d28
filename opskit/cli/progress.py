"""Progress display for long work: a live line on a TTY, silence otherwise
(cron gets the one summary line the command prints at the end)."""
from __future__ import annotations

import os
import sys
import threading
import time

from opskit.core.output import human_bytes, visible


def human_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TerminalProgress:
    """Implements the engines' progress callbacks; redraws at most 4 times a second."""

    def __init__(self, label: str, stream=None, enabled: bool | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.files = 0
        self.bytes = 0
        self.total_files: int | None = None
        self.total_bytes: int | None = None
        self.started_at = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    @property
    def wants_total(self) -> bool:
        """Whether a total is worth working out: only a drawn line shows it."""
        return self.enabled

    def total(self, files: int, nbytes: int) -> None:
        """The work ahead, once the engine knows it: the line then shows a
        percentage and an ETA."""
        self.total_files, self.total_bytes = files, nbytes

    def start(self, paths: list[str], excluded=None) -> None:
        """Count files and bytes in the background so the bar can show an ETA."""
        if not self.enabled:
            return

        def scan():
            files = size = 0
            stack = [os.fsencode(p) for p in paths]
            while stack:
                path = stack.pop()
                try:
                    with os.scandir(path) as it:
                        for entry in it:
                            if excluded and excluded(entry.path):
                                continue
                            if entry.is_dir(follow_symlinks=False):
                                stack.append(entry.path)
                            elif entry.is_file(follow_symlinks=False):
                                files += 1
                                size += entry.stat(follow_symlinks=False).st_size
                except NotADirectoryError:
                    try:
                        size += os.lstat(path).st_size
                        files += 1
                    except OSError:
                        pass
                except OSError:
                    pass
            self.total_files, self.total_bytes = files, size

        threading.Thread(target=scan, daemon=True, name="opskit-scan").start()

    def file_done(self, path, size: int) -> None:
        with self._lock:
            self.files += 1
        self._draw()

    def files_done(self, directory, count: int, size: int) -> None:
        with self._lock:
            self.files += count
        self._draw()

    def bytes_read(self, n: int) -> None:
        with self._lock:
            self.bytes += n
        self._draw()

    def _draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < 0.25:
            return
        self._last = now
        elapsed = max(now - self.started_at, 1e-6)
        rate = self.bytes / elapsed
        of = f"/{self.total_files}" if self.total_files is not None else ""
        text = (f"{self.label}: {self.files}{of} files, {human_bytes(self.bytes)}"
                f"{self._share(rate)}, {human_bytes(rate)}/s, {human_duration(elapsed)}")
        self.stream.write("\r\033[K" + text)
        self.stream.flush()

    def _share(self, rate: float) -> str:
        """' / TOTAL (P%), ETA M:SS' once a total is known, else nothing."""
        if not self.total_bytes:
            if self.total_files:        # only empty files ahead: count them instead
                return f" ({min(100.0, 100.0 * self.files / self.total_files):.0f}%)"
            return ""
        pct = min(100.0, 100.0 * self.bytes / self.total_bytes)
        text = f" / {human_bytes(self.total_bytes)} ({pct:.0f}%)"
        if rate > 0 and self.bytes < self.total_bytes:
            text += f", ETA {human_duration((self.total_bytes - self.bytes) / rate)}"
        return text

    def close(self) -> None:
        if self.enabled:
            self._draw(final=True)
            self.stream.write("\n")
            self.stream.flush()


class VerboseProgress(TerminalProgress):
    """``-v``: one line per file read (or per directory a worker took whole) on
    stderr, instead of the live line."""

    def __init__(self, label: str, stream=None):
        super().__init__(label, stream, enabled=True)   # enabled: the engines report files
        self._out = stream or sys.stderr

    @property
    def wants_total(self) -> bool:
        """No live line to put a total on."""
        return False

    def start(self, paths: list[str], excluded=None) -> None:
        """No background count: there is no live line to put a total on."""

    def _draw(self, final: bool = False) -> None:
        """Lines, not a redrawn status line."""

    def close(self) -> None:
        self._out.flush()

    def file_done(self, path, size: int) -> None:
        super().file_done(path, size)
        self._line(f"{os.fsdecode(path)} ({human_bytes(size)})")

    def files_done(self, directory, count: int, size: int) -> None:
        super().files_done(directory, count, size)
        self._line(f"{os.fsdecode(directory)}/ ({count} files, {human_bytes(size)})")

    def _line(self, text: str) -> None:
        with self._lock:
            self._out.write(visible(text) + "\n")
