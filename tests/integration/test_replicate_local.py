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
from tests.backup_helpers import ENV, PASSPHRASE, BackupCli, make_tree


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
    assert "replicate to near: 2 files, 2.0 KiB / 2.0 KiB (100%)" in stream.getvalue()


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
