"""Verify a correction ledger: chain, every signature, declared signers, workflow rules.

Works on the live ledger (SQLite or PostgreSQL) and offline on an export
(json, csv or html), R-AUD-1. Checks, per entry in seq order, stopping at
the first problem and naming it:

1. the entry parses and has every field with the right type        -> malformed
2. ``hash`` matches the content                                      -> edited
3. ``seq`` is the next number                                        -> deleted / reordered / inserted
4. ``prev`` is the hash of the previous stored entry                 -> edited (hash recomputed),
                                                                        deleted, inserted, reordered
5. ``sig`` verifies with ``key``                                     -> forged (or edited + rehashed)
6. ``key`` is declared for ``actor`` in the rules file               -> forged (unknown signer)
7. the entry is a legal workflow step (workflow.step)                -> workflow violation
8. checkpoints (seq + hash kept elsewhere, e.g. the newest ledger seq
   the audit log recorded) match                                     -> truncated / rewritten

Signatures (about 60 us each) are checked in worker processes for large
ledgers, fed in chunks while this process walks the chain, so both overlap.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from opskit.core.audit import GENESIS
from opskit.core.errors import IntegrityError

from . import workflow as wf
from opskit.core.signing import verify_batch
from .ledger import Ledger, Refused, decode, split, text_hash
from .rulesfile import Registry

FIELDS = {"v": int, "seq": int, "time": str, "kind": str, "request": str, "actor": str,
          "key": str, "body": dict, "prev": str, "hash": str, "sig": str}
PARALLEL_MIN = 4000
CHUNK = 5000


@dataclass
class Report:
    ok: bool = True
    entries_checked: int = 0
    signatures_checked: int = 0
    first_bad_seq: int | None = None
    position: int | None = None          # 1-based position in the ledger/export
    problem: str | None = None
    kind_of_tampering: str | None = None  # edited | deleted | reordered | inserted | forged | malformed | workflow | truncated
    head: dict | None = None
    signers_checked: bool = True
    checkpoints_checked: int = 0
    ledger: str = ""
    requests: int = 0

    def describe(self) -> str:
        if self.ok:
            if self.head is None:
                return "correction ledger is empty"
            extra = "" if self.signers_checked else " (signers NOT matched to declared keys: no operators declared)"
            return (f"correction ledger intact: {self.entries_checked} entries, "
                    f"{self.signatures_checked} signatures, head seq {self.head['seq']} "
                    f"{self.head['hash'][:12]}{extra}")
        at = f" at seq {self.first_bad_seq}" if self.first_bad_seq is not None else ""
        pos = f" (entry {self.position})" if self.position is not None else ""
        return f"correction ledger verification FAILED{at}{pos}: {self.problem}"

    def to_dict(self) -> dict:
        return {"ok": self.ok, "ledger": self.ledger, "entries_checked": self.entries_checked,
                "signatures_checked": self.signatures_checked, "first_bad_seq": self.first_bad_seq,
                "position": self.position, "problem": self.problem,
                "tampering": self.kind_of_tampering, "head": self.head,
                "signers_checked": self.signers_checked,
                "checkpoints_checked": self.checkpoints_checked, "requests": self.requests}


def _field_problem(entry) -> str | None:
    for name, kind in FIELDS.items():
        if name in ("hash", "sig"):
            continue
        value = entry.get(name, _MISSING)
        if value is _MISSING:
            return f"field '{name}' is missing"
        if value.__class__ is not kind:
            return f"field '{name}' has the wrong type"
    return None


_MISSING = object()


class _SigPool:
    """Signature checks in worker processes, fed in chunks while the chain is walked."""

    def __init__(self, workers: int | None):
        n = workers if workers is not None else (os.cpu_count() or 1)
        self.pool = None
        if n > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            self.pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork"))
        self.futures: list = []
        self.results: list = []
        self.chunk: list = []
        self.done = 0

    def add(self, item) -> None:
        self.chunk.append(item)
        if len(self.chunk) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.chunk:
            return
        if self.pool is not None:
            self.futures.append(self.pool.submit(verify_batch, self.chunk))
        else:
            self.results.append(verify_batch(self.chunk))
        self.chunk = []

    def first_bad(self) -> int | None:
        """Index of the first bad signature, or None."""
        self._flush()
        try:
            results = self.results + [f.result() for f in self.futures]
        finally:
            if self.pool is not None:
                self.pool.shutdown()
        for k, bad in enumerate(results):
            if bad is not None:
                return k * CHUNK + bad
        return None


def verify(ledger: Ledger, registry: Registry | None, checkpoints: list[dict] | None = None,
           workers: int | None = None) -> Report:
    report = Report(ledger=getattr(ledger, "url", ""))
    texts = [s.text for s in ledger.texts()]
    have_ops = bool(registry and registry.operators)
    report.signers_checked = have_ops
    declared: dict[str, str | None] = {}       # key b64 -> operator name (None: unknown)

    def who(key: str) -> str | None:
        if key not in declared:
            try:
                raw = base64.b64decode(key, validate=True)
            except ValueError:
                declared[key] = None
            else:
                op = registry.who(raw, history=True) if registry else None
                declared[key] = op.name if op else None
        return declared[key]

    failure: tuple[int, int | None, str, str] | None = None   # (index, seq, problem, kind)
    sigs = _SigPool(workers if len(texts) >= PARALLEL_MIN else 1)
    n_sigs = 0
    states: dict[str, wf.RequestState] = {}
    prev = GENESIS
    expected = 1
    sha256 = hashlib.sha256
    for i, text in enumerate(texts):
        try:
            entry, h, sig, signed_text = split(text)
        except ValueError as exc:
            failure = (i, None, f"malformed entry: {exc} (seq {expected} expected here)", "malformed")
            break
        issue = _field_problem(entry)
        if issue:
            seq = entry.get("seq")
            failure = (i, seq if isinstance(seq, int) else None,
                       f"malformed entry: {issue} (seq {expected} expected here)", "malformed")
            break
        seq = entry["seq"]
        if sha256(signed_text.encode("utf-8")).hexdigest() != h:
            failure = (i, seq, "content does not match its hash: the entry was edited", "edited")
            break
        if seq != expected:
            failure = (i, seq) + _seq_problem(seq, expected, texts, i)
            break
        if entry["prev"] != prev:
            failure = (i, seq, (f"prev does not match the entry before it (seq {seq - 1}): that "
                                "entry was edited (its hash recomputed), or entries were deleted, "
                                "inserted or reordered") if seq > 1 else
                       "prev is not the genesis value: this is not the start of the ledger",
                       "edited")
            break
        sigs.add((entry["key"], sig, h))
        n_sigs += 1
        if have_ops:
            name = who(entry["key"])
            if name is None:
                failure = (i, seq, f"forged entry: signed by key {entry['key'][:16]}..., which is "
                                   "not declared for any operator in the rules file", "forged")
                break
            if name != entry["actor"]:
                failure = (i, seq, f"forged entry: claims actor {entry['actor']!r} but is signed "
                                   f"with the key of {name!r}", "forged")
                break
        entry["hash"] = h
        rid = entry["request"]
        try:
            st = states[rid] = wf.step(states.get(rid), entry)
        except Refused as exc:
            failure = (i, seq, f"workflow violation: {exc.message}", "workflow")
            break
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            failure = (i, seq, f"workflow violation: malformed body ({exc})", "workflow")
            break
        st.history.clear()                      # keep memory flat on huge ledgers
        if st.state in wf.FINAL:
            st.before = []
        prev = sha256(text.encode("utf-8")).hexdigest()
        report.head = {"seq": seq, "hash": h}
        expected += 1

    bad_sig = sigs.first_bad()
    report.signatures_checked = n_sigs if bad_sig is None else bad_sig
    if bad_sig is not None and (failure is None or bad_sig <= failure[0]):
        failure = (bad_sig, decode(texts[bad_sig])["seq"], "signature does not verify: the entry "
                   "was forged, or edited and its hash recomputed", "forged")
    if failure is not None:
        idx, seq, problem, kind = failure
        report.ok = False
        report.first_bad_seq, report.position, report.problem = seq, idx + 1, problem
        report.kind_of_tampering = kind
        report.entries_checked = idx
        report.head = None if idx == 0 else report.head
        return report
    report.entries_checked = len(texts)
    report.requests = len(states)
    for cp in checkpoints or []:
        report.checkpoints_checked += 1
        cseq, chash = cp.get("seq"), cp.get("hash")
        if not texts or cseq > len(texts):
            have = report.head["seq"] if report.head else 0
            report.ok = False
            report.first_bad_seq, report.position = have + 1, have + 1
            report.problem = (f"ledger ends at seq {have} but {cp.get('source') or 'a checkpoint'} "
                              f"records seq {cseq}: entries were cut off the end (ledger truncated)")
            report.kind_of_tampering = "truncated"
            return report
        got = decode(texts[cseq - 1])["hash"]
        if got != chash:
            report.ok = False
            report.first_bad_seq, report.position = cseq, cseq
            report.problem = (f"entry differs from {cp.get('source') or 'the checkpoint'} (hash "
                              f"{chash[:12]}, ledger has {got[:12]}): history up to this entry was "
                              "rewritten")
            report.kind_of_tampering = "edited"
            return report
    return report


def _seq_problem(found: int, expected: int, texts: list[str], i: int) -> tuple[str, str]:
    if found < expected:
        return (f"seq {found} where seq {expected} was expected: an entry was duplicated, "
                "inserted or moved (entries reordered)", "reordered")
    for later in texts[i + 1:]:
        try:
            if split(later)[0].get("seq") == expected:
                return (f"seq {found} where seq {expected} was expected; seq {expected} comes later "
                        "(entries reordered)", "reordered")
        except (ValueError, AttributeError, TypeError):
            continue
    gone = f"seq {expected}" if found == expected + 1 else f"seq {expected}..{found - 1}"
    return f"{gone} missing: seq {found} follows seq {expected - 1} (entries deleted)", "deleted"




# --- one request, before acting on it ------------------------------------------------

class LedgerTampered(IntegrityError):
    """A request's entries do not verify; approve/apply refuse to act on them (exit 1)."""


def verify_request(ledger: Ledger, registry: Registry, rid: str) -> list[dict]:
    """The entries of request ``rid`` (``CR-<seq>``), checked before anyone acts on them:
    from the request entry to the head, every stored row links to the one before it
    (hash, seq, prev), its unsigned ``request``/``kind`` columns say what its signed
    entry says, and every entry of ``rid`` is signed by the declared key of its actor
    and is a legal workflow step. LedgerTampered names the first entry that is not."""
    try:
        first = int(rid.split("-", 1)[1]) if rid.startswith("CR-") else 0
    except ValueError:
        first = 0
    if first < 1:
        raise Refused(f"no correction request {rid} in the ledger")
    rows = ledger.rows_from(first - 1)
    if not any(r[0] == first for r in rows):
        raise Refused(f"no correction request {rid} in the ledger")
    prev = GENESIS if first == 1 else None
    mine: list[dict] = []
    state = None
    for seq_col, req_col, kind_col, text in rows:
        bad = _row_problem(seq_col, req_col, kind_col, text, prev, first)
        if bad:
            raise LedgerTampered(f"{rid}: ledger entry seq {seq_col} {bad}; refusing to act on it "
                                 "(run 'opskit correct verify')")
        prev = text_hash(text)
        if seq_col < first:
            continue
        entry, h, sig, _signed = split(text)
        if entry["request"] != rid:
            continue
        problem = _signer_problem(registry, entry, h, sig)
        if problem is None:
            try:
                state = wf.step(state, dict(entry, hash=h))
            except Refused as exc:
                problem = f"breaks the workflow: {exc.message}"
        if problem:
            raise LedgerTampered(f"{rid}: ledger entry seq {seq_col} ({entry['kind']} by "
                                 f"{entry['actor']}) {problem}; refusing to act on it")
        mine.append(dict(entry, hash=h, sig=sig))
    return mine


def _row_problem(seq_col, req_col, kind_col, text, prev, first) -> str | None:
    """Why one stored row does not belong in the chain where it stands, or None."""
    try:
        entry, h, _sig, signed_text = split(text)
    except ValueError as exc:
        return f"is malformed ({exc})"
    issue = _field_problem(entry)
    if issue:
        return f"is malformed ({issue})"
    if hashlib.sha256(signed_text.encode("utf-8")).hexdigest() != h:
        return "does not match its hash: it was edited"
    if entry["seq"] != seq_col:
        return f"carries seq {entry['seq']} in its signed content: entries were moved"
    if prev is not None and entry["prev"] != prev:
        return ("does not link to the entry before it: entries were edited, deleted, inserted "
                "or reordered")
    if seq_col >= first and (entry["request"] != req_col or entry["kind"] != kind_col):
        return (f"is stored as {kind_col} of {req_col} but its signed content is {entry['kind']} "
                f"of {entry['request']}: relabelled through the unsigned columns")
    return None


def _signer_problem(registry: Registry, entry: dict, h: str, sig: str) -> str | None:
    if verify_batch([(entry["key"], sig, h)]) is not None:
        return "has a signature that does not verify: forged, or edited and its hash recomputed"
    try:
        raw = base64.b64decode(entry["key"], validate=True)
    except ValueError:
        return "has an unreadable key"
    op = registry.who(raw, history=True)
    if op is None:
        return "is signed by a key not declared for any operator: forged"
    if op.name != entry["actor"]:
        return f"claims actor {entry['actor']!r} but is signed with the key of {op.name!r}: forged"
    return None
