"""Named crash points for crash-safety tests.

``failpoint("prune.after-index")`` kills the process with SIGKILL when
``$OPSKIT_FAILPOINT`` names that point, so a test can stop an operation at
an exact step and prove the repository survives. Unset (always, outside
tests), a failpoint costs one dictionary lookup.
"""
import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("OPSKIT_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
