"""Config sections ``backup:`` and ``sites:`` of opskit.yaml: the backup repository
(opskit backup) and its off-site copies (opskit backup replicate / sites / check-site).

opskit.settings assembles the one schema from this and every other domain's
section; every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section, at_most_per_core, defaults, positive

from .db.settings import DATABASES, PG_SECTION

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
    "timeout": Key(float, 30.0, "S3: seconds to wait to connect or for an answer; one retry, "
                                "then the run fails (exit 3).", check=positive, max=3600),
    "rto_minutes": Key(int, None, "Recovery time objective, shown by 'backup sites'.", min=1),
    "rpo_hours": Key(float, None, "Recovery point objective: 'backup sites' flags a site whose "
                                  "newest copy is older.", min=0),
})
SITES_DEFAULT = {"<name>": defaults(SITE_SECTION)}

SITES = MapOf(SITE_SECTION, "Off-site copies of the backup repository, by name "
                            "(opskit backup replicate / sites / check-site)",
              default=SITES_DEFAULT)

RETENTION_SECTION = Section({
    "keep_last": Key(int, 0, "Keep the N newest snapshots.", min=0),
    "keep_hourly": Key(int, 0, "Keep the newest snapshot of each of the last N hours.", min=0),
    "keep_daily": Key(int, 0, "Keep the newest snapshot of each of the last N days.", min=0),
    "keep_weekly": Key(int, 0, "Keep the newest snapshot of each of the last N ISO weeks.",
                       min=0),
    "keep_monthly": Key(int, 0, "Keep the newest snapshot of each of the last N months.",
                        min=0),
    "keep_yearly": Key(int, 0, "Keep the newest snapshot of each of the last N years.", min=0),
    "keep_within": Key(str, None, "Keep every snapshot younger than this (e.g. 14d, 6mo)."),
    "floor_days": Key(float, 30.0, "Never forget a snapshot younger than this many days, "
                                   "whatever the flags.", min=0),
    "timezone": Key(str, None, "Time zone for day/week/month buckets (e.g. Asia/Shanghai). "
                               "Default: the machine's."),
})

DRILL_SECTION = Section({
    "rto_minutes": Key(float, 240.0, "Recovery time objective of the local repository: "
                                     "a full restore must fit in this many minutes.",
                       check=positive),
    "rpo_hours": Key(float, 26.0, "Recovery point objective: the drilled snapshot may be "
                                  "at most this many hours old.", check=positive),
    "sample_pct": Key(float, 10.0, "Share of files a drill restores and verifies when "
                                   "neither --sample nor --all is given.", check=positive),
})

SECTION = Section({
    "repo": Key(str, None, "Repository location. Default <state_dir>/repo."),
    "passphrase_file": Key(str, None, "File holding the repository passphrase (mode 0600). "
                                      "$OPSKIT_PASSPHRASE also works; otherwise you are asked."),
    "paths": Key(list, [], "Paths backed up when 'backup run' is given none.", item_type=str),
    "exclude": Key(list, [], "Glob patterns never backed up (matched against full path and name).",
                   item_type=str),
    # resource settings are bounded (#28 item 2)
    "compression_level": Key(int, 1, "zstd level for new blobs (1 fastest ... 19 smallest).", min=1,
                             max=22),
    "pack_size_mib": Key(int, 16, "Target size of pack files in MiB.", min=1, max=128),
    "chunk_avg_kib": Key(int, 1024, "Average content-defined chunk size in KiB.", min=64,
                         max=8192),
    "workers": Key(int, None, "Worker processes for backup and restore (at most 2 per CPU "
                              "core). Default: the cores this process may use (affinity and "
                              "cgroup CPU quota).", min=1, check=at_most_per_core(2)),
    "lock_stale_minutes": Key(int, 60, "A lock not refreshed for this long is stale.", min=1),
    "retention": RETENTION_SECTION,
    "drill": DRILL_SECTION,
    "databases": DATABASES,
    "pg": PG_SECTION,
})
