"""`opskit backup replicate` / `check-site` / `sites` against a REAL moto S3 server.

No mocks: the CLI runs as a subprocess and talks HTTP to moto on loopback.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import urllib.request

import pytest

from tests.harness.backup import (BackupCli, assert_same_tree, error_lines, make_tree,
                                   restored_path)
from tests.harness.s3 import unique_bucket_name

PREFIX = "db01"


class CutProxy:
    """A TCP forwarder in front of a server that can be 'stopped' (all
    connections cut, port closed) after ``cut_after`` bytes went upstream,
    and started again on the same port: a server outage as clients see it."""

    def __init__(self, upstream: tuple[str, int], cut_after: int | None = None):
        self.upstream = upstream
        self.cut_after = cut_after
        self.sent = 0
        self.port = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cut = threading.Event()
        self.start()

    def start(self, port: int | None = None) -> None:
        self.cut.clear()
        self.sent = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port or self.port or 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        while not self.cut.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src, dst, upstream: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if upstream and self.cut_after is not None:
                    with self._lock:
                        self.sent += len(data)
                        over = self.sent >= self.cut_after
                    if over:
                        self.stop()
                        return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.cut.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)     # wakes the blocked accept()
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass


def site_yaml(name: str, endpoint: str, bucket: str, secret_file: str, *, access_key: str,
              lock: str | None = None) -> str:
    text = (f"sites:\n  {name}:\n    url: s3://{bucket}/{PREFIX}\n    endpoint_url: {endpoint}\n"
            f"    region: us-east-1\n    access_key_id: {access_key}\n"
            f"    secret_access_key_file: {secret_file}\n    workers: 4\n    rpo_hours: 24\n")
    if lock:
        text += f"    object_lock_mode: {lock}\n    object_lock_days: 1\n"
    return text


def make_cli(tmp_path, s3_server, bucket, *, endpoint=None, secret=None, lock=None,
             name="dr"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    secret_file = tmp_path / "s3.secret"
    secret_file.write_text((secret or s3_server.secret_key) + "\n")
    os.chmod(secret_file, 0o600)
    extra = site_yaml(name, endpoint or s3_server.endpoint_url, bucket, str(secret_file),
                      access_key=s3_server.access_key, lock=lock)
    return BackupCli(tmp_path, extra=extra)


@contextlib.contextmanager
def moto_auth(s3_server):
    """Turn on moto's request authentication (unknown keys, bad signatures are
    refused like AWS does) for the duration of the block."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = s3_server.endpoint_url + "/moto-api/reset-auth"

    def post(count: bytes) -> str:
        request = urllib.request.Request(url, data=count, method="POST",
                                         headers={"Content-Type": "text/plain"})
        with opener.open(request, timeout=10) as resp:
            return json.loads(resp.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]

    previous = post(b"0")
    try:
        yield
    finally:
        post(str(previous).encode())




def isolated_env(s3_server) -> dict:
    """The server's endpoint and keys for the CLI subprocess; the harness also
    blinds it to ~/.aws (AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE=/dev/null)."""
    return dict(s3_server.env)


@pytest.fixture
def source(tmp_path):
    return make_tree(tmp_path / "src", big_bytes=2_500_000)


def test_replicate_to_s3_restore_from_the_copy_and_rerun_sends_nothing(
        tmp_path, s3_server, s3_bucket, source):
    cli = make_cli(tmp_path, s3_server, s3_bucket)
    cli.backup(source)
    env = isolated_env(s3_server)
    first = cli.json("replicate", "--to", "dr", env=env)
    res = first["sites"][0]
    assert res["sent_objects"] > 5 and res["sent_objects"] == res["total_objects"]
    assert res["snapshots"] == 1

    run = cli("replicate", env=env)
    assert run.exit_code == 0, run.output
    assert "dr: sent 0 objects" in run.stdout
    assert len(run.stdout.strip().splitlines()) == 1      # one summary line under cron

    # every local object is on the site, byte for byte
    s3 = s3_server.client()
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=s3_bucket, Prefix=PREFIX + "/") for o in page.get("Contents", [])}
    local = {os.path.relpath(os.path.join(d, f), cli.repo)
             for d, _, fs in os.walk(cli.repo) for f in fs if not d.endswith("locks")}
    assert {k[len(PREFIX) + 1:] for k in keys} == local

    # the copy is a repository of its own: restore straight from the S3 URL
    target = tmp_path / "restore"
    run = cli("restore", "latest", "--target", str(target), "--repo",
              f"s3://{s3_bucket}/{PREFIX}", env=env)
    assert run.exit_code == 0, run.output
    assert_same_tree(source, restored_path(target, source), owners=False)

    run = cli("check-site", "dr", "--read-data-subset", "100", env=env)
    assert run.exit_code == 0, run.output
    assert "no errors found" in run.stdout

    sites = cli.json("sites", env=env)
    assert sites[0]["site"] == "dr" and sites[0]["lag snapshots"] == 0
    assert sites[0]["lag hours"] == 0 and sites[0]["status"] == "ok"
    assert sites[0]["last verified"] != "never"

    # a second backup: the site lags one snapshot until the next replicate
    with open(os.path.join(source, b"new-file"), "wb") as fh:
        fh.write(os.urandom(200_000))
    cli.backup(source)
    assert cli.json("sites", env=env)[0]["lag snapshots"] == 1
    res = cli.json("replicate", env=env)["sites"][0]
    assert 0 < res["sent_objects"] < first["sites"][0]["sent_objects"]
    assert cli.json("sites", env=env)[0]["lag snapshots"] == 0


def test_damaged_or_deleted_remote_objects_are_named_and_resent(
        tmp_path, s3_server, s3_bucket, source):
    cli = make_cli(tmp_path, s3_server, s3_bucket)
    cli.backup(source)
    env = isolated_env(s3_server)
    assert cli("replicate", env=env).exit_code == 0
    s3 = s3_server.client()
    names = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    pack = next(n for n in names if "/data/" in n)
    index = next(n for n in names if "/index/" in n)
    snap = next(n for n in names if "/snapshots/" in n)
    body = bytearray(s3.get_object(Bucket=s3_bucket, Key=pack)["Body"].read())
    body[100] ^= 1                                              # same size, one bit off
    s3.put_object(Bucket=s3_bucket, Key=pack, Body=bytes(body))
    s3.delete_object(Bucket=s3_bucket, Key=index)
    s3.delete_object(Bucket=s3_bucket, Key=snap)

    run = cli("check-site", "dr", "--read-data", env=env)
    assert run.exit_code == 1, run.output
    for key in (pack, index, snap):
        assert key[len(PREFIX) + 1:] in run.stdout, (key, run.stdout)
    assert "damaged" in run.stdout and "missing on the site" in run.stdout

    res = cli.json("replicate", env=env)["sites"][0]
    assert res["sent_objects"] == 3 and res["resent_damaged"] == 1
    run = cli("check-site", "dr", "--read-data", env=env)
    assert run.exit_code == 0, run.output


def test_server_stopped_mid_replication_exit_3_then_rerun_completes(
        tmp_path, s3_server, s3_bucket, source):
    proxy = CutProxy((s3_server.host, s3_server.port), cut_after=1_200_000)
    try:
        cli = make_cli(tmp_path, s3_server, s3_bucket, endpoint=f"http://127.0.0.1:{proxy.port}")
        cli.backup(source)
        env = isolated_env(s3_server)
        run = cli("replicate", "--to", "dr", env=env)
        assert run.exit_code == 3, run.output
        assert "site 'dr'" in run.stderr
        assert len(run.stderr.strip().splitlines()) <= 2, run.stderr    # error (+ hint)
        assert proxy.cut.is_set()
        # nothing half-written: no snapshot reached the site before its packs and index
        s3 = s3_server.client()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
        assert not any("/snapshots/" in k for k in keys) or any("/index/" in k for k in keys)

        proxy.cut_after = None
        proxy.start()                                  # the server is back
        res = cli.json("replicate", "--to", "dr", env=env)["sites"][0]
        assert res["already_there"] >= 1 and res["sent_objects"] >= 1
        run = cli("check-site", "dr", "--read-data", env=env)
        assert run.exit_code == 0, run.output
        again = cli.json("replicate", env=env)["sites"][0]
        assert again["sent_objects"] == 0
        state = json.load(open(os.path.join(os.environ["OPSKIT_HOME"], "replication", "dr.json")))
        assert state["last_error"] is None and state["objects"] == again["total_objects"]
    finally:
        proxy.stop()


def test_wrong_credentials_missing_bucket_unknown_site_one_line(tmp_path, s3_server, s3_bucket,
                                                                 source):
    env = isolated_env(s3_server)
    cli = make_cli(tmp_path / "a", s3_server, s3_bucket, secret="not-the-secret")
    cli.backup(source)
    # moto checks signatures only with IAM auth on: switch it on for this call only
    with moto_auth(s3_server):
        run = cli("replicate", env=env)
    assert run.exit_code == 3, run.output
    assert "site 'dr'" in run.stderr and "rejected the credentials" in run.stderr
    assert len(error_lines(run.stderr)) == 1, run.stderr

    missing = unique_bucket_name("opskit-missing")
    cli = make_cli(tmp_path / "b", s3_server, missing)
    cli.backup(source)
    run = cli("replicate", env=env)
    assert run.exit_code == 3, run.output
    assert f"bucket '{missing}' does not exist" in run.stderr and "site 'dr'" in run.stderr
    assert len(error_lines(run.stderr)) == 1, run.stderr

    run = cli("replicate", "--to", "nowhere", env=env)
    assert run.exit_code == 2 and "unknown site 'nowhere'" in run.stderr


def test_object_lock_site_writes_retention_and_locked_delete_is_reported(
        tmp_path, s3_server, source):
    bucket = s3_server.make_bucket(unique_bucket_name("opskit-lock"), object_lock=True)
    cli = make_cli(tmp_path, s3_server, bucket, lock="GOVERNANCE")
    cli.backup(source)
    env = isolated_env(s3_server)
    run = cli("replicate", env=env)
    assert run.exit_code == 0, run.output
    s3 = s3_server.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        left = head["ObjectLockRetainUntilDate"].timestamp() - time.time()
        assert 23 * 3600 < left <= 24 * 3600 + 5

    # a delete of an unexpired object (what prune would do) is refused by the
    # server and reported as ObjectLocked naming the object, not a crash
    from opskit.backup.backends import open_backend
    from opskit.backup.backends.s3 import ObjectLocked
    site = open_backend(f"s3://{bucket}/{PREFIX}", {
        "name": "dr", "endpoint_url": s3_server.endpoint_url, "region": "us-east-1",
        "access_key_id": s3_server.access_key,
        "secret_access_key_file": str(tmp_path / "s3.secret")})
    victim = keys[0][len(PREFIX) + 1:]
    with pytest.raises(ObjectLocked) as err:
        site.delete(victim)
    assert victim in str(err.value) and "retention until" in str(err.value)
    assert "site 'dr'" in str(err.value)
    assert site.exists(victim)


def test_a_repository_can_live_on_s3_directly(tmp_path, s3_server, s3_bucket, source):
    """init, backup (forked workers each make their own S3 client), restore, check."""
    env = isolated_env(s3_server)
    url = f"s3://{s3_bucket}/direct"
    cli = BackupCli(tmp_path, init=False, repo=url)
    run = cli("init", env=env)
    assert run.exit_code == 0, run.output
    snap = cli.backup(source, env=env)
    assert snap
    target = tmp_path / "restore"
    run = cli("restore", "latest", "--target", str(target), env=env)
    assert run.exit_code == 0, run.output
    assert_same_tree(source, restored_path(target, source), owners=False)
    run = cli("check", "--read-data", env=env)
    assert run.exit_code == 0, run.output


def test_stalled_server_fails_within_the_timeout_and_rerun_resumes(tmp_path, private_s3_server):
    """A server that accepts connections but never answers (SIGSTOP) fails the run
    after ``sites.NAME.timeout`` and one retry, naming the object (issue 27)."""
    import random
    import signal
    import subprocess
    import sys
    server = private_s3_server
    bucket = server.make_bucket(unique_bucket_name())
    cli = make_cli(tmp_path, server, bucket)
    with open(cli.config, "a") as fh:
        fh.write("    timeout: 2\n")
    src = tmp_path / "big-src"
    src.mkdir()
    rng = random.Random(3)
    for i in range(40):                                # 40 packs of ~1 MiB: time to stop it midway
        (src / f"f{i}").write_bytes(rng.randbytes(1_000_000))
    cli.backup(src)
    env = dict(os.environ, **isolated_env(server), OPSKIT_PASSPHRASE="correct horse battery staple")
    proc = subprocess.Popen([sys.executable, "-m", "opskit", "--config", cli.config, "backup",
                             "replicate", "--to", "dr"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    s3 = server.client()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/data/")
            if listed.get("KeyCount", 0) >= 2:
                break
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            waited = time.monotonic() - stopped
            os.kill(server.pid, signal.SIGCONT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, out + err
    # per request: 2 attempts of (1 s waiting for "100 Continue", sending and
    # reading each bounded by the 2 s timeout) and one pause of at most 2 s;
    # requests in flight time out side by side. The old code took 4 x 60 s.
    budget = 2 * (1 + 2 + 2) + 2
    assert waited < budget + 2, f"replicate took {waited:.1f} s after the server stopped: {err}"
    assert "Traceback" not in err
    (line,) = error_lines(err)
    assert "site 'dr'" in line and "no answer" in line and "timeout 2 s" in line, err
    assert any(part in line for part in ("data/", "index/", "snapshots/")), err   # the object
    # the server is back: the rerun sends the rest and the copy checks out
    res = cli.json("replicate", "--to", "dr", env=isolated_env(server))["sites"][0]
    assert res["already_there"] >= 2 and res["sent_objects"] >= 1
    assert cli("check-site", "dr", "--read-data", env=isolated_env(server)).exit_code == 0
