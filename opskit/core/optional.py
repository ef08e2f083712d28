"""Optional dependencies: the one place a module from an extra is imported, so
that a missing one is a one-line error naming the extra to install
(``pip install 'opskit[postgres]'``), exit 2, never a traceback."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

# what each extra is for, in the error people read
_NEEDED_FOR = {"postgres": "a PostgreSQL target (corrections, perms, database backups, "
                           "database freezes)"}


def require(module: str, extra: str) -> ModuleType:
    """``module`` imported; ConfigError (exit 2) naming ``extra`` when it (or a
    library it needs, such as libpq) is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        why = _NEEDED_FOR.get(extra, f"the '{extra}' feature")
        raise ConfigError(f"{top} is not installed ({exc}); it is needed for {why}: "
                          f"pip install 'opskit[{extra}]'") from None
