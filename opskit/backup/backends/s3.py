"""A repository (or an off-site copy) in an S3 bucket: ``s3://bucket/prefix``.

Any S3-compatible store works (``endpoint_url``). Objects are uploaded whole
with one PUT, so ``put`` is atomic by nature: readers see all or nothing.

Credentials, in order: ``access_key_id`` + ``secret_access_key_file`` from the
site settings; else ``profile`` (a named AWS profile); else boto3's standard
chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``,
~/.aws, instance metadata). ``AWS_ENDPOINT_URL`` is honoured by boto3 when
no ``endpoint_url`` is set.

Object Lock: with ``object_lock_mode`` (COMPLIANCE or GOVERNANCE) and
``object_lock_days``, every object is written with that retention mode and
retain-until = now + days. Deleting a retained object raises ``ObjectLocked``
(a BackendError callers report, e.g. prune keeps the object).

Fork safety: the backup engine forks worker processes that call ``put``.
A boto3 client must never cross a fork, so clients are made lazily and
keyed on ``os.getpid()``; a child builds its own on first use.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import threading
import time
import urllib.parse
from typing import Iterator

from opskit.core.errors import ConfigError

from .base import Backend, BackendError, ObjectNotFound

LOCK_MODES = ("COMPLIANCE", "GOVERNANCE")
DEFAULT_TIMEOUT = 30.0      # seconds; sites.NAME.timeout
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                     "ExpiredToken", "InvalidClientTokenId", "UnrecognizedClientException",
                     "AuthFailure"}
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}


from .base import ObjectLocked  # noqa: E402  (defined once, beside the interface)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix/") (prefix "" at the root)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ConfigError(f"{url!r}: expected s3://BUCKET[/PREFIX]")
    prefix = parts.path.strip("/")
    return parts.netloc, (prefix + "/" if prefix else "")


class S3Backend(Backend):
    def __init__(self, url: str, settings: dict | None = None):
        settings = dict(settings or {})
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.site = settings.get("name")
        self.location = f"site '{self.site}' ({url})" if self.site else url
        self.endpoint_url = settings.get("endpoint_url") or None
        self.region = settings.get("region") or None
        self.profile = settings.get("profile") or None
        self.access_key_id = settings.get("access_key_id") or None
        self.secret_file = settings.get("secret_access_key_file") or None
        self.max_connections = int(settings.get("max_connections") or 32)
        # sites.NAME.timeout bounds both the connection and each answer; with one
        # retry a stalled server fails a run in about twice that (issue 27)
        self.timeout = float(settings.get("timeout") or DEFAULT_TIMEOUT)
        self.connect_timeout = min(float(settings.get("connect_timeout") or 10), self.timeout)
        self.max_attempts = int(settings.get("max_attempts") or 2)
        mode = settings.get("object_lock_mode")
        self.lock_mode = mode.upper() if isinstance(mode, str) and mode else None
        self.lock_days = settings.get("object_lock_days")
        if self.lock_mode and self.lock_mode not in LOCK_MODES:
            raise ConfigError(f"{self.location}: object_lock_mode must be COMPLIANCE or "
                              f"GOVERNANCE, got {mode!r}")
        if self.lock_mode and not self.lock_days:
            raise ConfigError(f"{self.location}: object_lock_mode {self.lock_mode} needs "
                              "object_lock_days (the retention period)")
        if self.access_key_id and not self.secret_file:
            raise ConfigError(f"{self.location}: access_key_id is set but "
                              "secret_access_key_file is not")
        self.page_size = 1000            # list_objects_v2 page (tests make it small)
        self._clients: dict[int, object] = {}
        self._lock = threading.Lock()

    # --- the client, one per process --------------------------------------------------
    def _secret(self) -> str:
        path = os.path.expanduser(self.secret_file)
        try:
            with open(path, encoding="utf-8") as fh:
                secret = fh.readline().strip()
        except OSError as exc:
            raise ConfigError(f"{self.location}: cannot read secret_access_key_file {path}: "
                              f"{exc.strerror}") from None
        if not secret:
            raise ConfigError(f"{self.location}: secret_access_key_file {path} is empty")
        return secret

    def _client(self):
        pid = os.getpid()
        client = self._clients.get(pid)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(pid)
            if client is None:
                if len(self._clients) and pid not in self._clients:
                    self._clients = {}      # inherited from a parent: never reuse
                client = self._clients[pid] = self._make_client()
        return client

    def _make_client(self):
        import boto3
        import botocore.exceptions
        from botocore.config import Config
        try:
            session = boto3.session.Session(profile_name=self.profile) if self.profile \
                else boto3.session.Session()
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(f"{self.location}: AWS profile {self.profile!r} not found") from None
        kwargs = {}
        if self.access_key_id:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self._secret()
        config = Config(max_pool_connections=self.max_connections,
                        connect_timeout=self.connect_timeout, read_timeout=self.timeout,
                        # total_max_attempts counts the first try; botocore's "max_attempts"
                        # counts retries only (3 meant 4 tries of 60 s: 243 s on a stall)
                        retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
                        # Content-MD5 (a signed header) already protects each body, so
                        # skip SigV4's extra SHA-256 pass over it, even on plain http
                        s3={"addressing_style": "path" if self.endpoint_url else "auto",
                            "payload_signing_enabled": False},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        return session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                              config=config, **kwargs)

    def _key(self, name: str) -> str:
        parts = name.split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise BackendError(f"{self.location}: refusing object name {name!r}")
        return self.prefix + name

    # --- errors ---------------------------------------------------------------------------
    def _error(self, exc: BaseException, name: str | None = None,
               started: float | None = None) -> BackendError:
        """One clear line naming the site (and object) for any boto/botocore failure;
        ``started``: when the call began, so a timeout says how long it waited."""
        import botocore.exceptions as bex
        what = f"{self.location}" + (f": {name}" if name else "")
        if isinstance(exc, (bex.ConnectTimeoutError, bex.ReadTimeoutError)):
            waited = f" for {time.monotonic() - started:.1f} s" if started is not None else ""
            return BackendError(f"{what}: no answer from the S3 endpoint "
                                f"({self.endpoint_url or 'AWS'}){waited} ({self.max_attempts} "
                                f"attempts, timeout {self.timeout:g} s each)")
        if isinstance(exc, bex.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            msg = err.get("Message") or code
            if code in _NOT_FOUND_CODES:
                return ObjectNotFound(f"{what}: object not found")
            if code == "NoSuchBucket":
                return BackendError(f"{self.location}: bucket '{self.bucket}' does not exist")
            if code in _CREDENTIAL_CODES:
                return BackendError(f"{self.location}: the S3 server rejected the credentials "
                                    f"({code})")
            if code in ("AccessDenied", "403"):
                return BackendError(f"{what}: access denied by the S3 server")
            return BackendError(f"{what}: S3 error {code}: {msg}")
        if isinstance(exc, bex.NoCredentialsError):
            return BackendError(f"{self.location}: no S3 credentials found (set access_key_id "
                                "and secret_access_key_file, a profile, or AWS_* variables)")
        if isinstance(exc, (bex.EndpointConnectionError, bex.ConnectionClosedError)):
            return BackendError(f"{self.location}: cannot reach the S3 endpoint "
                                f"({self.endpoint_url or 'AWS'}): {type(exc).__name__}")
        if isinstance(exc, bex.BotoCoreError):
            return BackendError(f"{what}: {exc}")
        return BackendError(f"{what}: {type(exc).__name__}: {exc}")

    def _call(self, func, name=None, **kwargs):
        import botocore.exceptions as bex
        started = time.monotonic()
        try:
            return func(**kwargs)
        except (bex.BotoCoreError, bex.ClientError, OSError) as exc:
            raise self._error(exc, name, started) from None

    # --- the interface --------------------------------------------------------------------
    def put(self, name: str, data: bytes | memoryview) -> None:
        self.put_verified(name, data)

    def prepare_put(self, data: bytes | memoryview) -> bytes:
        """The MD5 ``put_verified`` sends, computed ahead of the upload (a
        replicator hashes its first objects while the client is still starting)."""
        return hashlib.md5(data).digest()

    def put_verified(self, name: str, data: bytes | memoryview,
                     prepared: bytes | None = None) -> bool:
        """Upload; True when the server's ETag proves it stored exactly these bytes.

        The server checks the body against Content-MD5 before storing it; a
        single-part ETag is the MD5 of what it stored, so comparing it covers the
        way back too, with no extra request. Stores whose ETag is not a plain MD5
        (SSE-KMS, some S3-compatibles) give False: the caller checks the size."""
        body = bytes(data)
        digest = prepared or hashlib.md5(body).digest()
        kwargs = {"Bucket": self.bucket, "Key": self._key(name), "Body": body,
                  "ContentMD5": base64.b64encode(digest).decode()}
        if self.lock_mode:
            kwargs["ObjectLockMode"] = self.lock_mode
            kwargs["ObjectLockRetainUntilDate"] = self.retain_until()
        resp = self._call(self._client().put_object, name, **kwargs)
        etag = str((resp or {}).get("ETag", "")).strip('"').lower()
        if len(etag) != 32 or any(c not in "0123456789abcdef" for c in etag):
            return False
        if etag != digest.hex():
            raise BackendError(f"{self.location}: {name}: stored object's ETag {etag} is not the MD5 "
                               f"of what was sent ({digest.hex()})")
        return True

    def retain_until(self) -> dt.datetime:
        return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=float(self.lock_days))
                ).replace(microsecond=0)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        kwargs = {"Bucket": self.bucket, "Key": self._key(name)}
        if length is not None:
            if length <= 0:
                return b""
            kwargs["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            kwargs["Range"] = f"bytes={offset}-"
        import botocore.exceptions as bex
        started = time.monotonic()
        try:
            resp = self._client().get_object(**kwargs)
            return resp["Body"].read()
        except bex.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""        # past the end, like read()
            raise self._error(exc, name) from None
        except (bex.BotoCoreError, OSError) as exc:
            raise self._error(exc, name, started) from None

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        paginator = self._client().get_paginator("list_objects_v2")
        full = self.prefix + prefix
        import botocore.exceptions as bex
        started = time.monotonic()
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full,
                                           PaginationConfig={"PageSize": self.page_size}):
                for obj in page.get("Contents", ()):
                    name = obj["Key"][len(self.prefix):]
                    if name.rsplit("/", 1)[-1].startswith("tmp-"):
                        continue
                    yield name, int(obj["Size"])
        except (bex.BotoCoreError, bex.ClientError, OSError) as exc:
            raise self._error(exc, full[len(self.prefix):] or None, started) from None

    def delete(self, name: str) -> None:
        """Remove the object for good. In a versioned (Object Lock) bucket every
        version is deleted; a retained version raises ``ObjectLocked``."""
        key = self._key(name)
        client = self._client()
        versions = []
        if self.lock_mode or self._versioned():
            resp = self._call(client.list_object_versions, name, Bucket=self.bucket, Prefix=key)
            versions = [v["VersionId"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])
                        if v["Key"] == key]
        if not versions:
            self._call(client.delete_object, name, Bucket=self.bucket, Key=key)
            return
        import botocore.exceptions as bex
        for vid in versions:
            try:
                client.delete_object(Bucket=self.bucket, Key=key, VersionId=vid)
            except bex.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("AccessDenied", "403", "ObjectLocked", "InvalidRequest"):
                    until = self.retention(name)[1]
                    raise ObjectLocked(f"{self.location}: {name} is under Object Lock retention"
                                       + (f" until {until}" if until else "") + "; kept",
                                       name=name, retain_until=until) from None
                raise self._error(exc, name) from None
            except (bex.BotoCoreError, OSError) as exc:
                raise self._error(exc, name) from None

    def _versioned(self) -> bool:
        if not hasattr(self, "_versioning"):
            try:
                resp = self._client().get_bucket_versioning(Bucket=self.bucket)
                self._versioning = resp.get("Status") in ("Enabled", "Suspended")
            except Exception:  # noqa: BLE001 - not every S3-compatible store answers this
                self._versioning = False
        return self._versioning

    def _head(self, name: str) -> dict:
        try:
            return self._call(self._client().head_object, name, Bucket=self.bucket,
                              Key=self._key(name))
        except ObjectNotFound:
            # HEAD answers carry no error code: tell "no bucket" from "no object"
            if not getattr(self, "_bucket_ok", False):
                self.check_bucket()
            raise
        except BackendError:
            self.check_bucket()        # a precise line for credentials / bucket problems
            raise

    def exists(self, name: str) -> bool:
        try:
            self._head(name)
            return True
        except ObjectNotFound:
            return False

    def size(self, name: str) -> int:
        return int(self._head(name)["ContentLength"])

    def retention(self, name: str) -> tuple[str | None, str | None]:
        """(mode, retain-until ISO time) of the current version; (None, None) when unlocked."""
        try:
            head = self._head(name)
        except BackendError:
            return None, None
        until = head.get("ObjectLockRetainUntilDate")
        return head.get("ObjectLockMode"), (until.isoformat() if until is not None else None)

    def check_bucket(self) -> None:
        """Fail with one clear line when the bucket is missing or the credentials are wrong."""
        resp = self._call(self._client().list_objects_v2, None, Bucket=self.bucket, MaxKeys=1)
        self._bucket_ok = resp is not None

    def close(self) -> None:
        with self._lock:
            client = self._clients.pop(os.getpid(), None)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass
