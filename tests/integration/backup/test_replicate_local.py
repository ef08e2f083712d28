"""Replication engine properties, with a local directory as the site (fast):
write order, idempotence, and safety while a backup is running."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from opskit.backup.backends import LocalBackend
from opskit.backup.checker import Checker
from opskit.backup.replicate import Replicator, Site, check_site, list_all, phase_of, replicate
from opskit.backup.repository import Repository
from tests.harness.backup import ENV, PASSPHRASE, BackupCli, make_tree


class Recording(LocalBackend):
    def __init__(self, root):
        super().__init__(root, fsync=False)
        self.puts: list[str] = []

    def put(self, name, data):
        super().put(name, data)
        self.puts.append(name)


def site(tmp_path) -> Site:
    return Site("here", f"file://{tmp_path / 'site'}", {"name": "here"}, workers=4)


def test_send_order_is_keys_config_packs_index_snapshots(tmp_path):
    cli = BackupCli(tmp_path)
    src = make_tree(tmp_path / "src", big_bytes=1_500_000)
    cli.backup(src)
    os.utime(os.path.join(src, b"random.bin"), ns=(1, 1))
    cli.backup(src)
    dest = Recording(str(tmp_path / "site"))
    result = Replicator(LocalBackend(cli.repo), dest, site(tmp_path)).run()
    phases = [phase_of(n) for n in dest.puts]
    assert phases == sorted(phases), dest.puts           # no snapshot before its packs/index
    assert dest.puts[-1].startswith("snapshots/") and result.snapshots == 2
    assert set(list_all(dest)) == set(list_all(LocalBackend(cli.repo)))
    again = Recording(str(tmp_path / "site"))
    assert Replicator(LocalBackend(cli.repo), again, site(tmp_path)).run().sent_objects == 0
    assert again.puts == []


def test_damaged_local_object_is_not_sent_and_is_reported(tmp_path):
    cli = BackupCli(tmp_path)
    cli.backup(make_tree(tmp_path / "src"))
    index = next(n for n, _ in LocalBackend(cli.repo).list("index/"))
    path = os.path.join(cli.repo, index)
    os.chmod(path, 0o600)
    with open(path, "r+b") as fh:
        fh.write(b"X")
    result = replicate(LocalBackend(cli.repo), site(tmp_path), str(tmp_path / "state"))
    assert result.source_damaged == [index]
    assert not os.path.exists(tmp_path / "site" / index)


def test_replicating_while_a_backup_runs_leaves_a_consistent_copy(tmp_path):
    cli = BackupCli(tmp_path)
    src = make_tree(tmp_path / "src", big_bytes=12_000_000)
    state = str(tmp_path / "state")
    proc = subprocess.Popen([sys.executable, "-m", "opskit", "--config", cli.config, "backup",
                             "run", os.fsdecode(src)], env={**os.environ, **ENV},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rounds = 0
    while True:
        running = proc.poll() is None
        replicate(LocalBackend(cli.repo), site(tmp_path), state)
        rounds += 1
        copy = Repository.open(LocalBackend(str(tmp_path / "site")), PASSPHRASE.encode())
        copy.load_index(repair=False)
        report = Checker(copy).run()
        assert report.ok, (rounds, report.errors)
        if not running:
            break
    assert proc.wait() == 0, proc.stderr.read()
    assert len(copy.snapshots()) == 1
    assert check_site(LocalBackend(cli.repo), site(tmp_path), state,
                      read_data_fraction=1.0).ok


def test_sites_flags_an_rpo_breach_and_progress_draws_on_a_tty(tmp_path):
    import io

    from opskit.cli.backup import _ReplicateProgress
    extra = (f"sites:\n  near:\n    url: file://{tmp_path / 'site'}\n    rpo_hours: 0.0001\n"
             f"  far:\n    url: file://{tmp_path / 'far'}\n")
    cli = BackupCli(tmp_path, extra=extra)
    cli.backup(make_tree(tmp_path / "src"))
    assert cli("replicate", "--to", "near").exit_code == 0
    import time
    time.sleep(1)
    run = cli("sites", "--json")
    assert run.exit_code == 1, run.output                      # RPO breached: findings
    rows = {r["site"]: r for r in json.loads(run.stdout)}
    assert rows["near"]["status"].startswith("RPO 0.0001h breached")
    assert rows["near"]["lag snapshots"] == 0 and rows["near"]["objects"] > 0
    assert rows["far"]["status"] == "never replicated" and rows["far"]["lag snapshots"] == 1

    stream = io.StringIO()
    bar = _ReplicateProgress("near")
    bar.bar.stream, bar.bar.enabled = stream, True
    bar.total(2, 2048)
    bar.sent("data/aa/x", 1024)
    bar.sent("index/y", 1024)
    bar.close()
    assert "replicate to near: 2/2 files, 2.0 KiB / 2.0 KiB (100%)" in stream.getvalue()


def test_objects_read_ahead_are_still_checked_and_never_resent(tmp_path):
    """The first objects are read and hashed while the site's client starts: a
    damaged one read that way is still refused, and a guess that turns out to be
    on the site already (stale state) is not sent again."""
    cli = BackupCli(tmp_path)
    cli.backup(make_tree(tmp_path / "src", big_bytes=1_500_000))
    local = LocalBackend(cli.repo)
    pack = next(n for n, _ in local.list("data/"))
    Replicator(local, Recording(str(tmp_path / "site")), site(tmp_path)).run()
    os.remove(tmp_path / "site" / pack)
    path = os.path.join(cli.repo, pack)
    os.chmod(path, 0o600)
    with open(path, "r+b") as fh:
        fh.write(b"X")
    read_ahead = []

    class Watched(Replicator):
        def _load(self, name):
            if threading.current_thread().name.startswith("opskit-read"):
                read_ahead.append(name)
            return super()._load(name)

    dest = Recording(str(tmp_path / "site"))
    result = Watched(local, dest, site(tmp_path), known_on_site=set()).run()  # guess: all
    assert pack in read_ahead
    assert result.source_damaged == [pack] and dest.puts == []
    assert result.already_there == len(list_all(local)) - 1


# --- #28 items 5 and 10 --------------------------------------------------------------------
def _damage(path) -> None:
    os.chmod(path, 0o600)
    with open(path, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 1]))


def _site_cli(tmp_path) -> BackupCli:
    return BackupCli(tmp_path, extra=f"sites:\n  here:\n    url: file://{tmp_path / 'site'}\n")


def test_index_and_snapshots_needing_a_damaged_pack_are_held_back(tmp_path):
    """#28 item 5: the site never gets an index or snapshot whose packs it lacks."""
    cli = _site_cli(tmp_path)
    env = {"OPSKIT_HOME": str(tmp_path / "home")}
    src = tmp_path / "src"
    os.makedirs(src)
    with open(src / "one", "wb") as fh:
        fh.write(os.urandom(200_000))
    first = cli.backup(src, env=env)["snapshot"]
    assert cli("replicate", env=env).exit_code == 0
    local = LocalBackend(cli.repo)
    before = set(list_all(local))
    with open(src / "two", "wb") as fh:
        fh.write(os.urandom(200_000))
    second = cli.backup(src, env=env)["snapshot"]
    new = set(list_all(local)) - before
    new_pack = sorted(n for n in new if n.startswith("data/"))[0]
    _damage(os.path.join(cli.repo, new_pack))
    run = cli("replicate", "--json", env=env)
    assert run.exit_code == 1, run.output
    (res,) = json.loads(run.stdout)["sites"]
    assert res["source_damaged"] == [new_pack]
    held = set(res["held_back"])
    assert f"snapshots/{second}" in held and any(n.startswith("index/") for n in held)
    on_site = set(list_all(LocalBackend(str(tmp_path / "site"))))
    assert not held & on_site and f"snapshots/{first}" in on_site
    run = cli("replicate", env=env)         # what a person reads: held back, and what to do
    assert run.exit_code == 1 and "held back" in run.output, run.output
    assert "opskit backup repair index" in run.output, run.output
    copy = Repository.open(LocalBackend(str(tmp_path / "site")), PASSPHRASE.encode())
    copy.load_index(repair=False)
    assert Checker(copy).run().ok               # the site stays consistent
    state = tmp_path / "home" / "replication" / "here.json"
    assert os.stat(state).st_mode & 0o777 == 0o600          # item 10
    run = cli("check-site", "here", env=env)
    assert run.exit_code == 0, run.output                   # consistent: nothing to report


def test_check_site_names_an_index_whose_pack_is_not_on_the_site(tmp_path):
    """#28 item 5: check-site verifies index -> pack presence (here with a state dir
    that never saw the pack, so only the index can tell it is needed)."""
    cli = _site_cli(tmp_path)
    cli.backup(make_tree(tmp_path / "src"), env={"OPSKIT_HOME": str(tmp_path / "home")})
    assert cli("replicate", env={"OPSKIT_HOME": str(tmp_path / "home")}).exit_code == 0
    pack = sorted(n for n in list_all(LocalBackend(cli.repo)) if n.startswith("data/"))[0]
    os.remove(tmp_path / "site" / pack)
    fresh = {"OPSKIT_HOME": str(tmp_path / "elsewhere")}
    report = cli.json("check-site", "here", expect=1, env=fresh)
    assert report["index_checked"] is True
    (err,) = report["errors"]
    assert err["object"].startswith("index/") and pack in err["problem"]
    # without a passphrase the index cannot be read: said so, not "no errors" alone
    run = cli("check-site", "here", env={**fresh, "OPSKIT_PASSPHRASE": ""}, passphrase=None)
    assert run.exit_code == 0 and "not checked: no passphrase" in run.stdout, run.output


def test_replication_state_is_private(tmp_path):
    """#28 item 10: replication/<site>.json is 0600 like the rest of the state dir."""
    cli = BackupCli(tmp_path)
    cli.backup(make_tree(tmp_path / "src"))
    state = str(tmp_path / "state")
    old = os.umask(0o022)
    try:
        replicate(LocalBackend(cli.repo), site(tmp_path), state)
        path = os.path.join(state, "replication", "here.json")
        assert os.stat(path).st_mode & 0o777 == 0o600
        os.chmod(path, 0o644)
        check_site(LocalBackend(cli.repo), site(tmp_path), state)
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
