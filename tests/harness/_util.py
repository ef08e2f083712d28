"""Small helpers shared by the service fixtures (not a pytest plugin itself)."""


def log_tail(path: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a server log, for failure messages."""
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"
