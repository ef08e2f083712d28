"""The ``opskit`` command line. ``main`` is the console entry point.

Commands are thin: parse, call domain code, render its Result. ``main``
turns expected errors into one line on stderr and the documented exit code,
and appends one audit entry for every command that ran (R-DAT-1, R-AUD-3).
"""
from __future__ import annotations

import os
import sys
import traceback

import click

from opskit import __version__
from opskit.core.errors import (EXIT_FINDINGS, EXIT_OPERATIONAL, EXIT_USAGE, IntegrityError,
                                OpskitError)

from .app import App, OpskitGroup

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# group name -> module under opskit.cli; imported only when the group is used,
# so 'opskit backup run' from cron does not pay for every other group's imports
GROUP_MODULES = ("backup", "users", "access", "perms", "policy", "correct", "audit", "hosts",
                 "schedule", "playbook", "evidence", "incident", "event", "error",
                 "approve-op", "archive")


class _RootGroup(OpskitGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(GROUP_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in GROUP_MODULES:
            return None
        import importlib
        return importlib.import_module(f"opskit.cli.{name.replace('-', '_')}").group


@click.group(cls=_RootGroup, context_settings=CONTEXT_SETTINGS)
@click.option("--config", "config_path", metavar="FILE", envvar="OPSKIT_CONFIG",
              help="Config file. Default: $OPSKIT_CONFIG, then /etc/opskit/opskit.yaml, "
                   "then embedded defaults.")
@click.option("--operator", metavar="NAME",
              help="Your name as recorded in the audit log, besides your OS user.")
@click.version_option(__version__, "-V", "--version", prog_name="opskit")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, operator: str | None) -> None:
    """Operations toolkit for medical-insurance system administrators.

    \b
    Encrypted, deduplicated backups with off-site copies and restore drills,
    account provisioning and departure freezes, permission diffs, removable-
    media and network policy checks, and a data-correction ledger -- every
    command recorded in a tamper-evident audit trail.

    \b
    First backup, no config needed:
        export OPSKIT_PASSPHRASE_FILE=~/.opskit-pass   # or answer the prompt
        opskit backup run /srv/data

    \b
    Exit codes: 0 ok | 1 findings | 2 usage/config error | 3 operational failure.
    Shell completion: eval "$(_OPSKIT_COMPLETE=bash_source opskit)" (see docs/cli.md).
    """
    app = ctx.ensure_object(App)
    app.config_path = config_path
    app.operator_override = operator


def _error(message: str, hint: str | None = None) -> None:
    click.echo(f"opskit: error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)


def _write_audit(app: App, exit_code: int, error: str | None) -> int:
    """Append this invocation to the audit log; a failure to do so is itself a failure."""
    if app.command is None or not app.audited:
        return exit_code
    try:
        from opskit.core.audit import AuditLog

        result = "ok" if exit_code == 0 else "findings" if exit_code == 1 else "error"
        AuditLog(app.audit_log_path(fallback=True)).append(
            operator=app.operator,
            host=app.hostname,
            command=app.command,
            arguments=app.arguments,
            result=result,
            exit_code=exit_code,
            summary=error or app.summary,
            details=app.audit_details or None,
        )
    except IntegrityError as exc:
        _error(f"could not write the audit log: {exc.message}")
        # 'audit verify' has just reported this very damage: that is its finding
        # (exit 1), not an operational failure of the verification (#28 item 7)
        return max(exit_code, EXIT_FINDINGS if app.audit_damage_is_finding else EXIT_OPERATIONAL)
    except OpskitError as exc:
        _error(f"could not write the audit log: {exc.message}")
        return max(exit_code, EXIT_OPERATIONAL)
    except OSError as exc:
        _error(f"could not write the audit log {exc.filename or ''}: {exc.strerror}")
        return max(exit_code, EXIT_OPERATIONAL)
    return exit_code


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, map errors to exit codes, audit the run."""
    complete = os.environ.get("_OPSKIT_COMPLETE")
    if complete:  # shell completion (docs/cli.md); never audited
        from click.shell_completion import shell_complete
        sys.exit(shell_complete(cli, {"obj": App()}, "opskit", "_OPSKIT_COMPLETE", complete))
    args = sys.argv[1:] if argv is None else list(argv)
    app = App()
    error: str | None = None
    try:
        with cli.make_context("opskit", args, obj=app) as ctx:
            cli.invoke(ctx)
        code = app.exit_code
    except click.exceptions.Exit as exc:          # --help, --version
        code = exc.exit_code
        if not app.invoked:   # help text is no command run: not audited (docs/cli.md, #28 item 6)
            app.audited = False
    except click.UsageError as exc:               # bad flag or argument: one line (#28 item 9)
        error = exc.format_message()
        command = exc.ctx.command_path if exc.ctx is not None else "opskit"
        _error(" ".join(error.split()), f"see '{command} --help'")
        code = EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        code = EXIT_USAGE
        error = exc.format_message()
    except click.exceptions.Abort:
        _error("aborted")
        code = EXIT_OPERATIONAL
        error = "aborted"
    except KeyboardInterrupt:
        _error("interrupted")
        code = 130
        error = "interrupted"
    except OpskitError as exc:
        _error(exc.message, exc.hint)
        code = exc.exit_code
        error = exc.message
    except BrokenPipeError:
        code = 0
        sys.stderr.close()
    except Exception as exc:  # a bug: show it, but still audit and exit 3
        if os.environ.get("OPSKIT_DEBUG"):
            traceback.print_exc()
        else:
            _error(f"internal error: {type(exc).__name__}: {exc} "
                   "(set OPSKIT_DEBUG=1 for the traceback)")
        code = EXIT_OPERATIONAL
        error = f"internal error: {type(exc).__name__}"
    code = _write_audit(app, code, error)
    sys.exit(code)


def run() -> None:
    """Process entry point (the ``opskit`` script, ``python -m opskit``): ``main``,
    then exit without the interpreter's teardown, which frees every object one
    by one and after a big backup took ~0.1 s (5% of a 1 GiB initial run) doing
    so. Exit handlers still run and standard streams are flushed; opskit leaves
    no file open for writing behind (files are written through ``with``).
    Not for in-process callers (tests call ``main``)."""
    import atexit

    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):   # reader went away / stream closed
        pass
    os._exit(code)
