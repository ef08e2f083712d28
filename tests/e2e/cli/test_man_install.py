"""`man opskit` and `man opskit-backup` work after `pip install .` into a fresh
venv (issue #22 item 11). The venv sees the machine's packages, so only opskit
itself is built and installed; man finds the pages with MANPATH set to the
venv's share/man, as docs/cli.md tells users whose pip prefix is not on man's
path."""
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_man_pages_are_installed_with_the_package(tmp_path):
    man = shutil.which("man")
    assert man, "man is not installed (scripts/test installs man-db)"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build",
                                                             "__pycache__", ".pytest_cache"))
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                          str(src)], capture_output=True, text=True,
                         timeout=300)
    assert pip.returncode == 0, pip.stderr
    manpath = venv / "share" / "man"
    assert (manpath / "man1" / "opskit.1").exists()
    assert (venv / "share" / "doc" / "opskit" / "backup.md").exists()     # --help points there
    env = dict(os.environ, MANPATH=str(manpath), MANPAGER="cat", PAGER="cat", MANWIDTH="100")
    for page, expect in (("opskit", "backup"), ("opskit-backup", "replicate")):
        shown = subprocess.run([man, page], env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert expect in shown.stdout
    missing = subprocess.run([man, "opskit-no-such-page"], env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode != 0
