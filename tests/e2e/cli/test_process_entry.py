"""The process entry point (``python -m opskit``, the ``opskit`` script) leaves
without interpreter teardown: what it printed must still arrive whole, with
the exit code of the ARCHITECTURE table, whatever reads it."""
import os
import subprocess
import sys

OPSKIT = [sys.executable, "-m", "opskit"]
ENV = {**os.environ, "OPSKIT_HOME": "/nonexistent-opskit-home"}


def test_output_to_a_pipe_is_flushed_and_exit_codes_kept(tmp_path):
    env = {**ENV, "OPSKIT_HOME": str(tmp_path / "home")}
    out = subprocess.run(OPSKIT + ["--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.endswith("\n")
    assert "Usage: opskit" in out.stdout and "Commands:" in out.stdout
    bad = subprocess.run(OPSKIT + ["no-such-command"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "No such command" in bad.stderr
    missing = subprocess.run(OPSKIT + ["backup", "snapshots", "--repo", str(tmp_path / "none")],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 3 and "backup init" in missing.stderr


def test_a_big_output_survives_and_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    env = {**ENV, "OPSKIT_HOME": str(tmp_path / "home")}
    full = subprocess.run(OPSKIT + ["--help"], capture_output=True, text=True, env=env).stdout
    with subprocess.Popen(OPSKIT + ["--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env) as proc:
        first = proc.stdout.readline()
        proc.stdout.close()                 # like `opskit ... | head -1`
        err = proc.stderr.read().decode()
        proc.wait(30)
    assert first.decode() == full.splitlines(keepends=True)[0]
    assert "Traceback" not in err
