"""Which names carry secrets, for redaction in the audit log and output.

One rule for the whole tool: a value stored under a name like ``password``,
``passphrase``, ``db_pass``, ``api_key`` or ``token`` is never written out.
Words that merely contain the letters (``passed``, ``bypass``, ``compass``)
are not secrets, and names ending in ``_file``/``-file`` hold a path to a
secret, not the secret itself.
"""
import re
from typing import Any

_SECRET = re.compile(r"(?:^|[^a-z])pass(?:$|[^a-z])|passw(?:or)?d|passphrase|pwd|secret|token"
                     r"|credential|private.?key|api.?key", re.IGNORECASE)
_PATH = re.compile(r"[_-]file\Z", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """True when a value stored under ``name`` may be a secret."""
    name = str(name)
    return bool(_SECRET.search(name)) and not _PATH.search(name)


def redact(name: str, value: Any) -> Any:
    """Redact ``value`` when ``name`` is secret; also redact ``key=value`` items
    (``--var``, ``--param``) whose key is secret."""
    if value is None:
        return None
    if is_secret_name(name):
        return "***"
    if isinstance(value, (list, tuple)):
        return [redact(name, v) for v in value]
    if isinstance(value, str) and "=" in value:
        key, _, _ = value.partition("=")
        if is_secret_name(key.strip()):
            return f"{key}=***"
    if isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def redact_argv(args: list[str]) -> list[str]:
    """Raw command-line words with values of secret-named options hidden."""
    out, hide_next = [], False
    for word in args:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        if word.startswith("--"):
            name, eq, _value = word[2:].partition("=")
            if is_secret_name(name):
                if eq:
                    out.append(f"--{name}=***")
                else:
                    out.append(word)
                    hide_next = True
                continue
        out.append(str(redact("argv", word)))
    return out


def redact_url(url: str) -> str:
    """A URL with its password (if any) shown as ``***``."""
    from urllib.parse import urlsplit, urlunsplit
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    host = netloc[-1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
