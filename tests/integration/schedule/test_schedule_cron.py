"""The crontab 'opskit schedule cron' prints works under a real cron (issue #22, R-BAK-4).

Cron starts jobs with almost no environment (PATH=/usr/bin:/bin, HOME, SHELL,
LOGNAME) and mails whatever a job prints. The default schedule, installed with
the real 'crontab -' into a real cron daemon (Debian's, in a private mount
namespace), must run every job to completion with nothing on stdout. The
only change to the printed lines: every job is made due each minute, and what
cron would mail is kept in a file per job.
"""
import json
import os
import re
import shutil
import time

import pytest

from tests.harness.cli import run_opskit

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _setup(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "claims.csv").write_text("id,amount\n1,20\n")
    passfile = tmp_path / "pass"
    passfile.write_text("correct horse battery staple\n")
    passfile.chmod(0o600)
    for name in ("roster.yaml", "roles.yaml"):
        shutil.copy(os.path.join(REPO, "configs", name), tmp_path / name)
    config = tmp_path / "opskit.yaml"
    config.write_text(f"backup:\n  paths: [{src}]\n"
                      f"sites:\n  dr:\n    url: file://{tmp_path / 'offsite'}\n")
    env = {"OPSKIT_HOME": str(tmp_path / "home"), "OPSKIT_PASSPHRASE_FILE": str(passfile)}
    assert run_opskit("correct", "keygen", env=env).exit_code == 0   # signs audit checkpoints
    return config, env


def _every_minute(crontab: str, outdir) -> tuple[str, list[str]]:
    """Make each job line due every minute and keep what cron would mail."""
    lines, jobs = [], []
    if os.environ.get("PYTHONPATH"):            # the code under test, not another install
        lines.append(f"PYTHONPATH={os.environ['PYTHONPATH']}")
    for line in crontab.splitlines():
        m = re.match(r"^(\S+ \S+ \S+ \S+ \S+) (.* --job (\S+) --quiet)$", line)
        if m:
            jobs.append(m.group(3))
            line = f"* * * * * {m.group(2)} >>{outdir}/{m.group(3)}.mail 2>&1"
        lines.append(line)
    return "\n".join(lines) + "\n", jobs


def _finished(home, names) -> dict:
    out = {}
    for name in names:
        path = os.path.join(home, "schedule", "jobs", f"{name}.json")
        if os.path.exists(path):
            with open(path) as fh:
                status = json.load(fh)
            if status.get("result") not in (None, "running"):
                out[name] = status
    return out


def test_the_default_schedule_runs_under_real_cron_quietly(tmp_path, cron_daemon):
    config, env = _setup(tmp_path)
    printed = run_opskit("--config", config, "schedule", "cron", env=env)
    assert printed.exit_code == 0, printed.output
    # everything is set up but the database jobs: this config names no database
    left_out = re.findall(r"^# (\S+): left out, not set up", printed.stdout, re.M)
    assert sorted(left_out) == ["db-basebackup", "db-dump"], printed.output
    assert f"OPSKIT_PASSPHRASE_FILE={env['OPSKIT_PASSPHRASE_FILE']}" in printed.stdout
    assert f"OPSKIT_HOME={env['OPSKIT_HOME']}" in printed.stdout
    # the drill reads the off-site copy: one exists before cron starts everything at once
    for args in (("backup", "run"), ("backup", "replicate")):
        first = run_opskit("--config", config, *args, env=env)
        assert first.exit_code == 0, first.output
    crontab, timed = _every_minute(printed.stdout, tmp_path)
    expected = {"backup-incremental", "backup-full", "replicate", "restore-drill",
                "policy-check", "permission-snapshot", "permission-report", "audit-verify",
                "audit-checkpoint", "incident-overdue"}
    cron_daemon.start(crontab)
    deadline = time.monotonic() + 170
    while time.monotonic() < deadline and set(_finished(env["OPSKIT_HOME"], expected)) != expected:
        time.sleep(2)
    done = _finished(env["OPSKIT_HOME"], expected)
    assert set(done) == expected, (f"not finished: {expected - set(done)}\n"
                                   f"cron: {cron_daemon.output()}")
    for name, status in done.items():
        # 0 = ok, 1 = completed with findings (the policy check on this machine may find some)
        assert status["result"] in ("ok", "findings"), (name, status)
    for name in timed:                  # cron would mail nothing but one line per finding
        mail = tmp_path / f"{name}.mail"
        text = mail.read_text() if mail.exists() else ""
        assert all(ln.startswith(f"opskit: job {name}: findings") or
                   ln.startswith("opskit: job permission-report: findings") for ln in
                   text.splitlines()), (name, text)


def test_a_job_that_is_not_set_up_is_left_out_not_installed_to_fail(tmp_path):
    env = {"OPSKIT_HOME": str(tmp_path / "home")}
    printed = run_opskit("schedule", "cron", env=env)          # the embedded defaults only
    assert printed.exit_code == 0, printed.output
    out = printed.stdout
    for job, reason in (("backup-incremental", "backup.paths is empty"),
                        ("backup-full", "backup.paths is empty"),
                        ("restore-drill", "no site 'dr' in the config"),
                        ("permission-report", "no roles.yaml"),
                        ("audit-checkpoint", "no signing key")):
        assert re.search(rf"^# {job}: left out, not set up: .*{re.escape(reason)}", out, re.M), job
        assert f"job {job} left out" in printed.stderr
    assert "no passphrase cron can read" in out
    assert not re.search(r"--job (backup-incremental|backup-full|restore-drill) ", out)
    assert re.search(r"--job audit-verify --quiet$", out, re.M)
