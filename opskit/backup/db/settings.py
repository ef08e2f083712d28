"""Config sections ``backup.databases`` and ``backup.pg`` (docs/database-backup.md).

``backup.databases`` has the shape of ``perms.databases`` (the same keys mean
the same thing) plus ``sslmode`` and the drill's SQL assertions. The password
only ever comes from ``password_file`` (0600) or libpq's own sources; it is
handed to pg_dump & co. in their environment, never on a command line.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from opskit.core.errors import UsageError
from opskit.core.optional import require
from opskit.core.schema import Key, MapOf, Section, defaults
from opskit.perms.postgres import DatabaseSpec
from opskit.perms.settings import DATABASE_SECTION as _PERMS_DATABASE

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

DATABASE_SECTION = Section({
    **_PERMS_DATABASE.keys,
    "sslmode": Key(str, None, "libpq sslmode (disable ... verify-full). Default: libpq's "
                              "(prefer).", choices=SSLMODES),
    "assertions": Key(list, [], "SQL queries a database drill runs on the restored copy; each "
                                "must return true.", item_type=str),
    "jobs": Key(int, None, "Tables 'backup db run' dumps at once, each in its own session "
                           "sharing one snapshot. Default: min(4, cores).", min=1, max=64),
    "delta": Key(bool, True, "Store a changed table's new chunks as deltas against the "
                             "previous backup's (rows changed all over a table still cost "
                             "little); false stores them in full."),
})
DATABASES_DEFAULT = {"<name>": defaults(DATABASE_SECTION)}

DATABASES = MapOf(DATABASE_SECTION, "PostgreSQL databases 'backup db run' dumps, by name "
                                    "(names starting with '<' are templates)",
                  default=DATABASES_DEFAULT)

PG_SECTION = Section({
    "bindir": Key(str, None, "Directory of pg_dump, pg_restore, initdb ... Default: "
                             "/usr/lib/postgresql/<server major>/bin, else PATH."),
    "drill_os_user": Key(str, "postgres", "OS user owning a drill's scratch cluster when "
                                          "opskit runs as root (initdb refuses root)."),
    "cluster": Key(str, "main", "Name of the PostgreSQL cluster whose WAL 'backup wal-push' "
                                "archives and 'db basebackup' backs up (wal/<cluster>/ in "
                                "the repository)."),
    "base_source": Key(str, "auto", "Where 'db basebackup' reads the cluster: datadir (its "
                                    "files, between pg_backup_start and pg_backup_stop: "
                                    "opskit on the database host as root or the server's "
                                    "user), pg_basebackup (a replication connection, from "
                                    "anywhere), or auto: datadir when this host can read it.",
                       choices=("auto", "datadir", "pg_basebackup")),
    "checkpoint": Key(str, "spread", "Checkpoint a base backup starts with: spread (gentle) "
                                     "or fast (at once, an I/O burst).",
                      choices=("spread", "fast")),
    "wal_metrics": Key(bool, True, "'backup wal-push' writes the Prometheus gauge "
                                   "opskit_wal_archive_last_success_timestamp into "
                                   "schedule.metrics_dir."),
})


@dataclass
class DatabaseTarget(DatabaseSpec):
    """One ``backup.databases`` entry, resolved (paths relative to the config):
    a ``perms.databases`` entry plus sslmode, drill assertions, dump jobs and
    whether changed tables are stored as deltas."""

    sslmode: str | None = None
    assertions: list = field(default_factory=list)
    jobs: int | None = None
    delta: bool = True
    section = "backup.databases"

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq connection string without the password (``dbname`` overrides)."""
        make_conninfo = require("psycopg.conninfo", extra="postgres").make_conninfo
        extra = {k: v for k, v in (("sslmode", self.sslmode), ("dbname", dbname)) if v}
        return make_conninfo(super().conninfo(), **extra)

    @property
    def database(self) -> str:
        """The database name the entry connects to."""
        conninfo_to_dict = require("psycopg.conninfo", extra="postgres").conninfo_to_dict
        return str(conninfo_to_dict(self.conninfo()).get("dbname") or self.name)

    def env(self) -> dict:
        """Environment for libpq programs: the password travels here, not in argv."""
        env = {"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "opskit-backup"}
        pw = self.password()
        if pw is not None:
            env["PGPASSWORD"] = pw
        if self.sslmode:
            env["PGSSLMODE"] = self.sslmode
        return env


def target_from_dsn(name: str, dsn: str, password_file: str | None = None) -> DatabaseTarget:
    """A target given on the command line (``--target-dsn``)."""
    return DatabaseTarget(name, dsn=dsn, password_file=password_file)


def database_targets(config, names: list[str] | None = None) -> list[DatabaseTarget]:
    """Configured databases (templates '<...>' skipped); ``names`` picks some
    (UsageError naming the known ones when one is unknown)."""
    configured = {}
    for name, entry in (config.get("backup.databases") or {}).items():
        if name.startswith("<"):
            continue
        pw = entry.get("password_file")
        configured[name] = DatabaseTarget(
            name, entry.get("dsn"), entry.get("host"), entry.get("port"), entry.get("user"),
            entry.get("dbname"), config.relative_path(pw) if pw else None,
            entry.get("sslmode"), list(entry.get("assertions") or []), entry.get("jobs"),
            entry.get("delta", True) is not False)
    if not names:
        return list(configured.values())
    missing = [n for n in names if n not in configured]
    if missing:
        raise UsageError(f"unknown database {', '.join(repr(m) for m in missing)}; configured "
                         f"under backup.databases: {', '.join(sorted(configured)) or '(none)'}")
    return [configured[n] for n in names]
