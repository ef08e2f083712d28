"""backup.databases: targets from the config, password file rules, conninfo (issue 24)."""
import pytest

from opskit.backup.db.settings import database_targets
from opskit.core.errors import ConfigError, UsageError
from opskit.settings import load_config


def _config(tmp_path, body):
    path = tmp_path / "opskit.yaml"
    path.write_text(body)
    return load_config(str(path))


def test_targets_resolve_paths_and_carry_sslmode_without_password(tmp_path):
    pw = tmp_path / "db.pw"
    pw.write_text("s3cret\nignored\n")
    pw.chmod(0o600)
    cfg = _config(tmp_path, "backup:\n  databases:\n    claims:\n      host: db1\n"
                            "      port: 6432\n      user: bk\n      password_file: db.pw\n"
                            "      sslmode: require\n")
    [t] = database_targets(cfg)
    assert t.password_file == str(pw) and t.password() == "s3cret"
    info = t.conninfo()
    assert "sslmode=require" in info and "dbname=claims" in info and "s3cret" not in info
    assert t.env()["PGPASSWORD"] == "s3cret" and t.env()["PGSSLMODE"] == "require"
    assert t.describe() == "bk@db1:6432/claims" and t.database == "claims"


def test_password_file_readable_by_others_is_refused(tmp_path):
    pw = tmp_path / "db.pw"
    pw.write_text("x\n")
    pw.chmod(0o644)
    cfg = _config(tmp_path, "backup:\n  databases:\n    claims:\n      password_file: db.pw\n")
    with pytest.raises(ConfigError, match="readable by others"):
        database_targets(cfg)[0].env()


def test_unknown_database_names_the_configured_ones(tmp_path):
    cfg = _config(tmp_path, "backup:\n  databases:\n    claims: {}\n")
    with pytest.raises(UsageError, match="'nope'.*claims"):
        database_targets(cfg, ["nope"])


def test_bad_sslmode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="sslmode"):
        _config(tmp_path, "backup:\n  databases:\n    claims:\n      sslmode: maybe\n")


def test_template_entries_are_never_used():
    assert database_targets(load_config(None)) == []
