"""Backup reads leave access times alone (O_NOATIME where permitted) and still
read files it may not use O_NOATIME on (issue 23)."""
import os

import pytest

from opskit.backup.archiver import Archiver
from opskit.backup.workers import _Worker
from tests.harness.backup import CHUNK_AVG, engine_repo, open_repo

OLD = 1_000_000_000 * 10**9       # 2001: relatime would update an atime this old


def test_backup_keeps_access_times_of_small_and_big_files(tmp_path):
    engine_repo(tmp_path / "repo")
    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_bytes(b"x" * 100)
    (src / "big").write_bytes(os.urandom(CHUNK_AVG * 6))    # chunked, read-ahead advice
    for f in ("small", "big"):
        os.utime(src / f, ns=(OLD, OLD))
    repo = open_repo(tmp_path / "repo")
    Archiver(repo, workers=1).run([str(src)])
    for f in ("small", "big"):
        assert os.stat(src / f).st_atime_ns == OLD, f


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_open_falls_back_without_noatime_on_someone_elses_file(tmp_path):
    """O_NOATIME needs ownership or CAP_FOWNER: EPERM must not cost the file."""
    path = tmp_path / "roots"
    path.write_bytes(b"readable by all")
    os.chmod(path, 0o644)
    os.chmod(tmp_path, 0o711)
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)   # nobody cannot walk down to it
    pid = os.fork()
    if pid == 0:                        # child: become nobody, then read root's file
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            fd = _Worker._open(None, b"roots", dfd)
            code = 0 if os.read(fd, 100) == b"readable by all" else 1
        finally:
            os._exit(code)
    os.close(dfd)
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
