"""Run the opskit CLI in-process (fast) or as a subprocess (as a user would)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass
class CliRun:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_opskit(*args: str, env: dict | None = None, input: str | None = None,
               timeout: float = 300, cwd: str | None = None) -> CliRun:
    """Run ``python -m opskit ARGS`` in a subprocess and capture everything."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "opskit", *map(str, args)], env=full_env,
                          input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


def json_of(run: CliRun, code: int = 0):
    """What a ``--json`` run printed, once its exit code is ``code`` and no traceback leaked."""
    import json
    assert run.exit_code == code, run.output
    assert "Traceback" not in run.output
    return json.loads(run.stdout)


@pytest.fixture
def opskit():
    """Fixture form of ``run_opskit``: ``opskit('audit', 'verify')``."""
    return run_opskit
