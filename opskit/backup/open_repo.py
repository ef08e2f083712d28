"""Glue between settings and the repository: where it is, how it is unlocked.

Kept free of click: the CLI passes a ``prompt`` callable for interactive
passphrases.
"""
from __future__ import annotations

import os
import stat as statmod
from typing import Callable

from opskit.core.config import Config
from opskit.core.errors import ConfigError, OperationalError, UsageError

from opskit.core.state import StateLayout

from .backends import open_backend
from .repository import Repository

PASSPHRASE_ENV = "OPSKIT_PASSPHRASE"
PASSPHRASE_FILE_ENV = "OPSKIT_PASSPHRASE_FILE"


def default_repo_location(state_dir: str) -> str:
    return StateLayout(state_dir).repo


def repo_location(config: Config, state_dir: str, override: str | None) -> tuple[str, bool]:
    """(location, is_default). ``--repo`` > ``backup.repo`` > <state_dir>/repo."""
    if override:
        return override, False
    configured = config.get("backup.repo")
    if configured:
        return (configured if "://" in configured else config.relative_path(configured)), False
    return default_repo_location(state_dir), True


def read_passphrase_file(path: str) -> bytes:
    """First line of a passphrase file; refuses files others can read (0600 rule)."""
    path = os.path.expanduser(path)
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise UsageError(f"passphrase file {path} does not exist") from None
    except OSError as exc:
        raise OperationalError(f"passphrase file {path}: {exc.strerror}") from None
    if st.st_mode & (statmod.S_IRWXG | statmod.S_IRWXO):
        raise ConfigError(f"passphrase file {path} is readable by others (mode "
                          f"{statmod.S_IMODE(st.st_mode):04o})", hint=f"chmod 600 {path}")
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise UsageError(f"passphrase file {path} is empty")
    return line


def find_passphrase(config: Config, passphrase_file: str | None) -> bytes | None:
    """Passphrase from --passphrase-file, $OPSKIT_PASSPHRASE, $OPSKIT_PASSPHRASE_FILE or
    ``backup.passphrase_file``; None when the user must be asked."""
    if passphrase_file:
        return read_passphrase_file(passphrase_file)
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode()
    env_file = os.environ.get(PASSPHRASE_FILE_ENV)
    if env_file:
        return read_passphrase_file(env_file)
    configured = config.get("backup.passphrase_file")
    if configured:
        return read_passphrase_file(config.relative_path(configured))
    return None


def get_passphrase(config: Config, passphrase_file: str | None,
                   prompt: Callable[[bool], bytes] | None, *, confirm: bool = False) -> bytes:
    found = find_passphrase(config, passphrase_file)
    if found is not None:
        return found
    if prompt is None:
        raise OperationalError(
            "no repository passphrase given",
            hint=f"set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV}, pass --passphrase-file, "
                 "or set backup.passphrase_file in the config")
    return prompt(confirm)


def tune(repo: Repository, config: Config) -> Repository:
    repo.compression_level = int(config.get("backup.compression_level"))
    repo.pack_size = int(config.get("backup.pack_size_mib")) << 20
    return repo


def backend_for(location: str, config: Config | None = None):
    """The backend for ``location``: a configured site (by name or by its URL)
    gets that site's settings (endpoint, credentials, keys, known_hosts);
    anything else is a plain path or URL."""
    if config is not None and location:
        from .replicate import configured_sites, open_site
        sites = configured_sites(config)
        site = sites.get(location) or next((s for s in sites.values() if s.url == location), None)
        if site is not None:
            return open_site(site)
    return open_backend(location)


def open_repository(location: str, passphrase: bytes, config: Config) -> Repository:
    return tune(Repository.open(backend_for(location, config), passphrase), config)


def init_repository(location: str, passphrase: bytes, config: Config) -> Repository:
    avg = int(config.get("backup.chunk_avg_kib")) << 10
    return tune(Repository.init(backend_for(location, config), passphrase, chunk_avg=avg), config)


def repository_exists(location: str, config: Config | None = None) -> bool:
    return backend_for(location, config).exists("config")
