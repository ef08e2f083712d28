"""Disaster-recovery drills from off-site copies with the local repository gone
(R-BAK-5, R-BAK-3), and prune against an Object Lock site, on real servers."""
import json
import os
import shutil

from tests.harness.backup import make_tree
from tests.harness.s3 import unique_bucket_name
from tests.integration.backup.test_replicate_s3 import isolated_env, make_cli
from tests.integration.backup.test_replicate_sftp import sftp_cli


def _lose_local_repository(cli):
    shutil.move(cli.repo, cli.repo + ".gone")      # the primary site burned down
    assert not os.path.exists(cli.repo)


def test_dr_drill_from_s3_with_the_local_repository_unavailable(tmp_path, s3_server, s3_bucket):
    source = make_tree(tmp_path / "src", big_bytes=1_500_000)
    cli = make_cli(tmp_path / "primary", s3_server, s3_bucket)
    cli.backup(source)
    env = isolated_env(s3_server)
    assert cli("replicate", env=env).exit_code == 0
    _lose_local_repository(cli)
    run = cli("drill", "--site", "dr", "--all", "--json", env=env)
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["passed"] and report["site"] == "dr"
    assert "s3://" in report["repository"]
    assert report["files_verified"] == report["files_total"] > 0
    history = json.loads(cli("drill", "--history", "--json", env=env).stdout)
    assert [(h["site"], h["passed"]) for h in history] == [("dr", True)]


def test_dr_drill_from_sftp_with_the_local_repository_unavailable(tmp_path, sshd):
    source = make_tree(tmp_path / "src", big_bytes=1_000_000)
    cli, _url, _remote = sftp_cli(tmp_path / "primary", sshd)
    cli.backup(source)
    assert cli("replicate", "--to", "offsite").exit_code == 0
    _lose_local_repository(cli)
    run = cli("drill", "--site", "offsite", "--sample", "50", "--seed", "1", "--json")
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert report["passed"] and report["site"] == "offsite" and report["sample_pct"] == 50


def test_dr_drill_names_a_missing_pack_at_the_site(tmp_path, sshd):
    source = make_tree(tmp_path / "src", big_bytes=1_000_000)
    cli, _url, remote = sftp_cli(tmp_path / "primary", sshd)
    cli.backup(source)
    assert cli("replicate", "--to", "offsite").exit_code == 0
    packs = sorted((os.path.join(d, f) for d, _s, fs in os.walk(remote / "data") for f in fs),
                   key=os.path.getsize)
    os.unlink(packs[-1])                           # the biggest: file content
    run = cli("drill", "--site", "offsite", "--all", "--json")
    assert run.exit_code == 1, run.output
    report = json.loads(run.stdout)
    assert not report["passed"] and report["failures"]
    assert "failed verification" in report["verdict"]


def test_prune_on_an_object_lock_site_keeps_what_is_retained(tmp_path, s3_server):
    bucket = s3_server.make_bucket(unique_bucket_name("opskit-lock"), object_lock=True)
    cli = make_cli(tmp_path, s3_server, bucket, lock="GOVERNANCE")
    env = isolated_env(s3_server)
    src = tmp_path / "data"
    src.mkdir()
    for gen in range(2):
        (src / "claims.csv").write_bytes(os.urandom(300_000))
        cli.backup(src)
    assert cli("replicate", env=env).exit_code == 0
    # forget + prune directly on the site (by its name: its settings apply)
    text = open(cli.config).read()
    with open(cli.config, "w") as fh:
        fh.write(text.replace("backup:\n", "backup:\n  retention:\n    floor_days: 0\n", 1)
                 + "incidents:\n  high_risk_operations: []\n")   # R-SEC-2 tested elsewhere
    run = cli("forget", "--keep-last", "1", "--repo", "dr", "--json", env=env)
    assert run.exit_code == 0, run.output
    out = json.loads(run.stdout)
    assert out["forgotten"] == [] and len(out["kept_under_retention"]) == 1
    # garbage on the site (what an interrupted upload leaves): prune must try to delete
    # it, be refused by the server's retention, report it and go on
    from opskit.backup.backends import open_backend
    site = open_backend(f"s3://{bucket}/db01", {
        "name": "dr", "endpoint_url": s3_server.endpoint_url, "region": "us-east-1",
        "access_key_id": s3_server.access_key, "object_lock_mode": "GOVERNANCE",
        "object_lock_days": 1, "secret_access_key_file": str(tmp_path / "s3.secret")})
    junk = "data/00/" + "0" * 64
    site.put(junk, b"left over by an interrupted upload")
    run = cli("prune", "--repo", "dr", "--json", env=env)
    assert run.exit_code == 0, run.output
    done = json.loads(run.stdout)["done"]
    assert [k["object"] for k in done["kept_under_retention"]] == [junk]
    assert done["kept_under_retention"][0]["retain_until"]
    assert site.exists(junk)
    check = cli("check", "--read-data", "--repo", "dr", env=env)
    assert check.exit_code == 0, check.output
