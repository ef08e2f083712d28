"""Pause Python's cyclic garbage collector around one bulk step.

Building or walking a large tree of dicts and lists (a 30 MB permission
snapshot: about two million containers) makes the collector run a full pass
over every live container many times, although none of them form cycles:
measured, a third of ``json.loads`` of such a snapshot and a tenth of the
comparison that reads it. Pausing it for the step and letting it run as usual
afterwards loses nothing: cycles made meanwhile are collected then.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Run the ``with`` body with the cyclic collector off (restored after, also
    on errors; nested uses leave it to the outermost)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
