"""Error types and the exit codes that cron and monitoring depend on.

Exit codes (ARCHITECTURE.md):
    0  success, no findings
    1  completed, with findings (violations, drift, failed drill, tampered log)
    2  usage or configuration error
    3  operational failure (host unreachable, backend error, lock held, missing key)

Domain code raises these; the CLI turns them into one clear line on stderr
and the matching exit code, never a traceback.
"""

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3


class OpskitError(Exception):
    """Base of every expected error. ``str(err)`` is shown to the user as is."""

    exit_code = EXIT_OPERATIONAL

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(OpskitError):
    """Bad flag, bad argument, unknown name: the user must change the call."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration file is malformed. The message names file, line and key."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None, hint: str | None = None):
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        if key:
            where += f"key '{key}': "
        super().__init__(where + message, hint=hint)
        self.file, self.line, self.key = file, line, key


class OperationalError(OpskitError):
    """Something outside the user's call failed: host, backend, lock, key."""

    exit_code = EXIT_OPERATIONAL


class LockHeldError(OperationalError):
    """Another process holds a lock we need."""


class IntegrityError(OpskitError):
    """Data failed verification (tampered log, corrupt pack). Reported as findings."""

    exit_code = EXIT_FINDINGS


class Refused(UsageError):
    """A workflow step was refused by a rule (exit 2); ``rule`` is the rule id
    it enforces (access requests, corrections, freezes)."""

    def __init__(self, message: str, *, rule: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.rule = rule
