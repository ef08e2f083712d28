"""A host's sudoers tree as sudo reads it: ``parse`` (files, includes, statements, the
parsed tree; ``load_tree`` reads one from a Host) and ``evaluate`` (what one user may run,
with sudo's own semantics, differential-tested against ``sudo -l -U``). A host fact used
by both permission reviews (opskit.perms) and the freeze (opskit.accounts)."""
