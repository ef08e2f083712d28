"""Shared foundations: config, errors, audit log, output, state directory, locks."""
