"""A real cron daemon (Debian's cron) in a private mount namespace.

The namespace gets its own empty crontab spool, /etc/cron.d, /etc/crontab and
/run (cron's pid file), so the machine's own crontabs are neither read nor
changed, and a cron already running outside does not stop this one. The test
hands a crontab text; it is installed with the real ``crontab -`` inside the
namespace, then ``cron -f`` runs until the fixture ends. If cron is missing
the test FAILS with the reason (scripts/test installs it).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap

import pytest

_SCRIPT = textwrap.dedent("""\
    set -e
    mount --make-rprivate /
    mount -t tmpfs -o mode=1730 tmpfs /var/spool/cron/crontabs
    chgrp crontab /var/spool/cron/crontabs
    mount -t tmpfs tmpfs /etc/cron.d
    mount -t tmpfs tmpfs /run
    mount --bind "$1/empty" /etc/crontab
    crontab "$1/crontab"
    exec cron -f -L 15
""")


class CronDaemon:
    """``start(crontab_text)`` runs cron with that crontab; ``stop()`` ends it."""

    def __init__(self, workdir: str):
        self.dir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self, crontab_text: str) -> None:
        for tool in ("cron", "crontab", "unshare"):
            if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
                pytest.fail(f"{tool} is not installed (scripts/test installs Debian's cron)",
                            pytrace=False)
        os.makedirs(self.dir, exist_ok=True)
        open(os.path.join(self.dir, "empty"), "w").close()
        with open(os.path.join(self.dir, "crontab"), "w") as fh:
            fh.write(crontab_text)
        with open(os.path.join(self.dir, "script.sh"), "w") as fh:
            fh.write(_SCRIPT)
        self.log = open(os.path.join(self.dir, "cron.log"), "w")
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "bash",
                                      os.path.join(self.dir, "script.sh"), self.dir],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc:
            self.log.close()

    def output(self) -> str:
        with open(os.path.join(self.dir, "cron.log")) as fh:
            return fh.read()


@pytest.fixture
def cron_daemon(tmp_path):
    daemon = CronDaemon(str(tmp_path / "cron"))
    yield daemon
    daemon.stop()
