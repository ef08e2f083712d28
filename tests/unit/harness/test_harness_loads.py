def test_cli_fixture_runs_version(opskit):
    run = opskit("--version")
    assert run.exit_code == 0
    assert "opskit, version" in run.stdout
