"""The real-service fixtures really work: a PostgreSQL server and an S3 server.

Each test checks an observable effect on the running service, so a fixture
that silently did nothing (or talked to something else) makes it fail.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import uuid

import pytest

from tests.harness.postgres import PsqlError
from tests.harness.s3 import is_loopback_url, unique_bucket_name

pytestmark = pytest.mark.integration


# --- PostgreSQL ----------------------------------------------------------------------

def test_postgres_is_a_real_server_on_loopback(postgres):
    assert postgres.host == "127.0.0.1"
    assert 0 < postgres.port < 65536
    assert postgres.psql("SHOW port") == str(postgres.port)
    assert postgres.psql("SELECT current_setting('server_version_num')::int >= 120000") == "t"
    assert postgres.psql("SHOW fsync") == "off"
    assert os.path.isdir(postgres.socket_dir)
    assert postgres.dsn.startswith(f"postgresql://{postgres.superuser}:")
    assert postgres.dsn.endswith(f"@127.0.0.1:{postgres.port}/postgres")


def test_postgres_superuser_role_has_password(postgres):
    assert postgres.psql("SELECT current_user") == postgres.superuser
    assert postgres.psql(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{postgres.superuser}'") == "t"
    # TCP logins need the password (scram), so a wrong one must be refused.
    with pytest.raises(PsqlError) as err:
        postgres.psql("SELECT 1", password="wrong-" + postgres.password)
    assert "password authentication failed" in err.value.stderr


def test_postgres_create_table_insert_select(postgres):
    table = f"t_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL);"
                  f"INSERT INTO {table} VALUES (1, 'alice'), (2, 'bob');")
    assert postgres.psql(f"SELECT id, name FROM {table} ORDER BY id") == "1|alice\n2|bob"
    assert postgres.rows(f"SELECT name, id FROM {table} ORDER BY id DESC") == [("bob", "2"), ("alice", "1")]
    assert postgres.psql(f"SELECT count(*) FROM {table}") == "2"


def test_postgres_sql_errors_raise(postgres):
    with pytest.raises(PsqlError) as err:
        postgres.psql("SELECT * FROM no_such_table_anywhere")
    assert "no_such_table_anywhere" in str(err.value)
    # ON_ERROR_STOP: nothing after the failing statement runs.
    table = f"t_{uuid.uuid4().hex[:8]}"
    with pytest.raises(PsqlError):
        postgres.psql(f"SELECT 1/0; CREATE TABLE {table} (x int);")
    assert postgres.psql(f"SELECT to_regclass('{table}') IS NULL") == "t"


def test_postgres_create_database_is_separate(postgres):
    name = f"db_{uuid.uuid4().hex[:8]}"
    dsn = postgres.create_database(name)
    assert dsn.endswith(f"/{name}")
    assert postgres.psql("SELECT current_database()", db=name) == name
    postgres.psql("CREATE TABLE only_here (x int); INSERT INTO only_here VALUES (42)", db=name)
    assert postgres.psql("SELECT x FROM only_here", db=name) == "42"
    assert postgres.psql("SELECT to_regclass('only_here') IS NULL", db="postgres") == "t"
    assert postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1"


def test_postgres_db_fixture_and_roles(postgres, postgres_db):
    role = f"r_{uuid.uuid4().hex[:8]}"
    postgres.create_role(role, password="s3cret'quote")
    postgres.psql(f"GRANT CONNECT ON DATABASE {postgres_db} TO {role}")
    assert postgres.psql("SELECT current_user", db=postgres_db, user=role,
                         password="s3cret'quote") == role
    granted = postgres.psql(f"SELECT has_database_privilege('{role}', '{postgres_db}', 'CONNECT')")
    assert granted == "t"


def test_postgres_dsn_works_with_psql_client(postgres):
    """The DSN is a real libpq URL, usable by any client (later: psycopg)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    out = subprocess.run([os.path.join(postgres.bindir, "psql"), "-X", "-A", "-t", "-w",
                          postgres.dsn, "-c", "SELECT 40 + 2"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"


# --- S3 ------------------------------------------------------------------------------

def test_s3_endpoint_is_loopback(s3_server):
    assert is_loopback_url(s3_server.endpoint_url)
    assert s3_server.endpoint_url == f"http://127.0.0.1:{s3_server.port}"
    assert s3_server.region == "us-east-1"
    s3 = s3_server.client()
    assert s3.meta.endpoint_url == s3_server.endpoint_url


def test_s3_does_not_leak_aws_env(s3_server):
    s3_server.client()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        assert os.environ.get(name) != s3_server.env[name]


def test_s3_client_ignores_ambient_aws_settings(s3_server, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.amazonaws.com")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONG")
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:9")
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="ambient", Body=b"ok")
    assert s3.get_object(Bucket=s3_bucket, Key="ambient")["Body"].read() == b"ok"


def test_s3_client_refuses_non_loopback_endpoints(s3_server):
    # A request redirected away from loopback is stopped before it is sent.
    s3 = s3_server.client()
    s3.meta.events.register("before-sign.s3", lambda request, **kw: setattr(
        request, "url", request.url.replace("127.0.0.1", "s3.amazonaws.com")))
    with pytest.raises(RuntimeError, match="non-loopback"):
        s3.list_buckets()
    # And a server object pointing elsewhere will not even build a client.
    with pytest.raises(AssertionError):
        dataclasses.replace(s3_server, endpoint_url="https://s3.amazonaws.com").client()


def test_s3_put_get_list(s3_server, s3_bucket):
    s3 = s3_server.client()
    assert s3.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    blobs = {"data/aa/one": b"first", "data/bb/two": b"second" * 1000, "index/x": b""}
    for key, body in blobs.items():
        s3.put_object(Bucket=s3_bucket, Key=key, Body=body)
    for key, body in blobs.items():
        assert s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="data/")
    assert sorted(o["Key"] for o in listed["Contents"]) == ["data/aa/one", "data/bb/two"]
    assert {o["Key"]: o["Size"] for o in listed["Contents"]}["data/bb/two"] == 6000
    s3.delete_object(Bucket=s3_bucket, Key="index/x")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=s3_bucket, Key="index/x")


def test_s3_buckets_are_fresh_per_test(s3_server, s3_bucket):
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert s3_bucket in names
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_s3_object_lock_bucket_enforces_retention(s3_server):
    bucket = s3_server.make_bucket(unique_bucket_name("opskit-lock"), object_lock=True)
    s3 = s3_server.client()
    conf = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert conf["ObjectLockEnabled"] == "Enabled"
    until = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).replace(microsecond=0)
    put = s3.put_object(Bucket=bucket, Key="packs/p1", Body=b"pack",
                        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    assert put.get("VersionId")
    head = s3.head_object(Bucket=bucket, Key="packs/p1")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == until
    # A locked version cannot be deleted before its retention date.
    with pytest.raises(s3.exceptions.ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="packs/p1", VersionId=put["VersionId"])
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="packs/p1")["Body"].read() == b"pack"


def test_s3_plain_bucket_has_no_object_lock(s3_server, s3_bucket):
    s3 = s3_server.client()
    with pytest.raises(s3.exceptions.ClientError) as err:
        s3.get_object_lock_configuration(Bucket=s3_bucket)
    assert "ObjectLockConfigurationNotFound" in err.value.response["Error"]["Code"]
