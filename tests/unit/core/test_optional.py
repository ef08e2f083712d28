"""psycopg is the ``opskit[postgres]`` extra (issue #22 item 13): every import of
it goes through opskit.core.optional.require, and without it a PostgreSQL
target is a one-line error naming the extra (exit 2), not a traceback."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opskit.core.errors import EXIT_USAGE, ConfigError
from opskit.core.optional import require
from opskit.perms.postgres import DatabaseSpec, collect_postgres
from tests.harness.corrections import make_world

OPSKIT = Path(__file__).resolve().parents[3] / "opskit"


@pytest.fixture
def no_psycopg(monkeypatch):
    """psycopg as if not installed: a None entry makes every import of it fail."""
    for name in [n for n in sys.modules if n == "psycopg" or n.startswith("psycopg.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("psycopg", "psycopg.sql", "psycopg.conninfo"):
        monkeypatch.setitem(sys.modules, name, None)


def test_require_returns_the_module_when_installed():
    assert require("json", extra="postgres").dumps([1]) == "[1]"


def test_missing_module_names_the_extra_in_one_line(no_psycopg):
    with pytest.raises(ConfigError) as err:
        require("psycopg", extra="postgres")
    text = str(err.value)
    assert "pip install 'opskit[postgres]'" in text and "psycopg is not installed" in text
    assert "\n" not in text and err.value.exit_code == EXIT_USAGE


def test_postgres_code_paths_fail_with_the_extra_named(no_psycopg):
    spec = DatabaseSpec("claims", dsn="postgresql://u@127.0.0.1:1/claims")
    with pytest.raises(ConfigError, match=r"opskit\[postgres\]"):
        collect_postgres(spec)
    with pytest.raises(ConfigError, match=r"opskit\[postgres\]"):
        spec.conninfo()


def test_the_cli_says_which_extra_to_install(tmp_path):
    # a PostgreSQL correction target in a process where psycopg cannot be imported
    w = make_world(tmp_path, "postgresql://opskit@127.0.0.1:1/his")
    code = ("import sys; sys.modules['psycopg'] = None; sys.argv[0] = 'opskit'; "
            "from opskit.cli import run; run()")
    env = dict(os.environ, **w.env("alice"))
    sql = tmp_path / "fix.sql"
    sql.write_text("UPDATE claims SET amount = 1 WHERE id = 42")
    proc = subprocess.run([sys.executable, "-c", code, "correct", "request", "--target", "his",
                           "--sql", str(sql),
                           "--reason", "r"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "opskit[postgres]" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2          # the error (and maybe a hint)


def test_psycopg_is_imported_only_through_require():
    direct = []
    for path in OPSKIT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "psycopg" or n.startswith("psycopg.") for n in names):
                direct.append(f"{path.relative_to(OPSKIT)}:{node.lineno}")
    assert not direct, "import psycopg through opskit.core.optional.require: " + ", ".join(direct)


def test_setup_cfg_makes_psycopg_an_extra_the_tests_install():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(OPSKIT.parent / "setup.cfg")
    assert "psycopg" not in cfg["options"]["install_requires"]
    extras = cfg["options.extras_require"]
    assert "psycopg" in extras["postgres"] and "psycopg" in extras["test"]
