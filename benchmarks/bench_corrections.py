#!/usr/bin/env python3
"""opskit correct: ledger verification and per-correction cost (issue 10).

    python3 benchmarks/bench_corrections.py [--entries 100000] [--corrections 50] [--work DIR]

1. Builds a SQLite ledger of ``--entries`` real entries (requests with a
   before-image, approvals, claims and after-images; signed by 7 keys; every
   entry a legal workflow step), then times ``verify`` (chain + every
   signature + declared signers + workflow replay). Target: 100 000 entries
   in <= 5 s.
2. Times request + approve + apply of ``--corrections`` corrections on a
   SQLite target through the domain API (what the CLI calls, without the
   ~0.3 s interpreter start of each command). Target: <= 200 ms each.
3. For reference, one correction through the real CLI (three processes).

Writes the "corrections" section of benchmarks/RESULTS.md (other sections
untouched). Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.bench_backup import write_section  # noqa: E402
from opskit.corrections.ledger import GENESIS, SqliteLedger, build_entry, text_hash  # noqa: E402
from opskit.corrections.rulesfile import load_registry  # noqa: E402
from opskit.corrections.verify import verify  # noqa: E402
from tests.harness.corrections import (approve_fully, make_sqlite_target,  # noqa: E402
                                             make_world)


def build_ledger(world, path: str, n: int) -> float:
    """n entries, 4 per correction: request, approve, apply-started, applied."""
    signers = {name: world.signer(name) for name in ("alice", "bob", "mike")}
    start = time.perf_counter()
    rows = []
    prev = GENESIS
    seq = 0
    t0 = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
    while seq < n:
        rid = None
        for kind, actor, in (("request", "alice"), ("approve", "bob"), ("apply-started", "mike"),
                             ("applied", "mike")):
            if seq >= n:
                break
            seq += 1
            rid = rid or f"CR-{seq}"
            if kind == "request":
                body = {"target": "his", "table": "claims", "operation": "UPDATE",
                        "sql": "UPDATE claims SET amount = :a WHERE id = :id",
                        "params": {"a": "120.50", "id": str(seq)}, "reason": "amount keyed in wrong",
                        "ticket": f"INC-{seq}", "row_count": 1, "columns": ["id", "insured_id", "amount", "status"],
                        "before": [{"id": seq, "insured_id": f"P-{seq}", "amount": "1205.00", "status": "settled"}],
                        "before_sha256": "0" * 64, "requirement": {"approvals": 1, "levels": [], "auditor": False,
                                                                  "rules": [], "executor_may_approve": False},
                        "rule_ids": ["R-DAT-1", "R-DAT-2"], "os_user": "alice", "host": "ops1"}
            elif kind == "approve":
                body = {"level": "clerk", "comment": "checked against the invoice", "os_user": "bob", "host": "ops1"}
            elif kind == "apply-started":
                body = {"os_user": "mike", "host": "ops1"}
            else:
                body = {"row_count": 1, "after": [{"id": seq, "insured_id": f"P-{seq}", "amount": "120.50",
                                                   "status": "settled"}], "after_sha256": "0" * 64,
                        "claim_seq": seq - 1, "os_user": "mike", "host": "ops1"}
            when = (t0 + _dt.timedelta(seconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            entry, text = build_entry(seq=seq, prev=prev, kind=kind, request=rid, actor=actor, body=body,
                                      signer=signers[actor], time=when)
            rows.append((seq, rid, kind, text))
            prev = text_hash(text)
    ledger = SqliteLedger(path)
    ledger.insert_raw(rows)
    ledger.close()
    return time.perf_counter() - start


def _cpu() -> float:
    import resource
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _load() -> str:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def bench_verify(world, path: str, runs: int) -> tuple[list[float], list[float], object]:
    """Wall seconds and CPU seconds (this process + the signature workers) per run."""
    registry = load_registry(str(world.rules))
    times, cpus, report = [], [], None
    for _ in range(runs):
        ledger = SqliteLedger(path, create=False)
        start, c0 = time.perf_counter(), _cpu()
        report = verify(ledger, registry)
        times.append(time.perf_counter() - start)
        cpus.append(_cpu() - c0)
        ledger.close()
        assert report.ok, report.describe()
    return times, cpus, report


def bench_workflow(world, count: int) -> list[float]:
    svc = world.svc()
    per = []
    for i in range(count):
        start = time.perf_counter()
        _e, st = svc.request("his", "UPDATE claims SET amount = :a WHERE id = :id",
                             {"a": f"{100 + i}.50", "id": "42"}, "amount keyed in wrong", f"INC-{i}",
                             world.signer("alice"))
        approve_fully(world, svc, st.id)
        _e, st = svc.apply(st.id, world.signer("mike"))
        per.append(time.perf_counter() - start)
        assert st.state == "applied"
    svc.ledger.close()
    return per


def bench_cli(world) -> float:
    def run(who, *args):
        env = dict(os.environ, **world.env(who))
        out = subprocess.run([sys.executable, "-m", "opskit", "correct", *args], env=env,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout
    start = time.perf_counter()
    import json
    rid = json.loads(run("alice", "request", "--target", "his", "--table", "claims", "--where", "id = :id",
                         "--param", "id=41", "--set", "amount=77.00", "--reason", "bench", "--json"))["request"]
    run("bob", "approve", rid, "--comment", "ok")
    run("mike", "apply", rid)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--corrections", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3, help="verify runs (median reported)")
    ap.add_argument("--work", help="work directory (default: a temporary one, removed after)")
    ap.add_argument("--no-write", action="store_true", help="don't update RESULTS.md")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="opskit-bench-corr-")
    os.makedirs(work, exist_ok=True)
    os.environ["OPSKIT_HOME"] = os.path.join(work, "home")
    try:
        world = make_world(_fresh(work, "w"), make_sqlite_target(os.path.join(work, "his.sqlite")))
        ledger_path = os.path.join(work, "big-ledger.sqlite")
        build = build_ledger(world, ledger_path, args.entries)
        size_mib = os.path.getsize(ledger_path) / 2**20
        load_before = _load()
        vt, vc, report = bench_verify(world, ledger_path, args.runs)
        per = bench_workflow(world, args.corrections)
        cli = bench_cli(world)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    v_med = statistics.median(vt)
    p_mean, p_p95 = statistics.mean(per) * 1000, sorted(per)[int(0.95 * (len(per) - 1))] * 1000
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = (
        "## corrections (benchmarks/bench_corrections.py)\n\n"
        f"Run {now} on {os.cpu_count()} cores; Python {sys.version.split()[0]}; SQLite "
        f"{__import__('sqlite3').sqlite_version}; load average {load_before} when verify started "
        "(the machine is shared: wall times under load are pessimistic, CPU seconds are not).\n\n"
        "| measure | result | target | met |\n|---|---|---|---|\n"
        f"| verify {args.entries:,} entries (chain + {report.signatures_checked:,} Ed25519 signatures + "
        f"signers + workflow replay), median of {len(vt)} (s) | {v_med:.2f} (runs: "
        f"{', '.join(f'{t:.2f}' for t in vt)}) | ≤ 5 | {'yes' if v_med <= 5 else 'no'} |\n"
        f"| same, CPU seconds (main process + signature workers), median | {statistics.median(vc):.2f} | "
        f"≤ {5 * (os.cpu_count() or 1)} ({os.cpu_count()} idle cores) | |\n"
        f"| request + approve + apply on SQLite, mean of {len(per)} (ms per correction) | {p_mean:.1f} "
        f"(p95 {p_p95:.1f}) | ≤ 200 | {'yes' if p_mean <= 200 else 'no'} |\n"
        f"| same correction through the CLI, 3 processes incl. interpreter start (ms) | {cli * 1000:.0f} | "
        "(reference) | |\n"
        f"| building and signing the {args.entries:,}-entry ledger (s) | {build:.2f} | (reference) | |\n"
        f"| ledger size (MiB) | {size_mib:.1f} | | |\n")
    print(body)
    if not args.no_write:
        write_section(os.path.join(HERE, "RESULTS.md"), "corrections", body)


def _fresh(work: str, name: str):
    from pathlib import Path
    path = Path(work) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
