"""The daily database dump job (#24 item 6): in the default schedule, left out
by 'schedule cron' when no database is configured."""
from opskit.schedule.jobs import load_schedule
from opskit.schedule.readiness import blockers
from opskit.settings import load_config

ENV = {"OPSKIT_PASSPHRASE_FILE": "/root/.opskit-pass"}


def _config(tmp_path, body):
    path = tmp_path / "opskit.yaml"
    path.write_text(body)
    return load_config(str(path))


def test_db_dump_job_needs_a_configured_database(tmp_path):
    job = load_schedule(load_config(None)).jobs["db-dump"]
    assert job.command[:3] == ["backup", "db", "run"]
    bare = _config(tmp_path, "backup:\n  databases: {}\n")
    assert any("backup.databases" in b for b in blockers(job, bare, ENV))
    ready = _config(tmp_path, "backup:\n  databases:\n    claims:\n      host: db1\n")
    assert blockers(job, ready, ENV) == []
    # and, as every backup job, a passphrase cron can read
    assert any("passphrase" in b for b in blockers(job, ready, {}))



def test_weekly_basebackup_job_needs_one_database_or_db(tmp_path):
    job = load_schedule(load_config(None)).jobs["db-basebackup"]
    assert job.command[:3] == ["backup", "db", "basebackup"]
    assert any("backup.databases" in b for b in
               blockers(job, _config(tmp_path, "backup:\n  databases: {}\n"), ENV))
    one = _config(tmp_path, "backup:\n  databases:\n    claims:\n      host: db1\n")
    assert blockers(job, one, ENV) == []
    two = _config(tmp_path, "backup:\n  databases:\n    claims:\n      host: db1\n"
                            "    hr:\n      host: db1\n")
    assert any("--db" in b for b in blockers(job, two, ENV))
    job.command = job.command + ["--db", "claims"]
    assert blockers(job, two, ENV) == []
