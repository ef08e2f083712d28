"""A real S3-compatible HTTP server for tests: moto in server mode.

``s3_server`` (session scope) starts ``python -m moto.server`` on a free
loopback port as a subprocess and stops it at the end of the session.
``s3_bucket`` (function scope) gives each test a fresh, uniquely named bucket.

Safety:
* The endpoint is always ``http://127.0.0.1:PORT``; every client made here
  refuses (before sending) any request to a non-loopback host, so a test can
  never reach real AWS, whatever the environment says.
* Credentials and region are passed to the clients explicitly; nothing is
  written to ``os.environ``. Code under test that runs in a subprocess gets
  them through ``s3_server.env`` (a dict to merge into the child's env).
* Proxy variables are ignored for these clients (``proxies={}``).

Usage::

    def test_put(s3_server, s3_bucket):
        s3 = s3_server.client()
        s3.put_object(Bucket=s3_bucket, Key="k", Body=b"v")
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

import pytest

from tests.harness._util import log_tail

ACCESS_KEY = "AKIAOPSKITTEST000001"
SECRET_KEY = "opskit-test-secret-key-not-a-real-one"
REGION = "us-east-1"
START_TIMEOUT = 60.0

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_non_loopback(request, **_kwargs):
    """botocore ``before-send`` hook: never let a test request leave the machine."""
    if not is_loopback_url(request.url):
        raise RuntimeError(f"test S3 client refused a non-loopback request: {request.url}")


def _scrubbed_env() -> dict:
    """os.environ without AWS/moto/proxy settings that could steer the server."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("AWS_", "MOTO_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    return env


@dataclass
class S3Server:
    """A running moto server. Attributes are plain values tests may pass on."""

    endpoint_url: str
    host: str
    port: int
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    log_path: str = ""
    pid: int = 0
    _clients: list = field(default_factory=list, repr=False)

    @property
    def env(self) -> dict:
        """Env vars for a *subprocess* that should talk to this server (never set
        them in os.environ). Shared config/credential files are disabled."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def session(self):
        """A boto3 Session with this server's credentials, isolated from
        ~/.aws and AWS_PROFILE."""
        import boto3
        import botocore.session
        try:   # botocore-internal name (sic); if it ever moves, fall back to the two files
            from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES as known
        except ImportError:
            known = {}

        # Blind the session to AWS_* env vars and ~/.aws: only what we pass counts.
        isolated = {name: (None, None, default, conv)
                    for name, (_cfg, _env, default, conv) in known.items()}
        isolated["profile"] = (None, None, None, None)
        isolated["config_file"] = (None, None, os.devnull, None)
        isolated["credentials_file"] = (None, None, os.devnull, None)
        core = botocore.session.Session(session_vars=isolated)
        core.set_credentials(self.access_key, self.secret_key)
        return boto3.session.Session(botocore_session=core, region_name=self.region)

    def client(self, **config):
        """A boto3 S3 client bound to this server (path-style, no proxies,
        loopback only). Extra keyword arguments go into botocore's Config."""
        from botocore.config import Config

        settings = {"s3": {"addressing_style": "path"}, "proxies": {},
                    "retries": {"max_attempts": 2, "mode": "standard"},
                    "connect_timeout": 5, "read_timeout": 30}
        settings.update(config)
        assert is_loopback_url(self.endpoint_url), self.endpoint_url
        s3 = self.session().client("s3", endpoint_url=self.endpoint_url,
                                   aws_access_key_id=self.access_key,
                                   aws_secret_access_key=self.secret_key,
                                   region_name=self.region, config=Config(**settings))
        s3.meta.events.register_first("before-send.*", _refuse_non_loopback)
        return s3

    def make_bucket(self, name: str, object_lock: bool = False) -> str:
        """Create bucket ``name`` (optionally with S3 Object Lock, which also
        enables versioning) and return its name."""
        kwargs = {"Bucket": name}
        if object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        self.client().create_bucket(**kwargs)
        return name

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)




def unique_bucket_name(prefix: str = "opskit-test") -> str:
    """A valid, unique S3 bucket name (lowercase, <= 63 chars)."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _wait_ready(proc: subprocess.Popen, url: str, deadline: float) -> str | None:
    """None once the server answers HTTP; otherwise the reason it is not ready."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    reason = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"moto server exited with code {proc.returncode}"
        try:
            with opener.open(url + "/moto-api/", timeout=2) as resp:
                if resp.status < 500:
                    return None
                reason = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:   # any HTTP answer means it listens
            if exc.code < 500:
                return None
            reason = f"HTTP {exc.code}"
        except OSError as exc:
            reason = str(exc)
        time.sleep(0.1)
    return f"not ready after {START_TIMEOUT:.0f}s ({reason})"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def running_moto():
    """Start a moto S3 server on a free loopback port; yields an ``S3Server``
    (``pid`` set: a test may SIGSTOP it) and stops it afterwards."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"s3_server needs moto[server] and boto3 (pip install -e '.[test]'): {exc}",
                    pytrace=False)
    workdir = tempfile.mkdtemp(prefix="opskit-s3-")
    log_path = os.path.join(workdir, "moto.log")
    last_error = ""
    for _attempt in range(3):           # a port picked free can be taken meanwhile
        port = free_port()
        env = _scrubbed_env()
        env.update({"MOTO_PORT": str(port), "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
                    "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                    "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"})
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=workdir, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        problem = _wait_ready(proc, url, time.monotonic() + START_TIMEOUT)
        if problem is None:
            break
        _stop(proc)
        last_error = problem
        if "already in use" not in log_tail(log_path, 20).lower():
            break
    else:
        problem = last_error
    if problem is not None:
        pytest.fail(f"could not start the moto S3 server: {problem}\n"
                    f"--- {log_path} (tail) ---\n{log_tail(log_path)}", pytrace=False)
    server = S3Server(endpoint_url=url, host="127.0.0.1", port=port, log_path=log_path,
                      pid=proc.pid)
    try:
        yield server
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)     # a stopped server cannot act on SIGTERM
        _stop(proc)
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the whole session (see module doc)."""
    with running_moto() as server:
        yield server


@pytest.fixture
def private_s3_server():
    """A moto server for this test alone, for tests that stop or break it."""
    with running_moto() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """Name of a fresh, empty bucket on ``s3_server`` for this test."""
    return s3_server.make_bucket(unique_bucket_name())
