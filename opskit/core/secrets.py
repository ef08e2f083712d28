"""Which names carry secrets, for redaction in the audit log and output.

One rule for the whole tool: a value stored under a name like ``password``,
``passphrase``, ``db_pass``, ``api_key`` or ``token`` is never written out.
Words that merely contain the letters (``passed``, ``bypass``, ``compass``)
are not secrets, and names ending in ``_file``/``-file`` hold a path to a
secret, not the secret itself.
"""
import re

_SECRET = re.compile(r"(?:^|[^a-z])pass(?:$|[^a-z])|passw(?:or)?d|passphrase|pwd|secret|token"
                     r"|credential|private.?key|api.?key", re.IGNORECASE)
_PATH = re.compile(r"[_-]file\Z", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True when a value stored under ``name`` may be a secret."""
    name = str(name)
    return bool(_SECRET.search(name)) and not _PATH.search(name)
