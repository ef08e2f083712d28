"""The tamper-evident audit log (R-DAT-1, R-AUD-1, R-AUD-3).

One JSON object per line, appended once per opskit command::

    {"arguments":{...},"command":"backup run","details":null,"exit_code":0,
     "hash":"<sha256>","host":"db1","operator":"root as alice","prev":"<sha256>",
     "result":"ok","seq":42,"summary":"...","time":"2026-11-01T08:00:00.123Z"}

* ``seq`` counts 1, 2, 3 ... with no gaps.
* ``prev`` is the SHA-256 (hex) of the previous line's exact bytes (without
  its newline); the first entry has 64 zeros (``GENESIS``).
* ``hash`` is the SHA-256 of the canonical JSON of the entry without
  ``hash`` (keys sorted, separators ``,`` ``:``, UTF-8, no ASCII escaping).
* Every line is itself that canonical JSON (including ``hash``).

So editing, deleting, inserting or reordering any entry breaks the chain
at that point, and ``verify`` names the first bad line. Cutting entries off
the *end*, or rewriting the whole file with a freshly computed chain, cannot
be seen from the file alone: checkpoints (seq + hash of the head, kept in
``checkpoints.jsonl`` beside the log and, more importantly, exported off the
machine) catch those. Whoever can rewrite the log *and* every copy of the
checkpoints can forge history; see docs/audit-log.md for the threat model.

Writers serialise on an exclusive ``FileLock`` on ``<log>.lock``; each entry
is one ``os.write`` on an ``O_APPEND`` descriptor followed by ``fsync``.
Readers (``verify``, ``entries``) read the bytes that existed when they
started, so they never see a half-written line of a concurrent writer.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import socket
import stat
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from .durations import DurationError, parse_timedelta
from .secrets import is_secret_name
from .errors import IntegrityError, LockHeldError, OperationalError, UsageError
from .filelock import FileLock

GENESIS = "0" * 64
REDACTED = "***"
CHECKPOINTS_FILE = "checkpoints.jsonl"
ANCHORS_DIR = "anchors"      # local copies of signed checkpoints (core.anchors)
LOCK_TIMEOUT = 30.0

# Field -> accepted types. ``details`` may also be null. Unknown extra fields are
# allowed (a later format version may add some); they are covered by ``hash``.
FIELDS: dict[str, type | tuple] = {
    "seq": int, "time": str, "operator": str, "host": str, "command": str,
    "arguments": dict, "result": str, "exit_code": int, "summary": str,
    "details": (dict, type(None)), "prev": str, "hash": str,
}

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


# --- helpers -------------------------------------------------------------------------

def is_secret_key(name: str) -> bool:
    """True when a value stored under ``name`` may be a secret (core.secrets)."""
    return is_secret_name(name)


def redact_secrets(value: Any, key: str | None = None) -> Any:
    """Defensive second line of redaction: ``***`` for values under secret-ish keys,
    at any depth, and for ``key=value`` strings whose key is secret-ish. Also turns
    the value into plain JSON types (str/int/float/bool/None/list/dict)."""
    if key is not None and is_secret_key(key) and value is not None:
        return REDACTED
    if isinstance(value, dict):
        return {str(k): redact_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_secrets(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = _clean_text(value if isinstance(value, (str, bytes)) else str(value))
    name, sep, _ = text.partition("=")
    if sep and is_secret_key(name.strip().lstrip("-")):
        return f"{name}={REDACTED}"
    return text


def _clean_text(text: Any) -> str:
    """A str that encodes to UTF-8 (lone surrogates from undecodable file names
    become ``\\udcxx`` text), so every line is valid UTF-8 and round-trips."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "backslashreplace")
    text = str(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def canonical(obj: Any) -> bytes:
    """The canonical serialisation hashed and stored: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict) -> str:
    """SHA-256 hex over the canonical JSON of ``entry`` without its ``hash`` field."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def line_hash(line: bytes) -> str:
    """SHA-256 hex of one stored line (without its newline): the next entry's ``prev``."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def utc_now() -> str:
    """Current UTC time as ISO-8601 with milliseconds and ``Z``."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def parse_time(text: str) -> _dt.datetime:
    """Parse an entry's ``time`` (ISO-8601; ``Z`` or an offset) into an aware datetime."""
    value = _dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return value


def parse_since(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """``--since``: a duration back from now (``90s``, ``30m``, ``24h``, ``7d``, ``2w``, ``3mo``;
    opskit.core.durations) or a
    date/time (``2026-11-01``, ``2026-11-01T08:00``, ``2026-11-01 08:00:00Z``). A date or
    time without a zone is local time. Returns an aware datetime; UsageError if neither."""
    text = (text or "").strip()
    now = now or _dt.datetime.now(_dt.timezone.utc)
    try:
        return now - parse_timedelta(text)
    except DurationError:
        pass
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since: cannot read {text!r} as a date or a duration",
                         hint="use a date such as 2026-11-01 or 2026-11-01T08:00, "
                              "or a duration such as 90m, 24h, 7d, 2w, 3mo") from None
    if value.tzinfo is None:
        value = value.astimezone()  # naive = local time
    return value


def operator_matches(operator: str, name: str) -> bool:
    """``--operator``: ``name`` is the whole operator field, the OS user, the sudo
    user or the declared operator name (``root (sudo from alice) as bob``)."""
    if operator == name:
        return True
    return re.search(r"(?<![\w.@-])" + re.escape(name) + r"(?![\w.@-])", operator) is not None


def load_checkpoints(path: str | os.PathLike) -> list[dict]:
    """Read an exported checkpoint file: one JSON object, JSON lines, or several
    (pretty-printed) objects one after another. UsageError when unreadable/invalid."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"checkpoint file {path} not found") from None
    except OSError as exc:
        raise UsageError(f"cannot read checkpoint file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"checkpoint file {path} is not UTF-8 text") from None
    decoder = json.JSONDecoder()
    found: list[dict] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError as exc:
            raise UsageError(f"checkpoint file {path}: not valid JSON ({exc.msg} at "
                             f"line {exc.lineno})") from None
        items = obj if isinstance(obj, list) else [obj]
        for item in items:
            if isinstance(item, dict) and "seq" not in item and \
                    isinstance(item.get("checkpoint"), dict):
                item = item["checkpoint"]   # a signed one (core.anchors); signature unchecked here
            problem = checkpoint_problem(item)
            if problem:
                raise UsageError(f"checkpoint file {path}:{line}: {problem}")
            found.append(dict(item, _source=f"checkpoint from {path}:{line}"))
    if not found:
        raise UsageError(f"checkpoint file {path} holds no checkpoint")
    return found


def checkpoint_problem(cp: Any) -> str | None:
    """Why ``cp`` is not a usable checkpoint, or None."""
    if not isinstance(cp, dict):
        return "a checkpoint must be a JSON object with 'seq' and 'hash'"
    seq, digest = cp.get("seq"), cp.get("hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return "checkpoint 'seq' must be a non-negative integer"
    if not isinstance(digest, str) or not _HEX64.match(digest):
        return "checkpoint 'hash' must be 64 lowercase hex digits"
    return None


def _field_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return "malformed line: not a JSON object"
    for name, kinds in FIELDS.items():
        if name not in entry:
            if name == "details":
                continue
            return f"malformed entry: field '{name}' is missing"
        value = entry[name]
        if isinstance(value, bool) and kinds is int:
            return f"malformed entry: field '{name}' has the wrong type"
        if not isinstance(value, kinds):
            return f"malformed entry: field '{name}' has the wrong type"
    if entry["seq"] < 1:
        return "malformed entry: 'seq' must be 1 or more"
    for name in ("prev", "hash"):
        if not _HEX64.match(entry[name]):
            return f"malformed entry: '{name}' is not 64 lowercase hex digits"
    return None


def _describe_cp(cp: dict) -> str:
    where = cp.get("_source") or "checkpoint"
    taken = f" taken {cp['time']}" if isinstance(cp.get("time"), str) else ""
    return f"{where}{taken}"


# --- the report ----------------------------------------------------------------------

@dataclass
class VerifyReport:
    """Outcome of ``AuditLog.verify``.

    ok               True when every check passed
    entries_checked  entries verified before the first problem (all of them when ok)
    first_bad_seq    seq of the first bad entry (None when unknown, e.g. unparseable line)
    first_bad_line   1-based line number of the first bad entry (for truncation: the
                     line where the missing entries should have been)
    problem          what is wrong, in words
    head             (seq, hash) of the last good entry, None when there is none
    checkpoints_checked  checkpoints compared against the log
    log              the log file
    """

    ok: bool
    entries_checked: int
    first_bad_seq: int | None = None
    first_bad_line: int | None = None
    problem: str | None = None
    head: tuple[int, str] | None = None
    checkpoints_checked: int = 0
    log: str = ""

    def describe(self) -> str:
        """One line for people and for the audit summary."""
        if self.ok:
            if self.head is None:
                return "audit log is empty"
            return f"audit log intact: {self.entries_checked} entries, head {self.head[1][:12]}"
        where = []
        if self.first_bad_seq is not None:
            where.append(f"seq {self.first_bad_seq}")
        if self.first_bad_line is not None:
            where.append(f"line {self.first_bad_line}")
        at = f" at {', '.join(where)}" if where else ""
        return f"audit log verification FAILED{at}: {self.problem}"

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "log": self.log, "entries_checked": self.entries_checked,
            "first_bad_seq": self.first_bad_seq, "first_bad_line": self.first_bad_line,
            "problem": self.problem,
            "head": None if self.head is None else {"seq": self.head[0], "hash": self.head[1]},
            "checkpoints_checked": self.checkpoints_checked,
        }


# --- the log -------------------------------------------------------------------------

class AuditLog:
    """An append-only, hash-chained JSON-lines audit log at ``path``."""

    def __init__(self, path: str | os.PathLike, lock_timeout: float | None = LOCK_TIMEOUT):
        self.path = os.path.abspath(os.fspath(path))
        self.lock_path = self.path + ".lock"
        self.checkpoints_path = os.path.join(os.path.dirname(self.path), CHECKPOINTS_FILE)
        self.anchors_dir = os.path.join(os.path.dirname(self.path), ANCHORS_DIR)
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"AuditLog({self.path!r})"

    # --- writing ---------------------------------------------------------------------
    def _ensure_dir(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)

    def _lock(self, shared: bool = False) -> FileLock:
        return FileLock(self.lock_path, shared=shared, timeout=self.lock_timeout)

    def append(self, *, operator: str, host: str, command: str,
               arguments: dict | None = None, result: str, exit_code: int,
               summary: str = "", details: dict | None = None) -> dict:
        """Append one entry and return it (with ``seq``, ``time``, ``prev``, ``hash``).

        Arguments should already be redacted by the caller; secret-ish keys are
        redacted here again. Safe against any number of concurrent writers.
        Raises IntegrityError when the last line cannot be chained onto (torn or
        malformed), OperationalError/LockHeldError/OSError on I/O problems."""
        fields = {
            "operator": _clean_text(operator), "host": _clean_text(host),
            "command": _clean_text(command),
            "arguments": redact_secrets(dict(arguments or {})),
            "result": _clean_text(result), "exit_code": int(exit_code),
            "summary": _clean_text(summary or ""),
            "details": redact_secrets(dict(details)) if details else None,
        }
        self._ensure_dir()
        with self._lock():
            entry = append_chained(self.path, self._tail_link, fields)
        return entry

    def _tail_link(self, fd: int, size: int) -> tuple[int, str]:
        """(seq, line hash) of the last entry, (0, GENESIS) for an empty log."""
        last = _read_last_line(fd, size)
        if last is None:
            return 0, GENESIS
        if not last.endswith(b"\n"):
            raise IntegrityError(
                f"audit log {self.path} ends with an incomplete line; refusing to extend it",
                hint="run 'opskit audit verify' and see docs/audit-log.md (torn last line)")
        try:
            entry = json.loads(last)
            seq = entry["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise ValueError
        except (ValueError, TypeError, KeyError):
            raise IntegrityError(
                f"the last line of audit log {self.path} is not a valid entry; "
                "refusing to extend it",
                hint="run 'opskit audit verify' and see docs/audit-log.md") from None
        return seq, line_hash(last)

    # --- reading ---------------------------------------------------------------------
    def _stable_size(self) -> int:
        """Bytes of the log that no writer is still writing (0 when missing): the size
        seen under a shared lock, which waits for an append in progress to finish."""
        lock: FileLock | None = FileLock(self.lock_path, shared=True, timeout=self.lock_timeout)
        try:
            lock.acquire()
        except LockHeldError:
            raise
        except OperationalError:
            lock = None  # no directory yet, or a read-only place: nobody is writing there
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0
        finally:
            if lock is not None:
                lock.release()

    def _lines(self, size: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(line number, raw line incl. newline) for the first ``size`` bytes."""
        if size is None:
            size = self._stable_size()
        if size <= 0:
            return
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            consumed = 0
            for lineno, raw in enumerate(fh, 1):
                consumed += len(raw)
                if consumed >= size:
                    if consumed > size:
                        raw = raw[: len(raw) - (consumed - size)]
                    yield lineno, raw
                    return
                yield lineno, raw

    def records(self) -> Iterator[tuple[int, dict | None]]:
        """(line number, entry) for every line; entry is None for a malformed line."""
        for lineno, raw in self._lines():
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = None
            if not isinstance(entry, dict) or not raw.endswith(b"\n"):
                entry = None
            yield lineno, entry

    def entries(self) -> Iterator[dict]:
        """Every parseable entry, oldest first (no integrity checks: use ``verify``)."""
        for _, entry in self.records():
            if entry is not None:
                yield entry

    def select(self, since: _dt.datetime | None = None, command: str | None = None,
               operator: str | None = None, limit: int | None = None) -> tuple[list[dict], int]:
        """Entries matching every given filter, oldest first; with ``limit`` the newest
        ``limit`` of them. Returns (entries, number of malformed lines skipped)."""
        picked: deque | list = deque(maxlen=limit) if limit else []
        skipped = 0
        for _, entry in self.records():
            if entry is None:
                skipped += 1
                continue
            if command and not str(entry.get("command", "")).startswith(command):
                continue
            if operator and not operator_matches(str(entry.get("operator", "")), operator):
                continue
            if since is not None:
                try:
                    if parse_time(str(entry.get("time"))) < since:
                        continue
                except ValueError:
                    continue
            picked.append(entry)
        return list(picked), skipped

    def head(self) -> tuple[int, str] | None:
        """(seq, hash) of the last entry, or None for an empty/missing log."""
        size = self._stable_size()
        if size == 0:
            return None
        with open(self.path, "rb") as fh:
            last = _read_last_line(fh.fileno(), size)
        try:
            entry = json.loads(last)
            if not last.endswith(b"\n") or _field_problem(entry):
                raise ValueError
        except ValueError:
            raise IntegrityError(f"the last line of audit log {self.path} is not a valid entry",
                                 hint="run 'opskit audit verify'") from None
        return entry["seq"], entry["hash"]

    # --- checkpoints -----------------------------------------------------------------
    def recorded_checkpoints(self) -> tuple[list[dict], str | None]:
        """Checkpoints recorded beside this log (this log's only), and the first problem
        found in that file (a malformed line), if any."""
        found: list[dict] = []
        problem = None
        try:
            fh = open(self.checkpoints_path, "rb")
        except FileNotFoundError:
            return found, None
        mine = os.path.basename(self.path)
        with fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    cp = json.loads(raw)
                except ValueError:
                    cp = None
                issue = checkpoint_problem(cp) if raw.endswith(b"\n") else "incomplete line"
                if issue:
                    problem = problem or (f"checkpoint file {self.checkpoints_path} line "
                                          f"{lineno} is malformed ({issue})")
                    continue
                log = cp.get("log")
                if isinstance(log, str) and os.path.basename(log) != mine:
                    continue  # another log in the same directory
                cp = dict(cp, _source=f"checkpoint recorded at {self.checkpoints_path}:{lineno}")
                found.append(cp)
        return found, problem

    def checkpoint(self, verify: bool = True) -> dict:
        """Record the current head as a checkpoint ``{seq, hash, time, log, host}`` in
        ``checkpoints.jsonl`` beside the log, and return it for export.

        With ``verify`` (default) the log is verified first and the checkpoint is the
        verified head; a log that fails verification raises IntegrityError (a checkpoint
        must never bless a tampered log). An empty log raises OperationalError."""
        if verify:
            report = self.verify()
            if not report.ok:
                raise IntegrityError("refusing to checkpoint: " + report.describe(),
                                     hint="investigate with 'opskit audit verify'")
            head = report.head
        else:
            head = self.head()
        if head is None:
            raise OperationalError(f"audit log {self.path} is empty: nothing to checkpoint yet",
                                   hint="every opskit command adds an entry; run one first")
        cp = {"seq": head[0], "hash": head[1], "time": utc_now(), "log": self.path,
              "host": _clean_text(socket.gethostname())}
        self._ensure_dir()
        with self._lock():
            fd = os.open(self.checkpoints_path,
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                size = os.fstat(fd).st_size
                _write_all_or_nothing(fd, canonical(cp) + b"\n", size, self.checkpoints_path)
                os.fsync(fd)
            finally:
                os.close(fd)
        return cp

    # --- verification ----------------------------------------------------------------
    def verify(self, checkpoint: dict | Sequence[dict] | None = None, *,
               use_recorded: bool = True) -> VerifyReport:
        """Stream the log and check every entry: well-formed, canonical, hash matches
        content, seq consecutive from 1, prev = hash of the previous line. Then compare
        against checkpoints: ``checkpoint`` (a dict or list of dicts, e.g. from
        ``load_checkpoints``) and, with ``use_recorded``, those in checkpoints.jsonl.
        A checkpoint catches a rewritten history (hash differs at its seq) and a cut
        tail (log shorter than its seq). Stops at the first problem."""
        explicit = [] if checkpoint is None else (
            [checkpoint] if isinstance(checkpoint, dict) else list(checkpoint))
        for cp in explicit:
            issue = checkpoint_problem(cp)
            if issue:
                raise UsageError(issue)
        explicit = [dict(cp, _source=cp.get("_source") or "given checkpoint") for cp in explicit]
        cp_file_problem = None
        recorded: list[dict] = []
        if use_recorded:
            recorded, cp_file_problem = self.recorded_checkpoints()
        by_seq: dict[int, list[dict]] = {}
        for cp in explicit + recorded:
            if cp["seq"] > 0:
                by_seq.setdefault(cp["seq"], []).append(cp)
        n_cps = sum(len(v) for v in by_seq.values())

        report = VerifyReport(ok=True, entries_checked=0, checkpoints_checked=n_cps, log=self.path)

        def fail(problem: str, seq: int | None, lineno: int | None) -> VerifyReport:
            report.ok = False
            report.problem = problem
            report.first_bad_seq = seq
            report.first_bad_line = lineno
            return report

        prev_hash = GENESIS
        expected = 1
        last_line = 0
        lines = self._lines()
        for lineno, raw in lines:
            last_line = lineno
            if not raw.endswith(b"\n"):
                return fail("incomplete last line (no newline at the end: a write was cut "
                            "short, or the file was altered)", None, lineno)
            line = raw[:-1]
            try:
                entry = json.loads(line)
            except ValueError:
                return fail(f"malformed line: not valid JSON (seq {expected} expected here)",
                            None, lineno)
            issue = _field_problem(entry)
            if issue:
                seq = entry.get("seq") if isinstance(entry, dict) else None
                seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
                return fail(f"{issue} (seq {expected} expected here)", seq, lineno)
            seq = entry["seq"]
            if entry_hash(entry) != entry["hash"]:
                return fail("content does not match its hash: the entry was edited", seq, lineno)
            if seq != expected:
                return fail(self._seq_problem(seq, expected, lines), seq, lineno)
            if entry["prev"] != prev_hash:
                if expected == 1:
                    problem = ("prev is not the genesis value: entries before this one were "
                               "removed, or this is not the start of the log")
                else:
                    problem = (f"prev does not match the entry before it (seq {seq - 1}, line "
                               f"{lineno - 1}): that entry was altered after this one was "
                               "written, or entries were removed, inserted or reordered")
                return fail(problem, seq, lineno)
            if canonical(entry) != line:
                return fail("line is not in canonical form: it was rewritten (by hand or "
                            "by another tool)", seq, lineno)
            for cp in by_seq.get(seq, ()):
                if cp["hash"] != entry["hash"]:
                    return fail(f"entry differs from the {_describe_cp(cp)} (hash "
                                f"{cp['hash'][:12]}, log has {entry['hash'][:12]}): history up "
                                "to this entry was rewritten", seq, lineno)
            prev_hash = hashlib.sha256(line).hexdigest()
            report.head = (seq, entry["hash"])
            report.entries_checked += 1
            expected += 1

        if by_seq:
            newest = max(by_seq)
            if newest >= expected:
                cp = by_seq[newest][0]
                have = (f"log ends at seq {expected - 1}" if expected > 1
                        else "log is empty or missing")
                gone = f"seq {expected}" if newest == expected else f"seq {expected}..{newest}"
                return fail(f"{have} but the {_describe_cp(cp)} records seq {newest}: {gone} "
                            "missing (log truncated)", expected, last_line + 1)
        if cp_file_problem:
            return fail(cp_file_problem, None, None)
        lax = _lax_permissions(self.path) if report.head is not None else None
        if lax:
            return fail(lax, None, None)
        return report

    @staticmethod
    def _seq_problem(found: int, expected: int, rest: Iterator[tuple[int, bytes]]) -> str:
        """Explain a seq out of sequence: look ahead whether ``expected`` comes later."""
        if found < expected:
            return (f"seq {found} where seq {expected} was expected: an entry was duplicated "
                    "or moved (entries reordered)")
        later = None
        for lineno, raw in rest:
            try:
                other = json.loads(raw)
            except ValueError:
                continue
            if isinstance(other, dict) and other.get("seq") == expected:
                later = lineno
                break
        if later is not None:
            return (f"seq {found} where seq {expected} was expected; seq {expected} comes later, "
                    f"at line {later} (entries reordered)")
        gone = f"seq {expected}" if found == expected + 1 else f"seq {expected}..{found - 1}"
        after = f"after seq {expected - 1}" if expected > 1 else "at the start of the log"
        return f"{gone} missing: seq {found} follows {after} (entries deleted)"


def _lax_permissions(path: str) -> str | None:
    """Why someone besides root and this user could rewrite the log at ``path`` (the file
    or its directory writable by group or others, or owned by another user), or None.
    Such a person can recompute the whole chain: the log proves nothing against them
    (R-AUD-3, R-DAT-1). opskit creates the directory 0700 and the file 0600."""
    me = os.geteuid()
    for what, where in (("audit log", path), ("audit log directory", os.path.dirname(path))):
        try:
            st = os.stat(where)
        except OSError:
            continue
        sticky_dir = what != "audit log" and st.st_mode & 0o1000
        if st.st_mode & 0o022 and not sticky_dir:
            return (f"{what} {where} is writable by group or others (mode "
                    f"{stat.S_IMODE(st.st_mode):04o}): they can rewrite the log with a "
                    "recomputed chain; 'chmod go-w' it (opskit creates 0600 / 0700)")
        if st.st_uid not in (0, me):
            return (f"{what} {where} is owned by uid {st.st_uid}, neither root nor this "
                    "user: that user can rewrite the log with a recomputed chain")
    return None


# --- low-level I/O -------------------------------------------------------------------

def append_chained(path: str, tail, fields: dict) -> dict:
    """Append ``fields`` as one chained line to ``path`` (created 0600) and fsync it.
    ``tail(fd, size)`` gives the (seq, line hash) to chain onto. The caller holds the
    writers' lock. Also used by other hash-chained registers (opskit.incidents.chain)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        seq, prev = tail(fd, size)
        entry, line = build_entry(seq + 1, prev, fields)
        _write_all_or_nothing(fd, line + b"\n", size, path)
        os.fsync(fd)
    finally:
        os.close(fd)
    if size == 0:
        _fsync_dir(os.path.dirname(path))
    return entry


def build_entry(seq: int, prev: str, fields: dict) -> tuple[dict, bytes]:
    """Complete an entry (``seq``, ``time`` unless given, ``prev``, ``hash``) and return it
    with its canonical line (no newline). ``fields`` holds the other fields."""
    entry = {"seq": seq, "time": fields.get("time") or utc_now()}
    entry.update((k, v) for k, v in fields.items() if k not in ("seq", "time", "prev", "hash"))
    entry["prev"] = prev
    entry["hash"] = hashlib.sha256(canonical(entry)).hexdigest()
    return entry, canonical(entry)


def _read_last_line(fd: int, size: int) -> bytes | None:
    """The last line among the first ``size`` bytes (with its newline if it has one),
    reading backwards from the end; None when ``size`` is 0."""
    if size <= 0:
        return None
    block = 4096
    pos = size
    buf = b""
    while True:
        start = max(0, pos - block)
        buf = os.pread(fd, pos - start, start) + buf
        pos = start
        cut = buf.rfind(b"\n", 0, len(buf) - 1)
        if cut >= 0:
            return buf[cut + 1:]
        if pos == 0:
            return buf
        block = min(block * 2, 1 << 20)


def _write_all_or_nothing(fd: int, data: bytes, size_before: int, path: str) -> None:
    """One ``os.write`` of ``data``; a short or failed write (disk full) is undone so no
    torn line is left behind. The caller holds the lock, so nobody appended meanwhile."""
    try:
        written = os.write(fd, data)
    except OSError:
        _undo(fd, size_before)
        raise
    if written != len(data):
        _undo(fd, size_before)
        raise OperationalError(f"short write to {path} ({written} of {len(data)} bytes; "
                               "disk full?)")


def _undo(fd: int, size_before: int) -> None:
    try:
        os.ftruncate(fd, size_before)
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["AuditLog", "VerifyReport", "GENESIS", "append_chained", "build_entry", "canonical", "entry_hash",
           "line_hash", "is_secret_key", "redact_secrets", "parse_since", "parse_time",
           "operator_matches", "load_checkpoints", "checkpoint_problem", "utc_now"]
