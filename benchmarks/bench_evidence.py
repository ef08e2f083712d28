#!/usr/bin/env python3
"""opskit evidence: a pack over 400 days of history (issue #21). Target <= 10 s.

    python3 benchmarks/bench_evidence.py [--days 400] [--runs 3] [--no-write]

State: hourly stored policy runs (3 hosts x the 15 checks each, as 'policy check'
stores them), daily backup snapshots with a weekly full one, weekly permission
reports, monthly drills from an off-site site, an audit log of one entry an hour
and a 300-entry signed corrections ledger. The pack is built for --since <days>
(every run, report and snapshot of the window is read, indexed and judged),
sealed, signed and then verified. Writes the "## evidence" section of
benchmarks/RESULTS.md. Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from benchmarks.bench_backup import write_section  # noqa: E402
from opskit.core.audit import GENESIS, build_entry  # noqa: E402
from opskit.evidence.pack import build_pack  # noqa: E402
from opskit.evidence.verify_pack import verify  # noqa: E402
from opskit.policy.catalogue import catalogue  # noqa: E402
from tests.fixtures.evidence import state as st  # noqa: E402


def make_state(root: str, days: int):
    """The state directory, the stand-in sub-commands and the keys."""
    from pathlib import Path
    home = Path(root) / "state"
    results = [{"check": cid, "status": "pass", "rule": spec.rule, "findings": [],
                "evidence": [f"/proc/sys/... = 0 ({cid})"], "reason": "", "duration": 0.01}
               for cid, spec in catalogue().items()]
    for h in range(days * 24):
        st.policy_run(home, st.NOW - dt.timedelta(hours=h, minutes=45), results=results,
                      hosts=("db1", "app1", "kiosk1"))
    for w in range(days // 7 + 1):
        st.perms_report(home, st.ago(days=7 * w + 1))
    for m in range(days // 30 + 1):
        st.drill(home, st.ago(days=30 * m + 2))
    st.site_state(home)
    log = home / "audit" / "audit.log"
    prev, lines = GENESIS, []
    for i, h in enumerate(range(days * 24 + 48, 0, -1)):
        when = (st.NOW - dt.timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        _, line = build_entry(i + 1, prev, {"time": when, "operator": "root", "host": "h",
                                            "command": "policy check", "arguments": {},
                                            "result": "ok", "exit_code": 0, "summary": "",
                                            "details": None})
        prev = hashlib.sha256(line).hexdigest()
        lines.append(line + b"\n")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"".join(lines))
    from opskit.core.signing import generate
    signer, _ = generate(os.path.join(root, "op"))
    other, _ = generate(os.path.join(root, "bob"))
    texts = []
    for n in range(100):
        texts += st.ledger_texts(signer, other, when=st.ago(days=n))
    texts = relink(texts, signer, other)
    fake = st.FakeOpskit(snapshots=st.daily_snapshots(days=days), texts=texts)
    return home, fake, signer


def relink(texts, signer, other):
    """Chain the repeated request/approve/applied triples into one ledger."""
    import json
    from opskit.corrections import ledger
    out, prev = [], GENESIS
    for seq, text in enumerate(texts, 1):
        e = json.loads(text)["signed"]
        _, new = ledger.build_entry(seq=seq, prev=prev, kind=e["kind"],
                                    request=f"CR-{(seq + 2) // 3}", actor=e["actor"],
                                    body=e["body"], signer=other if e["actor"] == "bob"
                                    else signer, time=e["time"])
        out.append(new)
        prev = hashlib.sha256(new.encode()).hexdigest()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=400)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench-evidence-")
    try:
        t0 = time.monotonic()
        home, fake, signer = make_state(root, args.days)
        setup = time.monotonic() - t0
        times, verifies = [], []
        for n in range(args.runs):
            out = os.path.join(root, f"pack{n}")
            t0 = time.monotonic()
            result = build_pack(out, state_dir=str(home), audit_log=str(home / "audit" /
                                                                       "audit.log"),
                                since=st.NOW - dt.timedelta(days=args.days), now=st.NOW,
                                run=fake, signer=signer, repo=str(home / "repo"),
                                sites=[{"name": "dr", "url": "sftp://dr.example.org/x"}])
            times.append(time.monotonic() - t0)
            t0 = time.monotonic()
            problems, _ = verify(out)
            verifies.append(time.monotonic() - t0)
            assert not problems, problems
        runs = len(os.listdir(home / "policy" / "runs"))
        med = statistics.median(times)
        print(f"state built in {setup:.1f}s: {runs} policy runs; pack: "
              f"{', '.join(f'{t:.2f}' for t in times)} s; verify "
              f"{statistics.median(verifies):.2f} s; {result.summary}")
        if not args.no_write:
            now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            body = ("## evidence (benchmarks/bench_evidence.py)\n\n"
                    f"Run {now} on {os.cpu_count()} cores; --since {args.days} days: {runs} "
                    f"hourly policy runs (3 hosts x {len(catalogue())} checks), "
                    f"{args.days + 1} daily snapshots (weekly full), {args.days // 7 + 1} "
                    f"weekly permission reports, {args.days // 30 + 1} drills, "
                    f"{args.days * 24 + 48} audit entries, 300 ledger entries.\n\n"
                    "| measure | result | target | met |\n|---|---|---|---|\n"
                    f"| build, judge, seal and sign the pack, median of {args.runs} (s) | "
                    f"{med:.2f} ({', '.join(f'{t:.2f}' for t in times)}) | ≤ 10 | "
                    f"{'yes' if med <= 10 else 'NO'} |\n"
                    f"| verify it (hashes, signature, audit and ledger chains) (s) | "
                    f"{statistics.median(verifies):.2f} | (reference) | |\n")
            write_section(os.path.join(HERE, "RESULTS.md"), "evidence", body)
        return 0 if med <= 10 else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
