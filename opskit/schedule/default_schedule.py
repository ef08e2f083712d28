"""The default schedule, embedded so 'opskit schedule' works with no schedule file.

Identical to configs/schedule.yaml (a unit test checks).
"""

TEXT = '''# opskit schedule: which opskit commands run when (docs/schedule.md).
#
# 'opskit schedule run' runs these jobs as a foreground daemon; or install
# 'opskit schedule cron' (crontab lines) / 'opskit schedule cron --systemd'
# (service + timer units) instead. Every job runs 'opskit <command>' in a
# subprocess with a timeout, never overlaps itself (a per-job lock, also across
# two daemons), is retried with backoff when it fails operationally (exit 3,
# timeout), and leaves its status, a JSON-lines log entry and Prometheus
# textfile metrics. This file is also embedded in opskit: with no schedule
# file the same jobs apply.
#
# Timing: every: hour | day | week | month
#   at:      "HH:MM" (":MM" for hourly jobs), local time; default 00:00
#   weekday: for weekly jobs, monday ... sunday; default sunday
#   day:     for monthly jobs, 1 ... 28; default 1
#   after:   [job, ...] run right after one of these jobs succeeded
version: 1

defaults:
  timeout: 2h          # seconds, or a duration: 90s, 30m, 2h (m = minutes, mo = months)
  retries: 2           # extra attempts after an operational failure (exit 3, timeout)
  retry_delay: 5m      # first backoff; doubled for each further attempt

jobs:
  backup-incremental:
    description: Daily incremental backup of backup.paths (R-BAK-4, R-BAK-2)
    command: [backup, run, --tag, incremental]
    every: day
    at: "01:30"
    timeout: 6h
    rules: [R-BAK-2, R-BAK-4]

  backup-full:
    description: Weekly full backup, every file re-read (R-BAK-4)
    command: [backup, run, --full, --tag, full]
    every: week
    weekday: sunday
    at: "03:00"
    timeout: 12h
    rules: [R-BAK-4]

  db-dump:
    description: Daily logical dump of every database in backup.databases (R-BAK-2, R-BAK-6)
    command: [backup, db, run, --tag, daily]
    every: day
    at: "00:45"
    timeout: 6h
    rules: [R-BAK-2, R-BAK-6]

  db-basebackup:
    description: Weekly base backup of the PostgreSQL cluster for point-in-time recovery (R-BAK-2, R-BAK-6)
    command: [backup, db, basebackup, --tag, weekly]
    every: week
    weekday: saturday
    at: "02:00"
    timeout: 12h
    rules: [R-BAK-2, R-BAK-6]

  replicate:
    description: Copy new backup data to every off-site site after each backup (R-BAK-3)
    command: [backup, replicate]
    after: [backup-incremental, backup-full]
    timeout: 6h
    rules: [R-BAK-3]

  restore-drill:
    description: Monthly restore drill from the off-site site 'dr' (R-BAK-5)
    command: [backup, drill, --site, dr, --sample, "10"]
    every: month
    day: 1
    at: "05:00"
    timeout: 6h
    retries: 0
    rules: [R-BAK-5, R-BAK-2]

  policy-check:
    description: Hourly removable-media and network policy check on every host
    command: [policy, check]
    every: hour
    at: ":15"
    timeout: 30m
    rules: [R-MED-1, R-MED-2, R-NET-1, R-NET-3, R-NET-4, R-NET-5, R-AUD-2]

  permission-snapshot:
    description: Weekly snapshot of actual accounts, sudo rights, keys and grants
    command: [perms, snapshot]
    every: week
    weekday: monday
    at: "06:00"
    timeout: 1h
    rules: [R-AUD-2]

  permission-report:
    description: Permission report (declared roles vs actual grants) on the new snapshot
    command: [perms, report, --format, html]
    after: [permission-snapshot]
    timeout: 1h
    rules: [R-ACC-2, R-ACC-4, R-ACC-5, R-AUD-2]

  audit-checkpoint:
    description: Daily signed checkpoint of the audit log, exported to audit.anchor_dir (R-AUD-3)
    command: [audit, checkpoint, --sign]
    every: day
    at: "06:20"
    timeout: 10m
    rules: [R-AUD-3, R-DAT-1]

  audit-verify:
    description: Daily verification of the tamper-evident audit log
    command: [audit, verify]
    every: day
    at: "06:30"
    timeout: 30m
    rules: [R-AUD-3, R-DAT-1]

  incident-overdue:
    description: Hourly check of incident deadlines, with Prometheus gauges (R-INC-1)
    command: [incident, overdue]
    every: hour
    at: ":05"
    timeout: 10m
    rules: [R-INC-1]
'''
