"""S3Backend against a REAL moto S3 server: the Backend contract, pagination,
range reads, fork safety, Object Lock, errors (one line naming the site)."""
from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from opskit.backup import crypto
from opskit.backup.backends import BackendError, LocalBackend, ObjectNotFound, open_backend
from opskit.backup.backends.s3 import ObjectLocked, S3Backend, parse_s3_url
from opskit.core.errors import EXIT_OPERATIONAL, EXIT_USAGE, ConfigError
from tests.harness.s3 import unique_bucket_name


def backend(s3_server, bucket, tmp_path, prefix="repo/x", **extra) -> S3Backend:
    secret = tmp_path / "secret"
    secret.write_text(s3_server.secret_key + "\n")
    settings = {"name": "dr", "endpoint_url": s3_server.endpoint_url, "region": s3_server.region,
                "access_key_id": s3_server.access_key, "secret_access_key_file": str(secret),
                **extra}
    return open_backend(f"s3://{bucket}/{prefix}", settings)


def test_urls_and_dispatch(tmp_path):
    assert parse_s3_url("s3://b/a/b/") == ("b", "a/b/")
    assert parse_s3_url("s3://b") == ("b", "")
    assert isinstance(open_backend(str(tmp_path)), LocalBackend)
    assert isinstance(open_backend(f"file://{tmp_path}"), LocalBackend)
    with pytest.raises(ConfigError) as err:
        open_backend("ftp://x/y")
    assert err.value.exit_code == EXIT_USAGE and "ftp://" in str(err.value)
    with pytest.raises(ConfigError):
        open_backend("s3://b/p", {"object_lock_mode": "FOREVER", "object_lock_days": 1})
    with pytest.raises(ConfigError):
        open_backend("s3://b/p", {"object_lock_mode": "COMPLIANCE"})      # no period


def test_contract_put_get_range_list_delete(s3_server, s3_bucket, tmp_path):
    b = backend(s3_server, s3_bucket, tmp_path)
    data = os.urandom(100_000)
    oid = crypto.object_id(data)
    name = f"data/{oid[:2]}/{oid}"
    assert not b.exists(name)
    b.put(name, memoryview(data))
    b.put("config", b"cfg")
    assert b.exists(name) and b.size(name) == len(data)
    assert b.get(name) == data
    assert b.get(name, 10, 100) == data[10:110]
    assert b.get(name, len(data) - 5, 100) == data[-5:]      # short at the end, like read()
    assert b.get(name, 500) == data[500:]
    assert b.get(name, 0, 0) == b""
    assert list(b.list("data/")) == [(name, len(data))]
    # the prefix isolates repositories sharing a bucket
    other = backend(s3_server, s3_bucket, tmp_path, prefix="repo")
    assert list(other.list("data/")) == []
    with pytest.raises(ObjectNotFound):
        b.get("index/" + "0" * 64)
    with pytest.raises(ObjectNotFound):
        b.size("index/" + "0" * 64)
    with pytest.raises(BackendError):
        b.put("../escape", b"x")
    b.delete(name)
    b.delete(name)                                      # deleting twice is fine
    assert not b.exists(name)


def test_list_paginates(s3_server, s3_bucket, tmp_path):
    b = backend(s3_server, s3_bucket, tmp_path)
    b.page_size = 7
    names = sorted(f"index/{i:064x}" for i in range(30))
    for n in names:
        b.put(n, n.encode())
    assert sorted(n for n, _ in b.list("index/")) == names


def _child_put(b, name, q):
    try:
        b.put(name, b"from the child")
        q.put(("ok", os.getpid() in b._clients and len(b._clients) == 1))
    except BaseException as exc:  # noqa: BLE001
        q.put(("error", repr(exc)))


def test_a_forked_child_makes_its_own_client(s3_server, s3_bucket, tmp_path):
    b = backend(s3_server, s3_bucket, tmp_path)
    b.put("keys/parent", b"p")                          # the parent has a client now
    parent_client = b._clients[os.getpid()]
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_child_put, args=(b, "keys/child", q))
    proc.start()
    status, own_client = q.get(timeout=30)
    proc.join(10)
    assert status == "ok" and own_client is True
    assert b._clients[os.getpid()] is parent_client
    assert b.get("keys/child") == b"from the child"


def test_missing_bucket_and_bad_credentials_are_one_line(s3_server, tmp_path):
    missing = unique_bucket_name("opskit-missing")
    b = backend(s3_server, missing, tmp_path)
    with pytest.raises(BackendError) as err:
        b.check_bucket()
    assert str(err.value) == (f"site 'dr' (s3://{missing}/repo/x): bucket '{missing}' "
                              "does not exist")
    assert err.value.exit_code == EXIT_OPERATIONAL
    with pytest.raises(BackendError) as err:
        b.exists("config")
    assert "does not exist" in str(err.value)
    nofile = open_backend("s3://b/p", {"name": "dr", "access_key_id": "AKIA",
                                       "secret_access_key_file": str(tmp_path / "nope"),
                                       "endpoint_url": s3_server.endpoint_url})
    with pytest.raises(ConfigError) as err:
        nofile.exists("config")
    assert "secret_access_key_file" in str(err.value) and err.value.exit_code == EXIT_USAGE


def test_unreachable_endpoint_names_the_site(tmp_path, dead_port):
    secret = tmp_path / "s"
    secret.write_text("x\n")
    b = open_backend("s3://b/p", {"name": "far", "endpoint_url": f"http://127.0.0.1:{dead_port}",
                                  "access_key_id": "AKIA", "secret_access_key_file": str(secret),
                                  "region": "us-east-1", "connect_timeout": 1,
                                  "max_attempts": 1})
    with pytest.raises(BackendError) as err:
        b.put("config", b"x")
    assert str(err.value).startswith("site 'far' (s3://b/p): cannot reach the S3 endpoint")
    assert "\n" not in str(err.value)


def test_object_lock_retention_and_locked_delete(s3_server, tmp_path):
    bucket = s3_server.make_bucket(unique_bucket_name("opskit-lock"), object_lock=True)
    b = backend(s3_server, bucket, tmp_path, object_lock_mode="COMPLIANCE", object_lock_days=2)
    b.put("index/" + "a" * 64, b"locked")
    mode, until = b.retention("index/" + "a" * 64)
    assert mode == "COMPLIANCE" and until
    with pytest.raises(ObjectLocked) as err:
        b.delete("index/" + "a" * 64)
    assert err.value.name == "index/" + "a" * 64 and err.value.retain_until == until
    assert err.value.exit_code == EXIT_OPERATIONAL
    assert b.get("index/" + "a" * 64) == b"locked"     # still there, readable
    # without Object Lock the same bucket type deletes for good (all versions)
    plain = backend(s3_server, bucket, tmp_path, prefix="plain")
    plain.put("keys/k", b"v")
    plain._versioning = True
    s3 = s3_server.client()
    plain.delete("keys/k")
    assert not plain.exists("keys/k")
    assert not [v for v in s3.list_object_versions(Bucket=bucket, Prefix="plain/keys/k")
                .get("Versions", [])]


def test_put_is_proven_by_the_etag(s3_server, s3_bucket, tmp_path):
    """Replication's after-upload check: the ETag of a single-part PUT is the MD5 of
    what the server stored. A mismatch is an error; an ETag that is not a plain MD5
    (SSE-KMS, some S3-compatibles) proves nothing, so the caller checks the size."""
    b = backend(s3_server, s3_bucket, tmp_path)
    assert b.put_verified("data/ok", b"payload") is True
    answers = []
    b._client().meta.events.register(
        "after-call.s3.PutObject", lambda parsed, **_: parsed.__setitem__("ETag", answers[-1]))
    answers.append('"' + "0" * 32 + '"')
    with pytest.raises(BackendError, match="ETag .* is not the MD5"):
        b.put_verified("data/bad", b"payload")
    answers.append('"9b2cf535f27731c974343645a3985328-2"')
    assert b.put_verified("data/kms", b"payload") is False
