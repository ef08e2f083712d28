#!/usr/bin/env python3
"""opskit backup replicate vs rclone copy, to the same S3 server, in one run (issue 5).

    python3 benchmarks/bench_replicate.py [--size-mb 1024] [--seed 1] [--work DIR]

Builds the shared deterministic dataset, backs it up into a local opskit
repository, starts a moto S3 server on loopback (``python -m moto.server``),
then copies the repository directory to two empty buckets: one with
``opskit backup replicate``, one with ``rclone copy`` (same files, same
server). Both tools are then re-run with nothing new. Writes the section
"replicate" of benchmarks/RESULTS.md. Not a test: timings depend on the
machine; ratios are what we track.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_backup import (DATASET, HERE, drop_dir, installed_like,  # noqa: E402
                                     median_and_runs, version, write_section)

ACCESS, SECRET, REGION = "AKIABENCH0000000001", "bench-secret-not-real", "us-east-1"
TARGETS = {"initial": 1.0, "rerun_s": 2.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(work: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env.update(AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION)
    # moto spools every object over 5 MiB to a temporary file: keep those in the
    # work directory (a tmpfs with --work /dev/shm/...) to time the tools, not the disk
    env["TMPDIR"] = work
    log = open(os.path.join(work, "moto.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            opener.open(url + "/moto-api/", timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto server did not start")


def make_bucket(url: str, name: str) -> None:
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS,
                      aws_secret_access_key=SECRET, region_name=REGION,
                      config=Config(s3={"addressing_style": "path"}, proxies={}))
    s3.create_bucket(Bucket=name)


def empty_bucket(url: str, name: str) -> None:
    """Delete what a round stored, so later rounds find the server as the first did."""
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS,
                      aws_secret_access_key=SECRET, region_name=REGION,
                      config=Config(s3={"addressing_style": "path"}, proxies={}))
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=name, Delete={"Objects": keys})


def timed(cmd: list[str], env: dict) -> float:
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    secs = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    print(f"  {os.path.basename(cmd[0]) if cmd[0] != sys.executable else 'opskit':7s} "
          f"{secs:7.2f} s  {proc.stdout.strip()[-120:]}", flush=True)
    return secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", default=os.path.join(HERE, "work-replicate"))
    ap.add_argument("--workers", type=int, default=4,
                    help="opskit upload threads (default 4: rclone's default --transfers)")
    ap.add_argument("--no-write", action="store_true", help="don't update RESULTS.md")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    args = ap.parse_args()
    if not shutil.which("rclone"):
        raise SystemExit("rclone is not installed (apt-get install rclone)")
    work = os.path.abspath(args.work)
    drop_dir(work)
    os.makedirs(work)
    data, repo = os.path.join(work, "data"), os.path.join(work, "repo")
    print(f"building {args.size_mb} MiB dataset (seed {args.seed}) ...", flush=True)
    subprocess.run([sys.executable, DATASET, data, "--size-mb", str(args.size_mb),
                    "--seed", str(args.seed)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(OPSKIT_HOME=os.path.join(work, "opskit-home"), OPSKIT_PASSPHRASE="bench")
    env.pop("OPSKIT_CONFIG", None)
    env = installed_like(env)
    opskit = [sys.executable, "-m", "opskit"]
    subprocess.run(opskit + ["backup", "init", "--repo", repo], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    print("backup ...", flush=True)
    subprocess.run(opskit + ["backup", "run", "--repo", repo, data], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    repo_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _s, fs in os.walk(repo)
                     for f in fs)
    objects = sum(len(fs) for _d, _s, fs in os.walk(repo))
    moto, url = start_moto(work)
    reps = max(1, args.repeat)
    runs: dict[str, list[float]] = {"ops": [], "rcl": [], "ops_again": [], "rcl_again": []}
    try:
        secret = os.path.join(work, "secret")
        with open(secret, "w") as fh:
            fh.write(SECRET + "\n")
        os.chmod(secret, 0o600)
        renv = dict(env, RCLONE_CONFIG=os.path.join(work, "rclone.conf"),
                    RCLONE_CONFIG_MOTO_TYPE="s3", RCLONE_CONFIG_MOTO_PROVIDER="Other",
                    RCLONE_CONFIG_MOTO_ENDPOINT=url, RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=ACCESS,
                    RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=SECRET,
                    RCLONE_CONFIG_MOTO_REGION=REGION, RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE="true")
        open(renv["RCLONE_CONFIG"], "w").close()
        for rep in range(reps):
            # every round copies into two new empty buckets; who goes first alternates
            make_bucket(url, f"opskit-bench-{rep}")
            make_bucket(url, f"rclone-bench-{rep}")
            config = os.path.join(work, f"opskit-{rep}.yaml")
            with open(config, "w") as fh:
                fh.write(f"backup:\n  repo: {repo}\nsites:\n  bench:\n"
                         f"    url: s3://opskit-bench-{rep}/repo\n"
                         f"    endpoint_url: {url}\n    region: {REGION}\n"
                         f"    access_key_id: {ACCESS}\n    secret_access_key_file: {secret}\n")
            ops_cmd = opskit + ["--config", config, "backup", "replicate", "--workers",
                                str(args.workers)]
            rclone_cmd = ["rclone", "copy", repo, f"moto:rclone-bench-{rep}/repo"]
            pairs = [("ops", ops_cmd, env), ("rcl", rclone_cmd, renv)]
            if rep % 2:
                pairs.reverse()
            print(f"round {rep + 1}: initial copy, then a re-run with nothing new", flush=True)
            for key, cmd, e in pairs:
                runs[key].append(timed(cmd, e))
            for key, cmd, e in pairs:
                runs[key + "_again"].append(timed(cmd, e))
            if rep < reps - 1:
                empty_bucket(url, f"opskit-bench-{rep}")
                empty_bucket(url, f"rclone-bench-{rep}")
        print("verify the copy (check-site, all packs re-hashed)", flush=True)
        c_ops = timed(opskit + ["--config", config, "backup", "check-site", "bench",
                                "--read-data"], env)
    finally:
        moto.terminate()
        moto.wait(10)
    t_ops, t_rcl = statistics.median(runs["ops"]), statistics.median(runs["rcl"])
    r_ops, r_rcl = statistics.median(runs["ops_again"]), statistics.median(runs["rcl_again"])

    ratio = t_ops / t_rcl
    lines = [
        "## replicate (benchmarks/bench_replicate.py)", "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores; "
        f"dataset `make_dataset.py --size-mb {args.size_mb} --seed {args.seed}`, backed up once: "
        f"repository of {objects} objects, {repo_bytes / 2**20:.0f} MiB. Both tools copy it to "
        "their own empty bucket on the same moto S3 server (loopback, path style), in one run.",
        f"opskit {version(opskit + ['--version'])} ({args.workers} upload threads, Content-MD5 sent, ETag "
        f"compared per object); {version(['rclone', 'version'])} (`rclone copy`, defaults: 4 transfers, "
        f"8 checkers). Median of {reps} rounds (runs in brackets), each into new empty buckets, "
        "the tools alternating who goes first.", "",
        "| measure | opskit | rclone | opskit/rclone | target | met |",
        "|---|---|---|---|---|---|",
        f"| initial copy (s) | {median_and_runs(runs['ops'])} | "
        f"{median_and_runs(runs['rcl'])} | {ratio:.2f} | ≤ 1.0 | "
        f"{'yes' if ratio <= TARGETS['initial'] else 'no'} |",
        f"| re-run, nothing new (s) | {median_and_runs(runs['ops_again'])} | "
        f"{median_and_runs(runs['rcl_again'])} | "
        f"{r_ops / r_rcl:.2f} | "
        f"≤ 2 s | {'yes' if r_ops <= TARGETS['rerun_s'] else 'no'} |",
        f"| check-site --read-data, every object re-hashed (s) | {c_ops:.2f} | | | | |",
        "",
        "The moto server (one Python process) is the bottleneck for both tools on 2 cores; "
        "wall times include Python start-up (~0.3 s for opskit).",
    ]
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if not args.no_write:
        write_section(os.path.join(HERE, "RESULTS.md"), "replicate", table)
    drop_dir(work)


if __name__ == "__main__":
    main()
