#!/usr/bin/env python3
"""Micro-benchmark of restore on a real disk (issue 23, item 2).

    python3 benchmarks/micro_restore.py [--work /var/tmp/opskit-micro] [--small 20000] [--big 4]

Backs up SMALL files of 1-8 KiB and BIG files of 64 MiB once, then restores
the snapshot --repeat times into DIR on the disk, reporting wall, user and
system time of each run (children's rusage) and the median. Not a test:
used to keep or drop each restore change; the machine must be quiet.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time


def make_data(root: str, small: int, big: int) -> None:
    rnd = random.Random(23)
    for i in range(small):
        d = os.path.join(root, "small", f"d{i // 200:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}"), "wb") as fh:
            fh.write(rnd.randbytes(rnd.randint(1024, 8192)))
    os.makedirs(os.path.join(root, "big"), exist_ok=True)
    for i in range(big):
        with open(os.path.join(root, "big", f"b{i}"), "wb") as fh:
            for _ in range(64):
                fh.write(rnd.randbytes(1 << 20))


def drop_cache(root: str) -> None:
    """Evict ``root``'s files from the page cache, as after a reboot."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def run(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(wall, user, sys) seconds of ``cmd`` and its children."""
    os.sync()
    time.sleep(1)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/var/tmp/opskit-micro")
    ap.add_argument("--small", type=int, default=20000)
    ap.add_argument("--big", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reuse", action="store_true",
                    help="delete each restore before the next into the same path (ext4 without "
                         "a journal then skips the just-freed inodes on every create)")
    ap.add_argument("--cold", action="store_true",
                    help="drop the repository's files from the page cache before each run "
                         "(posix_fadvise DONTNEED on each: no root, nobody else's cache)")
    ap.add_argument("--sync", action="store_true", help="include the final sync in each run")
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    data, repo, target = (os.path.join(work, n) for n in ("data", "repo", "restore"))
    env = dict(os.environ, OPSKIT_HOME=os.path.join(work, "home"), OPSKIT_PASSPHRASE="bench-micro-23")
    env.pop("OPSKIT_CONFIG", None)
    cmd = [sys.executable, "-m", "opskit", "backup"]
    if not os.path.isdir(repo):
        os.makedirs(work, exist_ok=True)
        make_data(data, args.small, args.big)
        subprocess.run(cmd + ["init", "--repo", repo], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(cmd + ["run", "--repo", repo, data], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    rows = []
    targets = []
    for rep in range(args.repeat):
        if args.reuse:
            shutil.rmtree(target, ignore_errors=True)
        targets.append(target if args.reuse else f"{target}-{rep}")
        restore = cmd + ["restore", "latest", "--repo", repo, "--target", targets[-1]]
        if args.sync:
            restore = ["sh", "-c", " ".join(f"'{a}'" for a in restore) + " && sync"]
        if args.cold:
            drop_cache(repo)
        rows.append(run(restore, env))
        print("  wall %6.2f  user %6.2f  sys %6.2f" % rows[-1], flush=True)
    for t in set(targets):
        shutil.rmtree(t, ignore_errors=True)
    wall, user, sys_ = (statistics.median(c) for c in zip(*rows))
    print(f"median wall {wall:.2f}  user {user:.2f}  sys {sys_:.2f}  "
          f"sys spread {min(r[2] for r in rows):.2f}-{max(r[2] for r in rows):.2f}  "
          f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
