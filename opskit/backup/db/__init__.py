"""Database backups into the encrypted repository (issue 24, docs/database-backup.md).

settings    the ``backup.databases`` / ``backup.pg`` config sections and connection targets
pgtools     finding pg_dump & co. of the server's major version, running them, their errors
streams     storing a byte stream as a file node, building trees and snapshots
logical     ``backup db run``: per-table COPY in one exported snapshot (kind ``pg-logical``)
restore     ``backup db restore``: a logical snapshot into a database
scratch     a throw-away local cluster for drills
drill       ``backup db drill``: restore, verify row counts and checksums, RTO/RPO (R-BAK-5)
report      the Results of the ``backup db`` commands
"""
