"""Backends are found through one registry (docs/architecture.md: adding a backend)."""
import pytest

from opskit.backup import backends
from opskit.backup.backends import LocalBackend, open_backend, register_backend
from opskit.core.errors import ConfigError


def test_paths_and_file_urls_open_the_local_backend(tmp_path):
    assert isinstance(open_backend(str(tmp_path)), LocalBackend)
    assert isinstance(open_backend(f"file://{tmp_path}"), LocalBackend)


def test_an_unknown_scheme_names_every_registered_one():
    with pytest.raises(ConfigError) as err:
        open_backend("gopher://host/repo")
    text = str(err.value)
    assert "gopher://" in text and "s3://BUCKET/PREFIX" in text and "sftp://" in text


def test_one_registration_line_adds_a_backend(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    register_backend("mem", "local:LocalBackend", "mem://NAME")

    class _Loc(LocalBackend):
        def __init__(self, location, settings):
            super().__init__(str(tmp_path / location.split("://", 1)[1]))
    monkeypatch.setattr(backends.local, "LocalBackend", _Loc)
    backend = open_backend("mem://repo")
    assert isinstance(backend, _Loc)
