"""The scheduler (R-BAK-4, R-BAK-5).

    jobs.py       the schedule file (configs/schedule.yaml, embedded in default_schedule.py)
    daemon.py     running jobs: lock, timeout, retries, status, log, metrics; the daemon
    units.py      'schedule status', crontab lines, systemd units

Playbooks live in opskit.playbooks, the auditor evidence pack in opskit.evidence.
Domain code only: no click, no printing; the CLI lives in opskit/cli/schedule.py.
"""
