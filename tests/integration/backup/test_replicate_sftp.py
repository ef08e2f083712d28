"""`opskit backup replicate` to a REAL OpenSSH sshd over SFTP (no mocks)."""
from __future__ import annotations

import os

from tests.harness.backup import (BackupCli, assert_same_tree, error_lines, make_tree,
                                   restored_path)
from tests.integration.backup.test_replicate_s3 import CutProxy


def sftp_cli(tmp_path, sshd, *, known_hosts=None, key_file=None, port=None, sub="site"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    remote = tmp_path / sub
    url = f"sftp://{sshd.user}@127.0.0.1:{port or sshd.port}{remote}"
    extra = (f"sites:\n  offsite:\n    url: {url}\n    key_file: {key_file or sshd.client_key}\n"
             f"    known_hosts: {known_hosts or sshd.known_hosts}\n    workers: 4\n")
    return BackupCli(tmp_path, extra=extra), url, remote


def test_replicate_to_sftp_restore_from_the_copy_rerun_sends_nothing(tmp_path, sshd):
    source = make_tree(tmp_path / "src", big_bytes=2_000_000)
    cli, url, remote = sftp_cli(tmp_path, sshd)
    cli.backup(source)
    res = cli.json("replicate", "--to", "offsite")["sites"][0]
    assert res["sent_objects"] == res["total_objects"] > 5
    assert not [f for _d, _s, fs in os.walk(remote) for f in fs if f.startswith("tmp-")]
    again = cli.json("replicate")["sites"][0]
    assert again["sent_objects"] == 0 and again["already_there"] == res["total_objects"]

    # the copy is a repository: restore straight from the sftp:// URL
    env = {"OPSKIT_SFTP_KEY_FILE": sshd.client_key, "OPSKIT_SFTP_KNOWN_HOSTS": sshd.known_hosts}
    target = tmp_path / "restore"
    run = cli("restore", "latest", "--target", str(target), "--repo", url, env=env)
    assert run.exit_code == 0, run.output
    assert_same_tree(source, restored_path(target, source), owners=False)

    # damage behind opskit's back: check-site names it, replicate re-sends it
    packs = sorted(os.path.join(d, f) for d, _s, fs in os.walk(remote / "data") for f in fs)
    with open(packs[0], "r+b") as fh:
        fh.seek(10)
        byte = fh.read(1)
        fh.seek(10)
        fh.write(bytes([byte[0] ^ 1]))
    snap = next(os.path.join(d, f) for d, _s, fs in os.walk(remote / "snapshots") for f in fs)
    os.unlink(snap)
    run = cli("check-site", "offsite", "--read-data-subset", "100")
    assert run.exit_code == 1, run.output
    assert os.path.basename(packs[0]) in run.stdout and os.path.basename(snap) in run.stdout
    assert cli.json("replicate")["sites"][0]["sent_objects"] == 2
    run = cli("check-site", "offsite", "--read-data")
    assert run.exit_code == 0, run.output
    run = cli("check", "--site", "offsite", "--read-data-subset", "100")   # the spelling
    assert run.exit_code == 0, run.output
    assert "check-site offsite" in run.stdout


def test_unknown_host_key_and_wrong_key_one_clear_line(tmp_path, sshd):
    source = make_tree(tmp_path / "src")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cli, _url, remote = sftp_cli(tmp_path / "a", sshd, known_hosts=str(empty))
    cli.backup(source)
    run = cli("replicate")
    assert run.exit_code == 3, run.output
    assert "site 'offsite'" in run.stderr and "unknown host key" in run.stderr
    assert sshd.host_fingerprint in run.stderr
    assert len(error_lines(run.stderr)) == 1, run.stderr       # + the automatic incident
    assert not remote.exists()
    assert empty.read_text() == ""                     # never auto-accepted

    from tests.harness.sshd import generate_ed25519
    stranger = str(tmp_path / "stranger_key")
    generate_ed25519(stranger, "not-authorized")
    cli, _url, _remote = sftp_cli(tmp_path / "b", sshd, key_file=stranger)
    cli.backup(source)
    run = cli("replicate")
    assert run.exit_code == 3, run.output
    assert "site 'offsite'" in run.stderr and "authentication failed" in run.stderr
    assert len(error_lines(run.stderr)) == 1, run.stderr


def test_sshd_gone_mid_replication_exit_3_rerun_completes(tmp_path, sshd):
    source = make_tree(tmp_path / "src", big_bytes=2_000_000)
    proxy = CutProxy((sshd.address, sshd.port), cut_after=900_000)
    try:
        # known_hosts names the proxy's port: same host key, other port
        kh = tmp_path / "kh"
        kh.write_text(f"[127.0.0.1]:{proxy.port} {sshd.host_public_key}\n")
        cli, _url, _remote = sftp_cli(tmp_path, sshd, known_hosts=str(kh), port=proxy.port)
        cli.backup(source)
        run = cli("replicate")
        assert run.exit_code == 3, run.output
        assert "site 'offsite'" in run.stderr
        proxy.cut_after = None
        proxy.start()
        res = cli.json("replicate")["sites"][0]
        assert res["sent_objects"] >= 1 and res["already_there"] >= 1
        run = cli("check-site", "offsite", "--read-data")
        assert run.exit_code == 0, run.output
    finally:
        proxy.stop()
