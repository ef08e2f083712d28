#!/usr/bin/env python3
"""opskit policy check: one host locally, 50 hosts over SSH, and Lynis (issue 9).

    python3 benchmarks/bench_policy.py [--hosts 50] [--runs 5] [--no-lynis] [--no-write]
                                       [--profile mlps3]

1. a full check (every check of the shipped policy) of this machine:
   in-process (``check_host``) and as a user runs it (``opskit policy check``,
   Python start-up included). Target <= 1 s.
2. ``opskit policy check`` over N real sshd servers on loopback ports (all
   started here, killed at the end), one summary table. Target <= 20 s for 50.
3. when ``lynis`` is installed: ``lynis audit system --quick --tests-from-group
   "usb storage firewalls networking malware"`` (its USB, firewall, network
   and malware tests), one host.
With ``--profile mlps3`` the MLPS level-3 host baseline runs instead (issue
26), beside Lynis' full ``lynis audit system``; section "## policy-mlps3".
Writes the "## policy" section of benchmarks/RESULTS.md (other sections are
left alone). Not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
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

LYNIS_GROUPS = "usb storage firewalls networking malware"


def timed(argv, env=None, timeout=600):
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    return time.monotonic() - t0, proc


def profile_args(profile: str | None) -> list[str]:
    return ["--profile", profile] if profile else []


def bench_local(runs: int, home: str, profile: str | None = None) -> dict:
    from opskit.hosts import LocalHost
    from opskit.policy.policyfile import load_policy, shipped_dir
    from opskit.policy.fleet import check_host
    policy = load_policy(explicit=shipped_dir(), profile=profile)
    times, report = [], None
    for _ in range(runs):
        t0 = time.monotonic()
        report = check_host(LocalHost(), policy)
        times.append(time.monotonic() - t0)
    env = dict(os.environ, OPSKIT_HOME=home)
    env.pop("OPSKIT_CONFIG", None)
    cli = []
    for _ in range(runs):
        elapsed, proc = timed([sys.executable, "-m", "opskit", "policy", "check", "--json",
                               "--policy", shipped_dir(), *profile_args(profile)], env)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"opskit policy check failed ({proc.returncode}): {proc.stderr}")
        cli.append(elapsed)
    return {"inproc": statistics.median(times), "cli": statistics.median(cli),
            "checks": len(report.results),
            "statuses": {s: sum(r.status == s for r in report.results)
                         for s in ("pass", "fail", "n/a", "error", "manual")}}


def bench_fleet(n: int, runs: int, work: str, profile: str | None = None) -> dict:
    from tests.harness.sshd import SSHDFactory, write_fleet_inventory
    factory = SSHDFactory(os.path.join(work, "sshd"))
    t0 = time.monotonic()
    try:
        servers = factory(n)
        started = time.monotonic() - t0
        known, _inventory = write_fleet_inventory(servers, work)
        config = os.path.join(work, "opskit.yaml")
        with open(config, "w") as fh:
            fh.write(f"inventory: inventory.yaml\nssh:\n  known_hosts: {known}\n")
        from opskit.policy.policyfile import shipped_dir
        env = dict(os.environ, OPSKIT_HOME=os.path.join(work, "home"))
        times, data = [], None
        for _ in range(runs):
            elapsed, proc = timed([sys.executable, "-m", "opskit", "--config", config, "policy",
                                   "check", "--json", "--policy", shipped_dir(),
                                   *profile_args(profile)], env)
            data = json.loads(proc.stdout)
            times.append(elapsed)
        return {"hosts": n, "sshd_start": started, "median": statistics.median(times),
                "max": max(times), "rows": len(data["hosts"]),
                "unreachable": data["counts"]["unreachable"], "exit_code": data["exit_code"]}
    finally:
        factory.stop_all()


def bench_lynis(runs: int, full: bool = False) -> dict | None:
    """Lynis on this host: its USB/firewall/network/malware groups, or with
    ``full`` the whole ``audit system``."""
    lynis = shutil.which("lynis")
    if not lynis:
        return None
    version = subprocess.run([lynis, "--version"], capture_output=True, text=True).stdout.strip()
    groups = [] if full else ["--tests-from-group", LYNIS_GROUPS]
    times = []
    for _ in range(runs):
        elapsed, proc = timed([lynis, "audit", "system", "--quick", "--no-colors", *groups])
        times.append(elapsed)
    return {"version": version, "median": statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-lynis", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="don't update RESULTS.md")
    ap.add_argument("--profile", help="a policy profile (mlps3) instead of the baseline")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="opskit-bench-policy-")
    try:
        local = bench_local(args.runs, os.path.join(work, "home-local"), args.profile)
        print("local:", local, flush=True)
        fleet = bench_fleet(args.hosts, max(1, args.runs // 2), work, args.profile)
        print("fleet:", fleet, flush=True)
        lynis = None if args.no_lynis else bench_lynis(1, full=bool(args.profile))
        print("lynis:", lynis, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.profile:
        write_profile_section(args, local, fleet, lynis)
        return
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    met = lambda v, t: "yes" if v <= t else "no"   # noqa: E731
    rows = [
        "| measure | opskit | Lynis | target | met |", "|---|---|---|---|---|",
        f"| full check, this host, in-process (s) | {local['inproc']:.3f} | | ≤ 1 | "
        f"{met(local['inproc'], 1)} |",
        f"| full check, this host, `opskit policy check` incl. Python start (s) | "
        f"{local['cli']:.2f} | {lynis['median']:.1f} (groups: {LYNIS_GROUPS}) | ≤ 1 | "
        f"{met(local['cli'], 1)} |" if lynis else
        f"| full check, this host, `opskit policy check` incl. Python start (s) | "
        f"{local['cli']:.2f} | (not installed) | ≤ 1 | {met(local['cli'], 1)} |",
        f"| {fleet['hosts']} sshd hosts, `opskit policy check` (s, median; max) | "
        f"{fleet['median']:.2f}; {fleet['max']:.2f} | one host at a time | ≤ 20 | "
        f"{met(fleet['median'], 20)} |",
    ]
    body = (f"Run {now} on {os.cpu_count()} cores; {local['checks']} checks of the shipped "
            f"policy (this host: {local['statuses']}). {fleet['hosts']} sshd servers on "
            f"loopback ports (started in {fleet['sshd_start']:.1f} s, not counted), default "
            f"ssh.concurrency 16; {fleet['rows']} rows, {fleet['unreachable']} unreachable, "
            f"exit {fleet['exit_code']}. Lynis: {lynis['version'] if lynis else 'n/a'}, "
            f"`lynis audit system --quick --tests-from-group \"{LYNIS_GROUPS}\"`.\n\n"
            + "\n".join(rows) + "\n\n"
            "Not equivalent: Lynis' groups also run its Debian plugin and tool scans, and "
            "read config rather than live state (on this machine it reported the host-based "
            "firewall 'ACTIVE' while `nft list ruleset` is empty, which opskit reports as 4 "
            "findings); opskit runs its 15 checks on every host at once.")
    print(body)
    if not args.no_write:
        from benchmarks.bench_backup import write_section
        write_section(os.path.join(HERE, "RESULTS.md"), "policy",
                      f"## policy (benchmarks/bench_policy.py)\n\n{body.rstrip()}\n")


def write_profile_section(args, local: dict, fleet: dict, lynis: dict | None) -> None:
    """The '## policy-PROFILE' section: the profile beside Lynis' full audit."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    met = lambda v, t: "yes" if v <= t else "no"   # noqa: E731
    full = f"{lynis['median']:.1f} (`lynis audit system --quick`, all tests)" if lynis \
        else "(not installed)"
    body = (f"Run {now} on {os.cpu_count()} cores (load average {load:.1f}: the machine is "
            f"shared); `--profile {args.profile}`: {local['checks']} checks (this host: "
            f"{local['statuses']}). {fleet['hosts']} sshd servers on loopback ports (started in "
            f"{fleet['sshd_start']:.1f} s, not counted), ssh.concurrency 16; {fleet['rows']} "
            f"rows, {fleet['unreachable']} unreachable, exit {fleet['exit_code']}. Lynis: "
            f"{lynis['version'] if lynis else 'n/a'}.\n\n"
            "| measure | opskit | Lynis | target | met |\n|---|---|---|---|---|\n"
            f"| {args.profile}, this host, in-process (s) | {local['inproc']:.3f} | | ≤ 1 | "
            f"{met(local['inproc'], 1)} |\n"
            f"| {args.profile}, this host, `opskit policy check --profile {args.profile}` incl. "
            f"Python start (s, median) | {local['cli']:.2f} | {full} | ≤ 1 | "
            f"{met(local['cli'], 1)} |\n"
            f"| {fleet['hosts']} sshd hosts (s, median; max) | {fleet['median']:.2f}; "
            f"{fleet['max']:.2f} | one host at a time | ≤ 20 | {met(fleet['median'], 20)} |\n")
    print(body)
    if not args.no_write:
        from benchmarks.bench_backup import write_section
        write_section(os.path.join(HERE, "RESULTS.md"), f"policy-{args.profile}",
                      f"## policy-{args.profile} (benchmarks/bench_policy.py --profile "
                      f"{args.profile})\n\n{body.rstrip()}\n")


if __name__ == "__main__":
    main()
