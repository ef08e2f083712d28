"""Scheduling, playbooks and the evidence pack (issue #11; R-BAK-4, R-BAK-5, R-AUD-2, R-AUD-4).

    jobs.py       the schedule file (configs/schedule.yaml, embedded in default_schedule.py)
    runner.py     running jobs: lock, timeout, retries, status, log, metrics; the daemon
    units.py      'schedule status', crontab lines, systemd units
    playbook.py   playbook files and the step runner
    evidence.py   the auditor evidence pack

Domain code only: no click, no printing; the CLI lives in opskit/cli/schedule.py,
playbook.py and evidence.py.
"""
