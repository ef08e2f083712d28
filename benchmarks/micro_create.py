#!/usr/bin/env python3
"""How a restore names the files it writes, on one file system (issue 23).

    python3 benchmarks/micro_create.py DIR {rename,tmpfile,direct} [--files N]

Two processes each create N files of 16 KiB in one new directory under DIR,
three ways: under a temporary name then renamed (opskit before 2026-12-04),
nameless with O_TMPFILE then linked in with linkat (opskit now), or created
under the final name (what a killed restore must not leave half-written).
Prints wall and the children's user/system time, twice (the second run right
after the first one's files were deleted: on a journal-less ext4 that crawls).
Not a test.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import time
from multiprocessing import Process

_linkat = ctypes.CDLL(None, use_errno=True).linkat
DATA = b"x" * 16000


def work(way: str, k: int, folder: bytes, count: int) -> None:
    for i in range(count):
        dest = os.path.join(folder, b"f%d_%d" % (k, i))
        if way == "rename":
            tmp = os.path.join(folder, b".t%d.%d" % (k, i))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        elif way == "tmpfile":
            fd = os.open(folder, os.O_WRONLY | os.O_TMPFILE, 0o644)
        else:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        os.write(fd, DATA)
        os.utime(fd, ns=(1, 1))
        if way == "tmpfile":
            assert _linkat(-100, b"/proc/self/fd/%d" % fd, -100, dest, 0x400) == 0
        os.close(fd)
        if way == "rename":
            os.rename(tmp, dest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("way", choices=["rename", "tmpfile", "direct"])
    ap.add_argument("--files", type=int, default=20000, help="files per process")
    args = ap.parse_args()
    folder = os.path.join(os.fsencode(args.dir), b"micro-create")
    for _ in range(2):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        os.sync()
        start, before = time.perf_counter(), os.times()
        procs = [Process(target=work, args=(args.way, k, folder, args.files)) for k in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        after = os.times()
        print(f"{args.way} {args.dir}: {time.perf_counter() - start:.2f} s wall, user "
              f"{after.children_user - before.children_user:.2f} s, system "
              f"{after.children_system - before.children_system:.2f} s")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
