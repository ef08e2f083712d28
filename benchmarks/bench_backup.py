#!/usr/bin/env python3
"""opskit backup vs restic, side by side in one run (issue: backup engine).

    python3 benchmarks/bench_backup.py [--size-mb 1024] [--seed 1] [--work DIR]

Builds the shared deterministic dataset, then for each tool: initial backup,
unchanged re-run, backup after one day of change (--mutate), restore of the
latest snapshot, repository size, bytes the mutated run added, and peak PSS
of the whole process tree (sampled from /proc, so forked workers count, in
runs of their own: sampling costs CPU the timed runs should not lose).
Writes a Markdown table to benchmarks/RESULTS.md (section "backup").
Not a test: timings depend on the machine; ratios are what we track.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATASET = os.path.join(os.path.dirname(ROOT), "shared", "bench", "make_dataset.py")
TARGETS = {"initial": 0.3, "unchanged": 0.3, "mutated": 0.5, "restore": 0.5, "repo_size": 1.0}


def tree_rss_kib(pid: int) -> int:
    """Proportional resident memory (PSS) of ``pid`` and all its descendants, in
    KiB: pages shared after a fork count once in total, not once per process."""
    total = 0
    pids = [pid]
    seen = set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
            with open(f"/proc/{p}/task/{p}/children") as fh:
                pids.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def timed(cmd: list[str], env: dict, *, capture: bool = False,
          sample: bool = True) -> tuple[float, int, str]:
    """Run ``cmd``; return (seconds, peak tree PSS KiB or 0 unsampled, stdout).

    Sampling reads /proc/PID/smaps_rollup of every process of the tree 20 times
    a second: ~8 ms of kernel time per sample for opskit's three processes,
    enough to slow a 2-core run by several percent. Timed runs are therefore
    unsampled (``sample=False``) and memory has runs of its own."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample_loop():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kib(proc.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample_loop, daemon=True)
    if sample:
        sampler.start()
    out, err = proc.communicate()
    elapsed = time.monotonic() - start
    stop.set()
    if sample:
        sampler.join()
    if proc.returncode not in (0,):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return elapsed, peak, out or ""


def median_and_runs(runs: list[float]) -> str:
    """"2.05 (2.05, 2.03, 2.07)": the median, then every run."""
    med = f"{statistics.median(runs):.2f}"
    return med if len(runs) == 1 else f"{med} ({', '.join(f'{r:.2f}' for r in runs)})"


def settle(seconds: float = 1.0) -> None:
    """Let the kernel finish what the previous step left it (writeback, freeing a
    deleted 1 GiB tree's pages and inodes) before the next timed run starts."""
    os.sync()
    time.sleep(seconds)


def du_bytes(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def drop_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def installed_like(env: dict) -> dict:
    """``env`` for running opskit from this checkout the way a pip-installed copy
    runs: with compiled bytecode. pip compiles .pyc files at install time; a
    checkout run under PYTHONDONTWRITEBYTECODE recompiles every module on every
    invocation (~40 ms, most of an unchanged re-run's margin)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "opskit")],
                   check=True, env={k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"})
    return {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}


class Tool:
    def __init__(self, name: str, work: str):
        self.name = name
        self.repo = os.path.join(work, f"repo-{name}")
        self.env = dict(os.environ)
        self.results: dict[str, list[float]] = {}
        self.peak = 0

    def run(self, key: str, cmd: list[str], *, sample: bool | None = None) -> str:
        """Run and record the time under ``key``; sampled runs (by default the
        "memory-..." keys) also record the peak PSS."""
        sample = key.startswith("memory") if sample is None else sample
        settle()
        secs, peak, out = timed(cmd, self.env, capture=True, sample=sample)
        self.results.setdefault(key, []).append(secs)
        self.peak = max(self.peak, peak)
        memory = f"  peak PSS {peak / 1024:6.0f} MiB" if sample else ""
        print(f"  {self.name:7s} {key:16s} {secs:7.2f} s{memory}", flush=True)
        return out


class Opskit(Tool):
    def __init__(self, work: str):
        super().__init__("opskit", work)
        self.env.update(OPSKIT_HOME=os.path.join(work, "opskit-home"), OPSKIT_PASSPHRASE="bench")
        self.env.pop("OPSKIT_CONFIG", None)
        self.env = installed_like(self.env)
        self.cmd = [sys.executable, "-m", "opskit"]

    def init(self):
        subprocess.run(self.cmd + ["backup", "init", "--repo", self.repo], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def backup(self, key, data):
        self.run(key, self.cmd + ["backup", "run", "--repo", self.repo, data])

    def restore(self, target, key="restore"):
        self.run(key, self.cmd + ["backup", "restore", "latest", "--repo", self.repo,
                                  "--target", target])


class Restic(Tool):
    def __init__(self, work: str):
        super().__init__("restic", work)
        self.env.update(RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=self.repo,
                        RESTIC_CACHE_DIR=os.path.join(work, "restic-cache"))

    def init(self):
        subprocess.run(["restic", "-r", self.repo, "init", "-q"], env=self.env, check=True)

    def backup(self, key, data):
        self.run(key, ["restic", "-r", self.repo, "backup", "-q", data])

    def restore(self, target, key="restore"):
        self.run(key, ["restic", "-r", self.repo, "restore", "-q", "latest", "--target", target])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=os.path.join(HERE, "work"),
                    help="scratch directory (dataset, both repositories, restores); on a "
                         "tmpfs such as /dev/shm it measures the tools, not the disk")
    ap.add_argument("--no-write", action="store_true", help="don't update RESULTS.md")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the initial, unchanged and restore measures per tool, "
                         "alternating which tool goes first; the median is reported "
                         "(this shared VM varies by +-20%% from run to run)")
    args = ap.parse_args()
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed (apt-get install restic)")
    work = os.path.abspath(args.work)
    data = os.path.join(work, "data")
    drop_dir(work)
    os.makedirs(work)
    print(f"building {args.size_mb} MiB dataset (seed {args.seed}) ...", flush=True)
    subprocess.run([sys.executable, DATASET, data, "--size-mb", str(args.size_mb),
                    "--seed", str(args.seed)], check=True)
    tools = [Opskit(work), Restic(work)]
    reps = max(1, args.repeat)

    def turns(rep: int) -> list:
        return tools if rep % 2 == 0 else tools[::-1]

    print("initial backup", flush=True)
    for rep in range(reps):
        for t in turns(rep):
            drop_dir(t.repo)
            t.init()
            t.backup("initial", data)
    print("unchanged re-run", flush=True)
    for rep in range(reps):
        for t in turns(rep):
            t.backup("unchanged", data)
    subprocess.run([sys.executable, DATASET, data, "--mutate", "--seed", str(args.seed)], check=True)
    print("after --mutate", flush=True)
    added = {}
    for t in tools:
        before = du_bytes(t.repo)
        t.backup("mutated", data)
        added[t.name] = du_bytes(t.repo) - before
    print("restore latest", flush=True)
    for rep in range(reps):
        for t in turns(rep):
            target = os.path.join(work, f"restore-{t.name}")
            t.restore(target)
            drop_dir(target)
    sizes = {t.name: du_bytes(t.repo) for t in tools}
    print("peak memory (separate, sampled runs: a first backup into a new repository, "
          "and a restore)", flush=True)
    for t in tools:
        t.repo, kept = t.repo + "-memory", t.repo
        t.init()
        t.backup("memory-backup", data)
        target = os.path.join(work, f"restore-{t.name}")
        t.restore(target, key="memory-restore")
        drop_dir(target)
        drop_dir(t.repo)
        t.repo = kept
    ops, res = tools
    rows = []
    for key in ("initial", "unchanged", "mutated", "restore"):
        ratio = statistics.median(ops.results[key]) / statistics.median(res.results[key])
        rows.append((f"{key} (s)", median_and_runs(ops.results[key]),
                     median_and_runs(res.results[key]), ratio, TARGETS[key]))
    rows.append(("repository size (MiB)", f"{sizes['opskit'] / 2**20:.0f}",
                 f"{sizes['restic'] / 2**20:.0f}", sizes["opskit"] / sizes["restic"],
                 TARGETS["repo_size"]))
    rows.append(("added by mutated run (MiB)", f"{added['opskit'] / 2**20:.1f}",
                 f"{added['restic'] / 2**20:.1f}", added["opskit"] / max(added["restic"], 1), 1.0))
    rows.append(("peak memory, process tree PSS, sampled runs (MiB)", f"{ops.peak / 1024:.0f}", f"{res.peak / 1024:.0f}",
                 None, None))
    lines = [
        "## backup (benchmarks/bench_backup.py)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores; "
        f"dataset `make_dataset.py --size-mb {args.size_mb} --seed {args.seed}` then `--mutate`.",
        f"opskit {version([sys.executable, '-m', 'opskit', '--version'])}; "
        f"{version(['restic', 'version'])}. Initial, unchanged and restore: median of {reps} "
        "runs per tool (runs in brackets), tools alternating who goes first; mutated: one run.",
        "",
        "| measure | opskit | restic | opskit/restic | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, o, r, ratio, target in rows:
        if ratio is None:
            met = "≤ 300 MiB: " + ("yes" if ops.peak / 1024 <= 300 else "no")
            lines.append(f"| {name} | {o} | {r} | | | {met} |")
        else:
            met = "yes" if ratio <= target else "no"
            lines.append(f"| {name} | {o} | {r} | {ratio:.2f} | ≤ {target} | {met} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if not args.no_write:
        write_section(os.path.join(HERE, "RESULTS.md"), "backup", table)
    drop_dir(work)


def write_section(path: str, name: str, body: str) -> None:
    """Replace (or append) the '## name' section of RESULTS.md."""
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    marker = f"## {name} "
    start = text.find(marker)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + body + ("\n" + text[end + 1:] if end != -1 else "")
    with open(path, "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
