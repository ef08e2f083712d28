"""Config section ``perms:`` of opskit.yaml: Permission snapshots, diffs and auditor reports (opskit perms).

opskit.settings assembles the one schema from this and the other sections;
every key here must also be documented in configs/opskit.yaml and
docs/configuration.md (a test checks).
"""
from opskit.core.schema import Key, MapOf, Section, defaults, positive  # noqa: F401


def _port(value):
    return None if 1 <= value <= 65535 else f"expected a TCP port (1-65535), got {value!r}"


# One PostgreSQL database to collect roles and grants from (docs/perms.md).
# Either ``dsn`` (a libpq URL or key=value string, without a password) or the
# separate keys; the password always comes from ``password_file`` (0600) or
# the usual libpq sources ($PGPASSWORD, ~/.pgpass), never from this file.
DATABASE_SECTION = Section({
    "dsn": Key(str, None, "libpq connection string or postgresql:// URL (no password in it)."),
    "host": Key(str, None, "Server host name, IP or socket directory. Default: libpq's."),
    "port": Key(int, None, "Server port. Default: libpq's (5432).", check=_port),
    "user": Key(str, None, "Role to connect as; a superuser (or a member of pg_read_all_settings "
                           "and pg_read_all_stats) sees everything. Default: libpq's."),
    "dbname": Key(str, None, "Database name. Default: the entry's name."),
    "password_file": Key(str, None, "File holding the password, first line (mode 0600)."),
})
DATABASES_DEFAULT = {"<name>": defaults(DATABASE_SECTION)}

GENERIC_DEFAULT = ["admin", "administrator", "test", "test[0-9]*", "tmp", "temp", "guest",
                   "shared", "share", "ops", "oper", "operator", "user", "user[0-9]*", "demo",
                   "support", "public"]

SECTION = Section({
    "databases": MapOf(DATABASE_SECTION, "PostgreSQL databases 'perms snapshot' collects from, "
                                         "by name (names starting with '<' are templates)",
                       default=DATABASES_DEFAULT),
    "dormant_days": Key(int, 90, "An account with no login for this many days is dormant.",
                        min=1),
    "keep_snapshots": Key(int, 100, "At least this many newest snapshots are kept in "
                                    "<state_dir>/perms/snapshots, whatever their age.", min=1),
    "keep_days": Key(float, 400.0, "Snapshots younger than this many days are kept (the "
                                   "evidence pack's audit window); older ones beyond "
                                   "keep_snapshots are deleted.", check=positive),
    "generic_names": Key(list, GENERIC_DEFAULT, "Shell-style patterns of generic or shared "
                                                "account names (Linux and PostgreSQL).",
                         item_type=str),
    "min_uid": Key(int, 1000, "Linux accounts below this uid are system accounts and ignored.",
                   min=0),
    "ignore_accounts": Key(list, ["nobody"], "Linux or PostgreSQL account names never reported "
                                             "as unknown, generic or dormant.", item_type=str),
    "ignore_groups": Key(list, [], "Supplementary Linux groups never reported as beyond a role "
                                   "(e.g. 'users').", item_type=str),
    "host_timeout": Key(float, 120.0, "Seconds one host may take to be collected before it is "
                                      "reported as 'timeout'.", check=positive),
})
