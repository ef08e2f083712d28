"""The daily signed audit checkpoint job (#28 item 7, R-AUD-3): in the default
schedule, left out by 'schedule cron' when no signing key exists."""
from opskit.core.signing import generate
from opskit.schedule.jobs import load_schedule
from opskit.schedule.readiness import blockers, carried_environment
from opskit.settings import load_config


def _job():
    return load_schedule(load_config(None)).jobs["audit-checkpoint"]


def test_audit_checkpoint_job_is_daily_and_signed():
    job = _job()
    assert job.every == "day" and job.command == ["audit", "checkpoint", "--sign"]
    assert "R-AUD-3" in job.rules


def test_left_out_without_a_key_in_with_one(tmp_path):
    env = {"OPSKIT_HOME": str(tmp_path / "home")}
    reasons = blockers(_job(), load_config(None), env)
    assert len(reasons) == 1 and "no signing key at" in reasons[0]
    assert str(tmp_path / "home" / "corrections" / "id_ed25519") in reasons[0]
    generate(str(tmp_path / "home" / "corrections" / "id_ed25519"))
    assert blockers(_job(), load_config(None), env) == []


def test_key_named_by_config_or_carried_variable(tmp_path):
    key = tmp_path / "keys" / "audit.key"
    config = tmp_path / "opskit.yaml"
    config.write_text("corrections:\n  key_file: keys/audit.key\n")
    env = {"OPSKIT_HOME": str(tmp_path / "home")}
    assert blockers(_job(), load_config(str(config)), env)
    generate(str(key))
    assert blockers(_job(), load_config(str(config)), env) == []
    other = {"OPSKIT_HOME": str(tmp_path / "home"), "OPSKIT_CORRECTIONS_KEY": str(key)}
    assert blockers(_job(), load_config(None), other) == []
    carried = carried_environment({"OPSKIT_CORRECTIONS_KEY": "rel/k", "OPSKIT_PASSPHRASE": "x"})
    assert carried["OPSKIT_CORRECTIONS_KEY"].endswith("/rel/k")
    assert "OPSKIT_PASSPHRASE" not in carried


def test_unsigned_audit_jobs_need_no_key(tmp_path):
    verify = load_schedule(load_config(None)).jobs["audit-verify"]
    assert blockers(verify, load_config(None), {"OPSKIT_HOME": str(tmp_path)}) == []
