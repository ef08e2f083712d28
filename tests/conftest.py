"""Shared pytest setup.

Real-component fixtures (sshd, PostgreSQL, S3 server, ...) live one per
module in ``tests/harness/``; every module there is loaded as a plugin so
any test can ask for its fixtures by name.
"""
import os
import pkgutil

import pytest

# harness modules import each other (backup imports cli): registered before any
# is loaded, all get pytest's assertion rewriting, not only the first imported
pytest.register_assert_rewrite("tests.harness")

from tests import harness  # noqa: E402  (after the registration above)

pytest_plugins = [f"tests.harness.{m.name}" for m in pkgutil.iter_modules(harness.__path__)
                  if not m.name.startswith("_")]


@pytest.fixture(autouse=True)
def _isolated_opskit_home(tmp_path, monkeypatch):
    """Every test gets its own state directory and no ambient config."""
    home = tmp_path / "opskit-home"
    monkeypatch.setenv("OPSKIT_HOME", str(home))
    monkeypatch.delenv("OPSKIT_CONFIG", raising=False)
    monkeypatch.delenv("OPSKIT_PASSPHRASE", raising=False)
    monkeypatch.delenv("OPSKIT_PASSPHRASE_FILE", raising=False)
    monkeypatch.delenv("OPSKIT_OPERATOR", raising=False)
    return home
