"""Named crash points for crash-safety tests.

``failpoint("prune.after-index")`` kills the process with SIGKILL when
``$OPSKIT_FAILPOINT`` names that point (a comma-separated list names
several), so a test can stop an operation at an exact step and prove the
repository survives. ``$OPSKIT_FAILPOINT_RATE`` (0..1) makes a named point
fire only that often, for kills at random moments over many runs. Unset
(always, outside tests), a failpoint costs one dictionary lookup.
"""
import os
import random
import signal


def failpoint(name: str) -> None:
    wanted = os.environ.get("OPSKIT_FAILPOINT")
    if not wanted or name not in wanted.split(","):
        return
    rate = os.environ.get("OPSKIT_FAILPOINT_RATE")
    if rate is None or random.random() < float(rate):
        os.kill(os.getpid(), signal.SIGKILL)
