"""The permission checks, one module per family; importing the package registers them
(opskit.perms.findings.finding_check). Within a scope, checks run in import order."""
from . import collection, linux, postgres, pg_defaults, pg_rows, roster, keys  # noqa: F401
# (registration order)
