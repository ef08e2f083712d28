"""The one opskit configuration schema, its embedded defaults, and lookup.

Lookup order: ``--config FILE``, ``$OPSKIT_CONFIG``, ``/etc/opskit/opskit.yaml``,
then embedded defaults alone, so ``opskit backup run DIR`` works on a fresh
machine with no file at all. ``configs/opskit.yaml`` documents every key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .schema import Key, MapOf, Section, at_most_per_core, defaults, positive, validate
from .yamlfile import YamlDoc, dotted, load_yaml
from opskit.accounts.settings import SECTION as ACCOUNTS_SECTION
from opskit.corrections.settings import SECTION as CORRECTIONS_SECTION
from opskit.perms.settings import SECTION as PERMS_SECTION
from opskit.policy.settings import SECTION as POLICY_SECTION
from opskit.schedule.settings import SECTION as SCHEDULE_SECTION

SYSTEM_CONFIG = "/etc/opskit/opskit.yaml"


# Off-site replication targets (docs/replication.md). The example config shows
# one template entry named "<name>"; entries whose name starts with "<" are
# templates and are never used as sites.
SITE_SECTION = Section({
    "url": Key(str, None, "s3://BUCKET/PREFIX or sftp://USER@HOST:PORT/PATH."),
    "endpoint_url": Key(str, None, "S3: endpoint of an S3-compatible store. Default: AWS "
                                   "(or $AWS_ENDPOINT_URL)."),
    "region": Key(str, None, "S3: region. Default: from the AWS environment/profile."),
    "access_key_id": Key(str, None, "S3: access key id. Default: the standard AWS chain."),
    "secret_access_key_file": Key(str, None, "S3: file holding the secret access key (0600)."),
    "profile": Key(str, None, "S3: named AWS profile to use instead of keys."),
    "object_lock_mode": Key(str, None, "S3: write objects with Object Lock retention: "
                                       "COMPLIANCE or GOVERNANCE. Default: none.",
                            choices=("COMPLIANCE", "GOVERNANCE")),
    "object_lock_days": Key(int, None, "S3: retention period in days (with object_lock_mode).",
                            min=1),
    "key_file": Key(str, None, "SFTP: private key for login. Default: ~/.ssh keys and agent."),
    "known_hosts": Key(str, None, "SFTP: known_hosts file. Default: ssh.known_hosts, "
                                  "else ~/.ssh/known_hosts."),
    "workers": Key(int, 8, "Parallel uploads.", min=1, max=64),
    "rto_minutes": Key(int, None, "Recovery time objective, shown by 'backup sites'.", min=1),
    "rpo_hours": Key(float, None, "Recovery point objective: 'backup sites' flags a site whose "
                                  "newest copy is older.", min=0),
})
SITES_DEFAULT = {"<name>": defaults(SITE_SECTION)}

SCHEMA = Section({
    "operator": Key(str, None, "Name recorded as operator in the audit log, besides the OS user."),
    "state_dir": Key(str, None, "State directory; $OPSKIT_HOME wins over it. Default "
                                "~/.local/share/opskit, or /var/lib/opskit when root."),
    "inventory": Key(str, None, "Path of the host inventory (see configs/inventory.yaml). Default: "
                                "inventory.yaml beside this config file, else only 'localhost'."),
    "audit": Section({
        "path": Key(str, None, "Audit log file. Default <state_dir>/audit/audit.log."),
    }),
    "ssh": Section({
        "known_hosts": Key(str, None, "known_hosts file used to verify host keys. Default ~/.ssh/known_hosts."),
        "host_key_policy": Key(str, "reject", "What to do with an unknown host key: 'reject' (default) or "
                                              "'accept-new' (record it, like ssh's accept-new).",
                               choices=("reject", "accept-new"), nullable=False),
        "connect_timeout": Key(float, 10.0, "Seconds to wait for an SSH connection.", check=positive,
                               max=3600),
        "command_timeout": Key(float, 120.0, "Default seconds a remote command may run.", check=positive,
                               max=86400),
        "concurrency": Key(int, 16, "Hosts contacted at once when fanning out.", min=1, max=256),
    }),
    "backup": Section({
        "repo": Key(str, None, "Repository location. Default <state_dir>/repo."),
        "passphrase_file": Key(str, None, "File holding the repository passphrase (mode 0600). "
                                          "$OPSKIT_PASSPHRASE also works; otherwise you are asked."),
        "paths": Key(list, [], "Paths backed up when 'backup run' is given none.", item_type=str),
        "exclude": Key(list, [], "Glob patterns never backed up (matched against full path and name).",
                       item_type=str),
        "compression_level": Key(int, 1, "zstd level for new blobs (1 fastest ... 19 smallest).", min=1,
                                 max=22),
        "pack_size_mib": Key(int, 16, "Target size of pack files in MiB.", min=1, max=128),
        "chunk_avg_kib": Key(int, 1024, "Average content-defined chunk size in KiB.", min=64,
                             max=8192),
        "workers": Key(int, None, "Worker processes for backup and restore (at most 2 per CPU "
                                  "core). Default: CPU count.", min=1, check=at_most_per_core(2)),
        "lock_stale_minutes": Key(int, 60, "A lock not refreshed for this long is stale.", min=1),
        "retention": Section({
            "keep_last": Key(int, 0, "Keep the N newest snapshots.", min=0),
            "keep_hourly": Key(int, 0, "Keep the newest snapshot of each of the last N hours.", min=0),
            "keep_daily": Key(int, 0, "Keep the newest snapshot of each of the last N days.", min=0),
            "keep_weekly": Key(int, 0, "Keep the newest snapshot of each of the last N ISO weeks.",
                               min=0),
            "keep_monthly": Key(int, 0, "Keep the newest snapshot of each of the last N months.",
                                min=0),
            "keep_yearly": Key(int, 0, "Keep the newest snapshot of each of the last N years.", min=0),
            "keep_within": Key(str, None, "Keep every snapshot younger than this (e.g. 14d, 6m)."),
            "floor_days": Key(float, 30.0, "Never forget a snapshot younger than this many days, "
                                           "whatever the flags.", min=0),
            "timezone": Key(str, None, "Time zone for day/week/month buckets (e.g. Asia/Shanghai). "
                                       "Default: the machine's."),
        }),
        "drill": Section({
            "rto_minutes": Key(float, 240.0, "Recovery time objective of the local repository: "
                                             "a full restore must fit in this many minutes.",
                               check=positive),
            "rpo_hours": Key(float, 26.0, "Recovery point objective: the drilled snapshot may be "
                                          "at most this many hours old.", check=positive),
            "sample_pct": Key(float, 10.0, "Share of files a drill restores and verifies when "
                                           "neither --sample nor --all is given.", check=positive),
        }),
    }),
    "sites": MapOf(SITE_SECTION, "Off-site copies of the backup repository, by name "
                                 "(opskit backup replicate / sites / check-site)",
                   default=SITES_DEFAULT),
    "policy": POLICY_SECTION,
    "corrections": CORRECTIONS_SECTION,
    "accounts": ACCOUNTS_SECTION,
    "perms": PERMS_SECTION,
    "schedule": SCHEDULE_SECTION,
})


@dataclass
class Config:
    """Validated settings with embedded defaults filled in."""

    data: dict
    source: str | None = None          # file the settings came from; None = defaults only
    doc: YamlDoc | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, dotted_key: str, default: Any = None) -> Any:
        """``config.get('backup.repo')``; returns ``default`` when unset (None)."""
        node: Any = self.data
        for part in dotted_key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return default if node is None else node

    def error(self, dotted_key: str, message: str, hint: str | None = None) -> ConfigError:
        """ConfigError for a semantic problem found after loading, naming the key's line."""
        if self.doc is None:
            return ConfigError(message, key=dotted_key, hint=hint)
        return self.doc.error(tuple(dotted_key.split(".")), message, hint)

    def relative_path(self, value: str) -> str:
        """Resolve a path setting relative to the config file's directory."""
        value = os.path.expanduser(value)
        if os.path.isabs(value) or not self.source:
            return value
        return os.path.join(os.path.dirname(os.path.abspath(self.source)), value)


def find_config_file(explicit: str | None) -> str | None:
    """The config file to use, by the documented lookup order, or None for defaults."""
    if explicit:
        return explicit
    env = os.environ.get("OPSKIT_CONFIG")
    if env:
        return env
    if os.path.exists(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    return None


def load_config(explicit: str | None = None) -> Config:
    """Load and validate the config; a missing explicitly named file is an error."""
    path = find_config_file(explicit)
    if path is None:
        return Config(defaults(SCHEMA))
    doc = load_yaml(path)
    if doc.data is None:          # an empty file means "all defaults"
        return Config(defaults(SCHEMA), source=path, doc=doc)
    data = validate(SCHEMA, doc.data, doc)
    return Config(data, source=path, doc=doc)


__all__ = ["SCHEMA", "Config", "load_config", "find_config_file", "dotted"]
