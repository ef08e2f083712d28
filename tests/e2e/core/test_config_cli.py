"""A broken config file, as a user meets it: one clear line, exit 2, no traceback.

The CLI loads the config lazily, so these use ``audit show``, which reads it
(for the audit log path) like every leaf command does.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e

COMMAND = ("audit", "show")

CONFIG_ERROR_EXITS = (2,)

BROKEN = {
    "unknown-key": ("operator: alice\nssh:\n  conccurrency: 3\n", 3, "ssh.conccurrency"),
    "wrong-type": ("backup:\n  repo: /srv/repo\n  workers: four\n", 3, "backup.workers"),
    "duplicate-key": ("backup:\n  repo: /a\n  repo: /b\n", 3, "backup.repo"),
    "bad-choice": ("ssh:\n  host_key_policy: trust-everyone\n", 2, "ssh.host_key_policy"),
}


def _write(tmp_path, content: str | bytes, name: str = "opskit.yaml"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _assert_clean_error(run, where: str) -> None:
    assert "Traceback" not in run.output, run.output
    assert run.stdout == "", run.stdout
    first = run.stderr.splitlines()[0]
    assert first.startswith(f"opskit: error: {where}"), run.stderr


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_bad_config_names_file_line_and_key(opskit, tmp_path, case):
    content, line, key = BROKEN[case]
    path = _write(tmp_path, content)
    run = opskit("--config", path, *COMMAND)
    assert run.exit_code in CONFIG_ERROR_EXITS, run.output
    _assert_clean_error(run, f"{path}:{line}: key '{key}'")


def test_malformed_yaml_names_file_and_line(opskit, tmp_path):
    path = _write(tmp_path, "operator: alice\nssh: [unclosed\nbackup:\n  repo: x\n")
    run = opskit("--config", path, *COMMAND)
    assert run.exit_code in CONFIG_ERROR_EXITS, run.output
    _assert_clean_error(run, f"{path}:")
    assert "not valid YAML" in run.stderr
    assert f"{path}:3:" in run.stderr or f"{path}:2:" in run.stderr


def test_non_utf8_config_names_file_and_line(opskit, tmp_path):
    path = _write(tmp_path, b"operator: alice\nbackup:\n  repo: /home/j\xf6rg\n")
    run = opskit("--config", path, *COMMAND)
    assert run.exit_code in CONFIG_ERROR_EXITS, run.output
    _assert_clean_error(run, f"{path}:3: ")
    assert "UTF-8" in run.stderr


def test_bad_config_from_env_var(opskit, tmp_path):
    path = _write(tmp_path, "ssh:\n  concurrency: 0\n")
    run = opskit(*COMMAND, env={"OPSKIT_CONFIG": str(path)})
    assert run.exit_code in CONFIG_ERROR_EXITS, run.output
    _assert_clean_error(run, f"{path}:2: key 'ssh.concurrency'")


def test_missing_config_file_is_an_error(opskit, tmp_path):
    path = tmp_path / "nope.yaml"
    run = opskit("--config", path, *COMMAND)
    assert run.exit_code in CONFIG_ERROR_EXITS, run.output
    _assert_clean_error(run, f"{path}: file not found")


@pytest.mark.parametrize("case", ["unknown-key", "wrong-type"])
def test_bad_config_exits_2_with_one_error_line(opskit, tmp_path, case):
    content, line, key = BROKEN[case]
    path = _write(tmp_path, content)
    run = opskit("--config", path, *COMMAND)
    assert run.exit_code == 2, run.output
    _assert_clean_error(run, f"{path}:{line}: key '{key}'")
    assert len([ln for ln in run.stderr.splitlines() if ln.startswith("opskit: error:")]) == 1, run.stderr


def test_help_works_with_a_broken_config(opskit, tmp_path):
    path = _write(tmp_path, "ssh: [\n")
    for args in (("--help",), ("audit", "--help"), ("audit", "show", "--help")):
        run = opskit("--config", path, *args)
        assert run.exit_code == 0, run.output
        assert "Usage:" in run.stdout and "Traceback" not in run.output


def test_good_config_runs(opskit, tmp_path):
    path = _write(tmp_path, "operator: alice\nssh:\n  concurrency: 4\n")
    run = opskit("--config", path, *COMMAND)
    assert run.exit_code == 0, run.output
    assert "Traceback" not in run.output


def test_example_config_runs(opskit):
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "configs" / "opskit.yaml"
    run = opskit("--config", example, *COMMAND)
    assert run.exit_code == 0, run.output
