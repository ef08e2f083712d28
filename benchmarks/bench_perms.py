#!/usr/bin/env python3
"""opskit perms: 10,000 people, 20 hosts, one database with 200 tables (issue 8).

    python3 benchmarks/bench_perms.py [--people 10000] [--hosts 20] [--tables 200]
                                      [--runs 3] [--no-write]

Builds a bureau: roles.yaml and a roster of N people (posts: claims desk, audit
desk, batch operators, refund/benefit officers, system and database
maintainers; about 1 % departed, most of them frozen), 20 recorded hosts
(sysroot trees: 10 app, 4 db, 6 batch; passwd/shadow/group, sudoers with
aliases and an includedir, authorized_keys, wtmp) and a real PostgreSQL
database (the tests' harness starts a throw-away cluster) with 200 tables,
group roles and one login role per person who has database access. A few
hundred deliberate violations give the report something to say.

Measured (target: diff + report <= 5 s):
1. ``perms snapshot`` of everything (collection; reference, not in the target);
2. in-process: load the stored snapshot (SHA-256 verified) + load the roster +
   declared-vs-actual diff + HTML report rendered and stored, and the same
   for CSV;
3. as a user runs them: ``opskit perms diff`` and ``opskit perms report
   --format html`` (Python start and YAML parsing included).
Writes the "## perms" section of benchmarks/RESULTS.md (nothing else). Not a
test: timings depend on the machine.
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

DAY = 86400


def timed(argv, env=None, timeout=600):
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    return time.monotonic() - t0, proc


# --- the bureau ---------------------------------------------------------------------------

def build_model(n_people: int) -> tuple[dict, dict]:
    import copy

    from tests.fixtures.perms.trees import ROLES, fake_key
    roles = copy.deepcopy(ROLES)
    roles["roles"]["batch-op"] = {"tier": "operator", "linux": {"groups": ["batch"],
                                                               "sudo": ["ALL=(batch) /opt/batch/bin/run"]}}
    roles["posts"]["batch-operator"] = {"roles": ["batch-op"], "host_groups": ["batch"]}
    mix = [("system-maintainer", 20, []), ("database-maintainer", 30, []),
           ("claims-desk", 150, ["refund-officer"]), ("claims-desk", 100, ["benefit-officer"]),
           ("batch-operator", 1200, []), ("audit-desk", 2500, [])]
    mix.append(("claims-desk", n_people - sum(m[1] for m in mix), []))
    people: dict[str, dict] = {}
    i = 0
    for post, count, extra in mix:
        for _ in range(count):
            pid = f"p{i:05d}"
            entry = {"post": post, "backup": f"p{(i + 1) % n_people:05d}" if i % 97 else None}
            if extra:
                entry["roles"] = extra
            if post in ("system-maintainer", "database-maintainer") or i % 20 == 0:
                entry["ssh_keys"] = [fake_key(pid)]
            if i % 100 == 50 and post == "claims-desk":
                entry["status"] = "departed"
            people[pid] = {k: v for k, v in entry.items() if v is not None}
            i += 1
    roster = {"people": people,
              "service_accounts": {"opskit": {"owner": "p00000", "purpose": "opskit"}}}
    return roles, roster


def host_layout(n_hosts: int) -> list[tuple[str, str]]:
    n_app = n_hosts // 2
    n_db = max(1, n_hosts // 5)
    names = [(f"app{i + 1:02d}", "app") for i in range(n_app)]
    names += [(f"db{i + 1:02d}", "db") for i in range(n_db)]
    names += [(f"batch{i + 1:02d}", "batch") for i in range(n_hosts - n_app - n_db)]
    return names


def build_hosts(work: str, roles: dict, roster: dict, n_hosts: int, now: float) -> list:
    from tests.fixtures.perms.trees import fake_key, wtmp_bytes
    post_groups = {p: set(v["host_groups"]) for p, v in roles["posts"].items()}
    post_roles = {p: v["roles"] for p, v in roles["posts"].items()}
    today = int(now // DAY)
    layout = host_layout(n_hosts)
    for h_index, (name, group) in enumerate(layout):
        root = os.path.join(work, "hosts", name)
        os.makedirs(os.path.join(root, "etc", "sudoers.d"))
        passwd = ["root:x:0:0:root:/root:/bin/bash",
                  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin"]
        shadow = ["root:*:19000:0:99999:7:::", "daemon:*:19000:0:99999:7:::"]
        groups: dict[str, list[str]] = {"adm": [], "systemd-journal": [], "batch": []}
        logins = {}
        for n, (pid, p) in enumerate(roster["people"].items()):
            hg = post_groups[p["post"]]
            if not ("all" in hg or group in hg):
                continue
            uid = 10000 + n
            frozen = p.get("status") == "departed" and n % 1000 != 50   # a few are not
            shell = "/usr/sbin/nologin" if frozen else "/bin/bash"
            passwd.append(f"{pid}:x:{uid}:{uid}::/home/{pid}:{shell}")
            pw = ("!" if frozen else "") + "$6$s$" + "x" * 20
            shadow.append(f"{pid}:{pw}:{today - 30}:0:99999:7::{1 if frozen else ''}:")
            if p.get("status") != "departed":
                for r in post_roles[p["post"]]:
                    for g in roles["roles"][r].get("linux", {}).get("groups", []):
                        groups[g].append(pid)
                if n % 211 == 0 and group == "app":               # R-ACC-4 violations
                    groups["adm"].append(pid)
                # most logged in yesterday; every 37th person months ago (dormant)
                logins[pid] = now - (200 if n % 37 == 0 else 1) * DAY
            if "ssh_keys" in p and not frozen:
                keys = os.path.join(root, "home", pid, ".ssh")
                os.makedirs(keys)
                with open(os.path.join(keys, "authorized_keys"), "w") as fh:
                    fh.write(p["ssh_keys"][0] + "\n")
                    if n % 400 == 0:
                        fh.write(fake_key(f"extra-{pid}") + "\n")
        passwd.append("opskit:x:2100:2100::/home/opskit:/bin/sh")
        shadow.append("opskit:*:19000:0:99999:7:::")
        if h_index % 7 == 3:
            passwd.append("tmpuser:x:3999:3999::/home/tmpuser:/bin/bash")   # not in the roster
            shadow.append(f"tmpuser:$6$x:{today}:0:99999:7:::")
        group_lines = ["root:x:0:", "daemon:x:1:", "adm:x:4:" + ",".join(groups["adm"]),
                       "systemd-journal:x:101:" + ",".join(groups["systemd-journal"]),
                       "batch:x:200:" + ",".join(groups["batch"])]

        def write(rel, text, mode="w"):
            with open(os.path.join(root, rel), mode) as fh:
                fh.write(text)
        write("etc/passwd", "\n".join(passwd) + "\n")
        write("etc/shadow", "\n".join(shadow) + "\n")
        write("etc/group", "\n".join(group_lines) + "\n")
        write("etc/sudoers", "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n"
                             "@includedir /etc/sudoers.d\n")
        write("etc/sudoers.d/10-admins", "User_Alias ADMINS = "
              + ", ".join(pid for pid, p in roster["people"].items()
                          if p["post"] == "system-maintainer") + "\nADMINS ALL=(ALL:ALL) ALL\n")
        write("etc/sudoers.d/20-dba", "Cmnd_Alias PG = /usr/bin/psql, /usr/bin/pg_dump\n"
                                      "%adm ALL=(postgres) PG\n" if group == "db" else
                                      "# none\n")
        write("etc/sudoers.d/30-batch", "Runas_Alias B = batch\n%batch ALL=(B) /opt/batch/bin/run\n"
                                        "p00150 ALL=(root) NOPASSWD: /usr/bin/systemctl\n")
        os.makedirs(os.path.join(root, "var", "log"))
        write("var/log/wtmp", wtmp_bytes(logins), "wb")
    return layout


def build_database(server, n_tables: int, roster: dict, roles: dict) -> str:
    db = "perms_bench"
    server.create_database(db)
    stmts = ["CREATE SCHEMA ins"]
    groups = sorted({g for r in roles["roles"].values()
                     for g in r.get("postgres", {}).get("roles", [])})
    stmts += [f"CREATE ROLE {g} NOLOGIN" for g in groups]
    stmts.append("GRANT USAGE ON SCHEMA ins TO " + ", ".join(groups))
    for t in range(n_tables):
        stmts.append(f"CREATE TABLE ins.t{t:03d} (id bigserial PRIMARY KEY, insured_id bigint, "
                     "amount numeric(12,2), note text)")
        stmts.append(f"GRANT SELECT ON ins.t{t:03d} TO ins_claims_ro")
        if t % 2 == 0:
            stmts.append(f"GRANT SELECT, INSERT, UPDATE ON ins.t{t:03d} TO ins_claims_rw")
        if t % 10 == 0:
            stmts.append(f"GRANT SELECT, INSERT ON ins.t{t:03d} TO ins_refund, ins_benefit")
        stmts.append(f"GRANT ALL ON ins.t{t:03d} TO ins_dba")
    stmts.append("GRANT UPDATE ON ins.t007 TO ins_claims_ro")            # R-ACC-5 violation
    post_pg = {p: sorted({g for r in v["roles"]
                          for g in roles["roles"][r].get("postgres", {}).get("roles", [])})
               for p, v in roles["posts"].items()}
    for n, (pid, p) in enumerate(roster["people"].items()):
        pg = set(post_pg[p["post"]])
        for r in p.get("roles", []):
            pg.update(roles["roles"][r].get("postgres", {}).get("roles", []))
        if not pg:
            continue
        if p.get("status") == "departed":
            stmts.append(f'CREATE ROLE "{pid}" NOLOGIN')
            continue
        stmts.append(f'CREATE ROLE "{pid}" LOGIN IN ROLE {", ".join(sorted(pg))}')
        if n % 500 == 7:
            stmts.append(f'GRANT ins_dba TO "{pid}"')                     # R-ACC-4 violation
    server.psql(";\n".join(stmts) + ";", db, timeout=600)
    return db


def start_postgres():
    from tests.harness import postgres as pgmod
    fixture = pgmod.postgres
    func = getattr(fixture, "_get_wrapped_function", None)
    gen = (func() if func else fixture.__wrapped__)()
    return gen, next(gen)


# --- measuring --------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=10_000)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--tables", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="don't update RESULTS.md")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (printed)")
    args = ap.parse_args()

    import yaml

    from opskit.accounts.declared import load_declared
    from opskit.hosts.inventory import load_inventory
    from opskit.perms.analysis import Options, analyse
    from opskit.perms.postgres import database_specs
    from opskit.perms.report import ReportStore, build_report
    from opskit.perms.snapshot import SnapshotStore, take_snapshot
    from opskit.settings import load_config

    work = tempfile.mkdtemp(prefix="opskit-bench-perms-")
    gen = None
    try:
        now = time.time()
        t0 = time.monotonic()
        roles, roster = build_model(args.people)
        with open(os.path.join(work, "roles.yaml"), "w") as fh:
            yaml.safe_dump(roles, fh, sort_keys=False)
        with open(os.path.join(work, "roster.yaml"), "w") as fh:
            yaml.dump(roster, fh, sort_keys=False, Dumper=getattr(yaml, "CSafeDumper",
                                                                    yaml.SafeDumper))
        layout = build_hosts(work, roles, roster, args.hosts, now)
        gen, server = start_postgres()
        dbname = build_database(server, args.tables, roster, roles)
        pw = os.path.join(work, "pg.password")
        with open(pw, "w") as fh:
            fh.write(server.password + "\n")
        os.chmod(pw, 0o600)
        with open(os.path.join(work, "inventory.yaml"), "w") as fh:
            fh.write("hosts:\n" + "".join(f"  {n}:\n    sysroot: hosts/{n}\n    groups: [{g}]\n"
                                          for n, g in layout))
        config_path = os.path.join(work, "opskit.yaml")
        with open(config_path, "w") as fh:
            fh.write(f"inventory: inventory.yaml\naccounts:\n  roster: roster.yaml\n"
                     f"  roles: roles.yaml\nperms:\n  databases:\n    insurance:\n"
                     f"      host: {server.host}\n      port: {server.port}\n"
                     f"      user: {server.superuser}\n      dbname: {dbname}\n"
                     f"      password_file: {pw}\n")
        built = time.monotonic() - t0
        print(f"built in {built:.1f} s", flush=True)

        home = os.path.join(work, "home")
        config = load_config(config_path)
        t0 = time.monotonic()
        snap = take_snapshot(load_inventory(config).select(), database_specs(config))
        collect = time.monotonic() - t0
        store = SnapshotStore(home)
        store.save(snap)
        size_mb = os.path.getsize(snap.path) / 1e6
        accounts = sum(len(h["data"]["accounts"]) for h in snap.hosts)
        roles_n = len(snap.databases[0]["data"]["roles"])
        print(f"snapshot {snap.id}: {collect:.1f} s, {size_mb:.1f} MB, {accounts} accounts, "
              f"{roles_n} database roles, failed {snap.failed()}", flush=True)

        load_avg = os.getloadavg()[0]
        stages = {"load snapshot (verified)": [], "load roster + roles": [], "diff": [],
                  "html report (render + store)": [], "csv report (render + store)": [],
                  "total in-process": []}
        analysis = None
        for _ in range(args.runs):
            t_all = time.monotonic()
            t = time.monotonic()
            loaded = store.load()
            stages["load snapshot (verified)"].append(time.monotonic() - t)
            t = time.monotonic()
            declared = load_declared(config)
            stages["load roster + roles"].append(time.monotonic() - t)
            t = time.monotonic()
            analysis = analyse(loaded, declared, Options.from_config(config))
            stages["diff"].append(time.monotonic() - t)
            for fmt, label in (("html", "html report (render + store)"),
                               ("csv", "csv report (render + store)")):
                t = time.monotonic()
                content, text = build_report(analysis, loaded, fmt)
                ReportStore(home).save(content, fmt, text)
                stages[label].append(time.monotonic() - t)
            stages["total in-process"].append(time.monotonic() - t_all)
        med = {k: statistics.median(v) for k, v in stages.items()}
        for k, v in med.items():
            print(f"{k}: {v:.2f} s", flush=True)
        by_check: dict[str, int] = {}
        for f in analysis.findings:
            by_check[f.check] = by_check.get(f.check, 0) + 1

        env = dict(os.environ, OPSKIT_HOME=home)
        env.pop("OPSKIT_CONFIG", None)
        cli_diff, cli_report = [], []
        for _ in range(args.runs):
            elapsed, proc = timed([sys.executable, "-m", "opskit", "--config", config_path,
                                   "perms", "diff", "--json"], env)
            if proc.returncode not in (0, 1):
                raise SystemExit(f"perms diff failed ({proc.returncode}): {proc.stderr}")
            cli_diff.append(elapsed)
            elapsed, proc = timed([sys.executable, "-m", "opskit", "--config", config_path,
                                   "perms", "report", "--format", "html", "--out",
                                   os.path.join(work, "report.html")], env)
            if proc.returncode not in (0, 1):
                raise SystemExit(f"perms report failed ({proc.returncode}): {proc.stderr}")
            cli_report.append(elapsed)
        cli = {"diff": statistics.median(cli_diff), "report": statistics.median(cli_report)}
        print(f"cli: {cli}", flush=True)
    finally:
        if gen is not None:
            try:
                next(gen)
            except StopIteration:
                pass
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    met = lambda v, t: "yes" if v <= t else "no"   # noqa: E731
    diff_report = med["load snapshot (verified)"] + med["diff"] + med["html report (render + store)"]
    rows = ["| measure | seconds (median of %d) | target | met |" % args.runs, "|---|---|---|---|"]
    rows += [f"| {k} | {v:.2f} | | |" for k, v in med.items()]
    rows.append(f"| **diff + report** (load verified snapshot + diff + HTML report) | "
                f"**{diff_report:.2f}** | ≤ 5 | {met(diff_report, 5)} |")
    rows.append(f"| `opskit perms diff --json` incl. Python start and roster YAML | "
                f"{cli['diff']:.2f} | | |")
    rows.append(f"| `opskit perms report --format html` incl. Python start and roster YAML | "
                f"{cli['report']:.2f} | ≤ 5 | {met(cli['report'], 5)} |")
    rows.append(f"| snapshot: collect {len(layout)} sysroot hosts + the database "
                f"(reference) | {collect:.2f} | | |")
    body = (f"Run {when} on {os.cpu_count()} cores (load average {load_avg:.1f} when the "
            f"timings started: the machine is shared); Python {sys.version.split()[0]}; "
            f"{server.version}. {args.people:,} people, {len(layout)} hosts (sysroot trees, "
            f"{accounts:,} accounts in all), one database with {args.tables} tables and "
            f"{roles_n:,} roles; snapshot {size_mb:.1f} MB. {len(analysis.findings):,} findings "
            f"({', '.join(f'{k} {v}' for k, v in sorted(by_check.items()))}), "
            f"{len(analysis.diff):,} differences.\n\n" + "\n".join(rows) + "\n\n"
            f"The CLI rows include parsing the {args.people:,}-person roster.yaml with line "
            "tracking (opskit.core.yamlfile, libyaml's safe loader), measured separately as "
            "'load roster + roles'. Collection (the snapshot) is not part of the target: it "
            "runs from cron, not while an auditor waits.")
    print(body)
    if not args.no_write:
        from benchmarks.bench_backup import write_section
        write_section(os.path.join(HERE, "RESULTS.md"), "perms",
                      f"## perms (benchmarks/bench_perms.py)\n\n{body.rstrip()}\n")


if __name__ == "__main__":
    main()
