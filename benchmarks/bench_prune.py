#!/usr/bin/env python3
"""opskit backup forget+prune vs restic forget --prune, side by side in one run.

    python3 benchmarks/bench_prune.py [--size-mb 1024] [--seed 1] [--work DIR] [--snapshots 4]

Builds the shared dataset, makes the same history in both repositories (an
initial backup, then one backup after each of N-1 days of --mutate), then
forgets the older half of the snapshots and prunes. Reports wall time and
peak memory (PSS of the process tree) of the forget+prune step, and the
repository sizes before and after. Writes the "prune" section of
benchmarks/RESULTS.md. Not a test.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_backup import DATASET, HERE, Opskit, Restic, drop_dir, du_bytes, version, write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--snapshots", type=int, default=4)
    ap.add_argument("--work", default=os.path.join(HERE, "work-prune"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    data = os.path.join(work, "data")
    drop_dir(work)
    os.makedirs(work)
    subprocess.run([sys.executable, DATASET, data, "--size-mb", str(args.size_mb),
                    "--seed", str(args.seed)], check=True)
    ops, res = Opskit(work), Restic(work)
    # the retention floor would (rightly) keep these same-day snapshots: lower it here
    cfg = os.path.join(work, "opskit.yaml")
    with open(cfg, "w") as fh:
        fh.write("backup:\n  retention:\n    floor_days: 0\n")
    ops.cmd = ops.cmd + ["--config", cfg]
    for t in (ops, res):
        t.init()
    for day in range(args.snapshots):
        if day:
            subprocess.run([sys.executable, DATASET, data, "--mutate", "--seed",
                            str(args.seed + day)], check=True)
        for t in (ops, res):
            t.backup(f"day{day}", data)
    keep = str(args.snapshots // 2)
    sizes_before = {t.name: du_bytes(t.repo) for t in (ops, res)}
    print("forget older half + prune", flush=True)
    ops.peak = res.peak = 0
    # one run each (forget + prune is not repeatable), sampled for peak PSS like
    # before: the sampling costs both tools some CPU
    ops.run("prune", ops.cmd + ["backup", "forget", "--repo", ops.repo, "--keep-last", keep,
                                "--prune"], sample=True)
    res.run("prune", ["restic", "-r", res.repo, "forget", "-q", "--keep-last", keep, "--prune"],
            sample=True)
    sizes_after = {t.name: du_bytes(t.repo) for t in (ops, res)}
    check = subprocess.run(ops.cmd + ["backup", "check", "--read-data", "--repo", ops.repo],
                           env=ops.env, capture_output=True, text=True)
    t_ops, t_res = ops.results["prune"][-1], res.results["prune"][-1]
    ratio = t_ops / t_res
    lines = [
        "## prune (benchmarks/bench_prune.py)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores; "
        f"dataset `--size-mb {args.size_mb} --seed {args.seed}`, {args.snapshots} snapshots "
        f"(a --mutate day between each), then forget all but the newest {keep} and prune.",
        f"opskit {version([sys.executable, '-m', 'opskit', '--version'])}; "
        f"{version(['restic', 'version'])}. opskit check --read-data afterwards: "
        f"{'passed' if check.returncode == 0 else 'FAILED'}.", "",
        "| measure | opskit | restic | opskit/restic | target | met |",
        "|---|---|---|---|---|---|",
        f"| forget + prune (s) | {t_ops:.2f} | {t_res:.2f} | "
        f"{ratio:.2f} | ≤ 1.0 | {'yes' if ratio <= 1.0 else 'no'} |",
        f"| peak memory, PSS (MiB) | {ops.peak / 1024:.0f} | {res.peak / 1024:.0f} | | reported | |",
        f"| repository before (MiB) | {sizes_before['opskit'] / 2**20:.0f} | "
        f"{sizes_before['restic'] / 2**20:.0f} | | | |",
        f"| repository after (MiB) | {sizes_after['opskit'] / 2**20:.0f} | "
        f"{sizes_after['restic'] / 2**20:.0f} | | | |",
    ]
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if not args.no_write:
        write_section(os.path.join(HERE, "RESULTS.md"), "prune", table)
    drop_dir(work)


if __name__ == "__main__":
    main()
