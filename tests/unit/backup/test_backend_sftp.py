"""SFTPBackend against a REAL sshd: the Backend contract, atomic put, host-key
verification (the opskit/hosts known_hosts policy), fork safety, errors."""
from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from opskit.backup.backends import BackendError, ObjectNotFound, open_backend
from opskit.backup.backends.sftp import HostKeyError, SFTPBackend, parse_sftp_url
from opskit.core.errors import EXIT_OPERATIONAL, ConfigError


def backend(sshd, root, **extra) -> SFTPBackend:
    settings = {"name": "dr", "key_file": sshd.client_key, "known_hosts": sshd.known_hosts,
                **extra}
    return open_backend(f"sftp://{sshd.user}@127.0.0.1:{sshd.port}{root}", settings)


def test_url_parsing():
    assert parse_sftp_url("sftp://backup@dr1:2222/srv/repo/") == ("backup", "dr1", 2222, "/srv/repo")
    assert parse_sftp_url("sftp://dr1/x") == (None, "dr1", 22, "/x")
    for bad in ("sftp://dr1", "sftp://dr1/", "sftp://u@h:port/x"):
        with pytest.raises(ConfigError):
            parse_sftp_url(bad)


def test_contract(sshd, tmp_path):
    root = tmp_path / "repo"
    b = backend(sshd, root)
    data = os.urandom(300_000)
    b.put("data/ab/abcd", data)
    b.put("config", b"cfg")
    assert b.get("data/ab/abcd") == data
    assert b.get("data/ab/abcd", 7, 1000) == data[7:1007]
    assert b.get("data/ab/abcd", len(data) - 3, 10) == data[-3:]
    assert b.size("data/ab/abcd") == len(data) and b.exists("config")
    assert list(b.list("data/")) == [("data/ab/abcd", len(data))]
    assert list(b.list("index/")) == []
    # a leftover temp file of a crashed writer is invisible
    (root / "data" / "ab" / "tmp-1-2-abcd").write_bytes(b"partial")
    assert list(b.list("data/")) == [("data/ab/abcd", len(data))]
    b.put("data/ab/abcd", data)                       # rewriting the same object is fine
    assert not [f for f in os.listdir(root / "data" / "ab") if f.startswith("tmp-") and
                f != "tmp-1-2-abcd"]
    with pytest.raises(ObjectNotFound):
        b.get("index/nope")
    b.delete("config")
    b.delete("config")
    assert not b.exists("config")
    b.close()


def _child(b, q):
    try:
        b.put("keys/child", b"child")
        q.put("ok")
    except BaseException as exc:  # noqa: BLE001
        q.put(repr(exc))


def test_a_forked_child_uses_its_own_connection(sshd, tmp_path):
    b = backend(sshd, tmp_path / "repo")
    b.put("keys/parent", b"parent")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child, args=(b, q))
    proc.start()
    assert q.get(timeout=30) == "ok"
    proc.join(10)
    # the parent's connection was not disturbed by the child
    assert b.get("keys/parent") == b"parent" and b.get("keys/child") == b"child"


def test_unknown_and_changed_host_keys_are_rejected(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    b = backend(sshd, tmp_path / "repo", known_hosts=str(empty))
    with pytest.raises(HostKeyError) as err:
        b.exists("config")
    assert "unknown host key" in str(err.value) and sshd.host_fingerprint in str(err.value)
    assert err.value.exit_code == EXIT_OPERATIONAL and empty.read_text() == ""

    # accept-new records it (like ssh's accept-new), then it is known
    b = backend(sshd, tmp_path / "repo", known_hosts=str(empty), host_key_policy="accept-new")
    assert not b.exists("config")
    assert sshd.host_public_key in empty.read_text()

    changed = tmp_path / "changed"
    changed.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                       "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    b = backend(sshd, tmp_path / "repo", known_hosts=str(changed), host_key_policy="accept-new")
    with pytest.raises(HostKeyError) as err:
        b.exists("config")
    assert "HOST KEY CHANGED" in str(err.value)


def test_connection_errors_name_the_site(sshd, tmp_path, dead_port):
    b = open_backend(f"sftp://u@127.0.0.1:{dead_port}/x", {"name": "gone", "connect_timeout": 2,
                                                           "known_hosts": sshd.known_hosts})
    with pytest.raises(BackendError) as err:
        b.put("config", b"x")
    assert str(err.value).startswith(f"site 'gone' (sftp://u@127.0.0.1:{dead_port}/x): "
                                     "cannot connect")
    with pytest.raises(ConfigError):
        open_backend("sftp://u@h/x", {"key_file": str(tmp_path / "missing-key")})
