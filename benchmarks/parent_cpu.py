#!/usr/bin/env python3
"""CPU time of the backup's main (parent) process per GiB backed up (issue 23).

    parent_cpu.py DATA [--work DIR] [--workers 2] [--repeat 3] [--incremental]

The parent walks, batches, indexes and assembles trees while the forked
workers read, chunk, hash, compress and encrypt. On many cores the workers
scale and the parent does not: it caps throughput at 1 / (parent CPU-s per
GiB). This runs the engine in-process (no interpreter start, no scrypt) into
a fresh repository under ``--work`` per run, and reports for each run:

- parent CPU-s/GiB: ``getrusage(RUSAGE_SELF)`` across ``Archiver.run``
  (the main thread plus the queue feeder threads, all of them parent work);
- child CPU-s/GiB: ``getrusage(RUSAGE_CHILDREN)`` across the same call (the
  workers are joined, so reaped, before it returns);
- wall seconds, and the cap 1 / parent-s-per-GiB the parent sets.

The minimum over ``--repeat`` runs is the figure to compare (the machine is
shared; noise only ever adds time). ``--incremental`` also times an
unchanged re-run into the same repository.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time

from opskit.backup.archiver import Archiver
from opskit.backup.backends import open_backend
from opskit.backup.repository import Repository

GIB = 1 << 30


def tree_bytes(path: str) -> int:
    """Bytes of regular files under ``path`` (what the backup reads)."""
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            total += st.st_size
    return total


def cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def one_run(repo: Repository, data: str, workers: int, parent: dict | None) -> tuple[dict, dict]:
    """Back up ``data`` once; (figures, snapshot)."""
    self0, kids0, wall0 = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), time.monotonic()
    _sid, snap = Archiver(repo, workers=workers).run([data], parent=parent)
    wall = time.monotonic() - wall0
    return {"parent": cpu(resource.RUSAGE_SELF) - self0,
            "children": cpu(resource.RUSAGE_CHILDREN) - kids0, "wall": wall}, snap


def profiled(repo: Repository, data: str, workers: int, top: int) -> None:
    """One run under cProfile, the parent only (a forked worker stops the
    profiler it inherits), then its ``top`` functions by own time."""
    import cProfile
    import pstats
    from opskit.backup import workers as workers_mod
    prof = cProfile.Profile()
    real_init = workers_mod._Worker.__init__

    def init(self, *a, **kw):
        sys.setprofile(None)
        real_init(self, *a, **kw)
    workers_mod._Worker.__init__ = init
    try:
        prof.runcall(Archiver(repo, workers=workers).run, [data])
    finally:
        workers_mod._Worker.__init__ = real_init
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


def fresh_repo(work: str) -> Repository:
    path = os.path.join(work, "repo")
    shutil.rmtree(path, ignore_errors=True)
    # a cheap KDF: key derivation is not what this measures
    return Repository.init(open_backend(path), b"parent-cpu", kdf_n=1 << 10)


def show(label: str, fig: dict, gib: float) -> str:
    per = fig["parent"] / gib
    cap = f"{1 / per:6.2f} GiB/s" if per else "     n/a"
    return (f"{label:12s} parent {per:6.3f} CPU-s/GiB  children {fig['children'] / gib:6.2f} "
            f"CPU-s/GiB  wall {fig['wall']:6.2f} s  parent cap {cap}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--work", default="/dev/shm/opskit-parent-cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--incremental", action="store_true",
                    help="also time an unchanged re-run after each initial run")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile the parent's first initial run; print its top N functions")
    args = ap.parse_args()
    data = os.path.abspath(args.data)
    os.makedirs(args.work, exist_ok=True)
    gib = tree_bytes(data) / GIB
    print(f"data {data}: {gib:.3f} GiB, {args.workers} workers, {args.repeat} runs", flush=True)
    best: dict[str, dict] = {}
    for i in range(args.repeat):
        repo = fresh_repo(args.work)
        if args.profile and i == 0:
            profiled(repo, data, args.workers, args.profile)
            repo = fresh_repo(args.work)
        fig, snap = one_run(repo, data, args.workers, None)
        print(show(f"initial {i + 1}", fig, gib), flush=True)
        runs = [("initial", fig)]
        if args.incremental:
            fig2, _ = one_run(Repository.open(repo.backend, b"parent-cpu"), data, args.workers,
                              snap)
            print(show(f"unchanged {i + 1}", fig2, gib), flush=True)
            runs.append(("unchanged", fig2))
        for kind, f in runs:
            old = best.get(kind)
            best[kind] = ({k: min(f[k], old[k]) for k in f} if old else f)
    shutil.rmtree(os.path.join(args.work, "repo"), ignore_errors=True)
    print("min of runs:")
    for kind, fig in best.items():
        print(show(kind, fig, gib))
    sys.stdout.flush()
    os._exit(0)     # no teardown of the process's objects: nothing to measure there


if __name__ == "__main__":
    main()
