"""Can a scheduled job run with this configuration? (issue #22: cron-ready)

A job that cannot work — a backup with no ``backup.paths``, a replication
with no site, a drill from a site that is not configured, any backup job
without a passphrase that cron could read — would fail every night and mail
the admin. ``schedule cron`` leaves such a job out, with the reason as a
comment and a warning, instead of installing a line that fails.
"""
from __future__ import annotations

import os

from opskit.core.signing import KEY_ENV, signing_key_path
from opskit.core.state import default_state_dir

from .jobs import Job

PASSPHRASE_ENVS = ("OPSKIT_PASSPHRASE_FILE", "OPSKIT_PASSPHRASE")


def _sites(config) -> list[str]:
    return [name for name in (config.get("sites") or {}) if not name.startswith("<")]


def _databases(config) -> list[str]:
    return [name for name in (config.get("backup.databases") or {}) if not name.startswith("<")]


def _option(command: list[str], name: str) -> str | None:
    if name in command[:-1]:
        return command[command.index(name) + 1]
    for word in command:
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


# options of the backup commands that take a value (the rest are flags)
_VALUED = {"--tag", "--exclude", "--repo", "--passphrase-file", "--site", "--to", "--sample",
           "--snapshot", "--target", "--target-host", "--seed", "--db", "--name",
           "--stdin-from-command", "--target-dsn", "--target-password-file", "--cluster"}


def _positionals(words: list[str]) -> list[str]:
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in _VALUED:
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    return out


def _backup_blockers(command: list[str], config, env: dict[str, str]) -> list[str]:
    out = []
    action = command[1] if len(command) > 1 else ""
    if action == "run" and not _positionals(command[2:]) and not config.get("backup.paths"):
        out.append("backup.paths is empty: list what to back up in the config")
    if action == "replicate" and not _sites(config) and not _option(command, "--to"):
        out.append("no off-site copy configured: add one under 'sites:' (R-BAK-3)")
    if action == "db" and not _databases(config) and "--stdin-from-command" not in command:
        out.append("no database configured: add one under backup.databases "
                   "(docs/database-backup.md)")
    if command[1:3] == ["db", "basebackup"] and len(_databases(config)) > 1 and \
            not _option(command, "--db"):
        out.append("several databases in backup.databases: add --db NAME (the one to connect "
                   "to the cluster through) to the job")
    site = _option(command, "--site")
    if action == "drill" and site and site != "local" and site not in _sites(config):
        out.append(f"no site '{site}' in the config: add sites.{site} or change the job's --site")
    if action in ("run", "replicate", "drill", "forget", "prune", "check", "db") and \
            not config.get("backup.passphrase_file") and \
            not _option(command, "--passphrase-file") and \
            not env.get("OPSKIT_PASSPHRASE_FILE"):
        out.append("no passphrase cron can read: set OPSKIT_PASSPHRASE_FILE (a 0600 file) "
                   "before 'schedule cron', or backup.passphrase_file in the config")
    return out


def _perms_blockers(command: list[str], config) -> list[str]:
    if command[1:2] == ["report"] and not config.locate("accounts.roles", "roles.yaml"):
        return ["no roles.yaml: set accounts.roles (configs/roles.yaml is an example) — the "
                "report compares actual rights with the declared roles (R-ACC-4)"]
    return []


def _audit_blockers(command: list[str], config, env: dict[str, str]) -> list[str]:
    """A signed checkpoint needs the operator's key where cron will look (R-AUD-3)."""
    if command[1:2] != ["checkpoint"] or "--sign" not in command:
        return []
    state_dir = env.get("OPSKIT_HOME") or config.get("state_dir") or default_state_dir()
    path = signing_key_path(config, os.path.abspath(os.path.expanduser(state_dir)),
                            _option(command, "--key"), env)
    if os.path.exists(path):
        return []
    return [f"no signing key at {path}: create one with 'opskit correct keygen' (or set "
            "corrections.key_file) to sign audit checkpoints"]


def blockers(job: Job, config, env: dict[str, str] | None = None) -> list[str]:
    """Why ``job`` would fail under cron with ``config`` and the carried ``env``
    (empty when it can run)."""
    env = os.environ if env is None else env
    if job.command and job.command[0] == "backup":
        return _backup_blockers(job.command, config, env)
    if job.command and job.command[0] == "perms":
        return _perms_blockers(job.command, config)
    if job.command and job.command[0] == "audit":
        return _audit_blockers(job.command, config, env)
    return []


def carried_environment(environ=None) -> dict[str, str]:
    """The variables a cron line or systemd unit must carry so the job sees what
    the admin's shell saw: the state dir, the config, the passphrase *file* and the
    signing key *file*.
    A passphrase itself (OPSKIT_PASSPHRASE) is never written into a crontab."""
    environ = os.environ if environ is None else environ
    keep = ("OPSKIT_HOME", "OPSKIT_CONFIG", "OPSKIT_PASSPHRASE_FILE", KEY_ENV)
    out = {k: environ[k] for k in keep if environ.get(k)}
    for name in ("OPSKIT_PASSPHRASE_FILE", KEY_ENV):     # paths, never the secret itself
        if name in out:
            out[name] = os.path.abspath(out[name])
    return out
