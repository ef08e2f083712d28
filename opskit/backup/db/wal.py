"""The WAL archive in the repository: ``backup wal-push`` / ``backup wal-fetch``.

PostgreSQL's ``archive_command`` hands over one file at a time (a 16 MiB
segment, a ``.history`` or ``.backup`` file) and must hear "done" only when
the file is durable. A snapshot per segment would make every ``snapshots``
listing read thousands of objects, so WAL lives in its own namespace,
``wal/<cluster>/<name>`` (docs/repository-format.md, WAL archive): one object
per file, encrypted like pack blobs (data key, or sealed to the repository's
public key by a write-only host), written whole under a temporary name and
renamed, fsynced before ``push`` returns.

Stored object::

    b"OPW1" || keyed id (32: BLAKE3(id_key, plaintext)) || envelope

The keyed id lets a retry compare contents without decrypting (a write-only
host can), and leaks nothing without the key. Same name + same content is
success (PostgreSQL retries after a crash); same name + other content is
refused (two clusters archiving into one namespace, or a damaged file).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from opskit.core.errors import EXIT_FINDINGS, OperationalError
from opskit.core.failpoints import failpoint

from .. import crypto
from ..backends import ObjectNotFound
from ..repository import CorruptObject, Repository

MAGIC = b"OPW1"
HEAD = len(MAGIC) + 32
PREFIX = "wal"

SEGMENT = re.compile(r"^[0-9A-F]{24}$")
HISTORY = re.compile(r"^[0-9A-F]{8}\.history$")
BACKUP = re.compile(r"^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$")
PARTIAL = re.compile(r"^[0-9A-F]{24}\.partial$")
CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")


class WalError(OperationalError):
    """A WAL file could not be stored or fetched (exit 3: PostgreSQL retries)."""


class WalConflict(WalError):
    """The archive already holds this name with other content (exit 1: a finding)."""

    exit_code = EXIT_FINDINGS


def valid_name(name: str) -> bool:
    """A file name PostgreSQL archives: segment, timeline history, backup history, partial."""
    return bool(SEGMENT.match(name) or HISTORY.match(name) or BACKUP.match(name)
                or PARTIAL.match(name))


def check_cluster(cluster: str) -> str:
    """The cluster name as an object-name component (no '/', no dots only)."""
    if not CLUSTER.match(cluster):
        raise WalError(f"cluster name {cluster!r}: use letters, digits, '_', '-', '.'")
    return cluster


@dataclass
class PushResult:
    name: str
    size: int
    stored: bool          # False: the same content was already archived


class WalArchive:
    """The WAL files of one cluster (``wal/<cluster>/``) in an open repository."""

    def __init__(self, repo: Repository, cluster: str):
        self.repo = repo
        self.cluster = check_cluster(cluster)
        self.folder = f"{PREFIX}/{cluster}"

    def object_name(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def _aad(self, name: str) -> bytes:
        # binds the ciphertext to its name: a segment cannot be passed off as another
        return f"opskit:wal:{self.cluster}/{name}".encode()

    def encode(self, name: str, plaintext: bytes) -> bytes:
        """The stored form of one WAL file (module doc)."""
        keyed = crypto.blob_id(self.repo.keys.id_key, plaintext)
        level = self.repo.compression_level
        envelope = crypto.encrypt_role(self.repo.keys, "data",
                                       crypto.compress(plaintext, level), self._aad(name))
        return MAGIC + keyed + envelope

    def _stored_id(self, name: str) -> bytes | None:
        """The keyed id of what is archived under ``name``; None when absent."""
        try:
            head = self.repo.backend.get(self.object_name(name), 0, HEAD)
        except ObjectNotFound:
            return None
        if len(head) < HEAD or head[:4] != MAGIC:
            raise CorruptObject(self.object_name(name), "not a WAL archive object (damaged)")
        return head[4:HEAD]

    def push(self, path: str) -> PushResult:
        """Archive the file at ``path``; returns once it is durable in the repository."""
        name = os.path.basename(path)
        if not valid_name(name):
            raise WalError(f"{path}: not a WAL file name PostgreSQL archives")
        try:
            with open(path, "rb") as fh:
                plaintext = fh.read()
        except OSError as exc:
            raise WalError(f"{path}: {exc.strerror}") from None
        keyed = crypto.blob_id(self.repo.keys.id_key, plaintext)
        existing = self._stored_id(name)
        if existing == keyed:
            return PushResult(name, len(plaintext), False)
        if existing is not None:
            raise WalConflict(f"{self.object_name(name)}: already archived with different "
                              f"content; refusing to replace it (another cluster archiving "
                              f"as '{self.cluster}'?)")
        failpoint("wal-push.before-put")
        self.repo.backend.put(self.object_name(name), self.encode(name, plaintext))
        failpoint("wal-push.after-put")
        return PushResult(name, len(plaintext), True)

    def read(self, name: str) -> bytes:
        """The plaintext of an archived file, authenticated and checked against its keyed id."""
        oname = self.object_name(name)
        stored = self.repo.backend.get(oname)
        if len(stored) < HEAD or stored[:4] != MAGIC:
            raise CorruptObject(oname, "not a WAL archive object (damaged)")
        try:
            plain = crypto.decompress(crypto.decrypt_role(self.repo.keys, "data", stored[HEAD:],
                                                          self._aad(name)))
        except crypto.DecryptError as exc:
            raise CorruptObject(oname, f"cannot be decrypted ({exc})") from None
        if crypto.blob_id(self.repo.keys.id_key, plain) != stored[4:HEAD]:
            raise CorruptObject(oname, "content does not match its recorded id")
        return plain

    def fetch(self, name: str, dest: str) -> int | None:
        """Write archived ``name`` to ``dest`` (temp file, fsync, rename); its size,
        or None when the archive has no such file."""
        if not valid_name(name):
            raise WalError(f"{name}: not a WAL file name")
        try:
            plain = self.read(name)
        except ObjectNotFound:
            return None
        tmp = f"{dest}.opskit-tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(plain)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, dest)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise WalError(f"{dest}: {exc.strerror}") from None
        return len(plain)

    def names(self) -> dict[str, int]:
        """Every archived file name with its stored size."""
        return {n.rsplit("/", 1)[-1]: size for n, size in self.repo.backend.list(self.folder + "/")
                if valid_name(n.rsplit("/", 1)[-1])}

    def delete(self, name: str) -> None:
        self.repo.backend.delete(self.object_name(name))


def clusters(repo: Repository) -> list[str]:
    """Cluster names with a WAL archive in the repository."""
    return sorted({n.split("/")[1] for n, _ in repo.backend.list(PREFIX + "/")
                   if n.count("/") >= 2})
