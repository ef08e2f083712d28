"""The per-invocation application context shared by every command.

It loads the config lazily (so ``--help`` never fails on a bad file),
knows the state directory and the operator, renders results, and collects
what the audit entry for this invocation will say.
"""
from __future__ import annotations

import functools
import getpass
import os
import socket
import sys
from typing import Any, Callable

import click

from opskit.core.config import Config, load_config
from opskit.core.errors import EXIT_OK
from opskit.core.output import FORMATS, Result, offered, render, select_table
from opskit.core.secrets import is_secret_name, redact, redact_argv  # noqa: F401 (re-exported for cli modules)
from opskit.core.state import StateLayout, ensure_private_dir, resolve_state_dir
from opskit.settings import SCHEMA


class App:
    """State for one ``opskit`` invocation (click's ``ctx.obj``)."""

    def __init__(self, config_path: str | None = None, operator: str | None = None):
        self.config_path = config_path
        self.operator_override = operator
        self.output_format = "table"
        self.table_name: str | None = None      # --table NAME (one table per output)
        self.command: str | None = None         # e.g. "backup run"
        self.arguments: dict[str, Any] = {}
        self.audit_details: dict[str, Any] = {}  # extra evidence for the audit entry
        self.summary: str = ""
        self.exit_code = EXIT_OK
        self.audited = True
        self.invoked = False                    # a command body started (not just --help)
        self.audit_damage_is_finding = False    # set by 'audit verify' once it reported it
        self._config: Config | None = None

    # --- configuration and state -------------------------------------------------
    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, schema=SCHEMA)
        return self._config

    @property
    def state_dir(self) -> str:
        return ensure_private_dir(resolve_state_dir(self.config.get("state_dir")))

    def audit_log_path(self, *, fallback: bool = False) -> str:
        """The configured audit log, or the default one in the state directory.

        With ``fallback``, a broken config does not stop the attempt from being
        recorded: the default location ($OPSKIT_HOME or the default state dir)
        is used instead.
        """
        try:
            config = self.config
        except Exception:
            if not fallback:
                raise
            return StateLayout(ensure_private_dir(resolve_state_dir(None))).audit_log
        configured = config.get("audit.path")
        if configured:
            return config.relative_path(configured)
        return StateLayout(self.state_dir).audit_log

    # --- who and where -----------------------------------------------------------
    @property
    def os_user(self) -> str:
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry (containers): fall back to the uid
            user = str(os.geteuid())
        sudo_user = os.environ.get("SUDO_USER")
        return f"{user} (sudo from {sudo_user})" if sudo_user and sudo_user != user else user

    @property
    def operator(self) -> str:
        """OS user, plus the declared operator name (``--operator``/config) when given."""
        named = self.operator_override or os.environ.get("OPSKIT_OPERATOR")
        if not named:
            try:
                named = self.config.get("operator")
            except Exception:  # a broken config must not hide who ran the command
                named = None
        return f"{self.os_user} as {named}" if named else self.os_user

    @property
    def hostname(self) -> str:
        return socket.gethostname()

    # --- output ------------------------------------------------------------------
    def emit(self, result: Result) -> None:
        """Render ``result`` to stdout and remember its exit code and summary."""
        render(select_table(result, self.table_name), self.output_format, sys.stdout)
        self.exit_code = max(self.exit_code, result.exit_code)
        if result.summary:
            self.summary = result.summary

    def emit_quiet(self, result: Result) -> None:
        """``-q``: nothing on stdout; when the result is not a success, its messages
        go to stderr (what cron mails). Exit code and summary as ``emit``."""
        if result.exit_code:
            for line in result.messages:
                print(line, file=sys.stderr)
        self.exit_code = max(self.exit_code, result.exit_code)
        if result.summary:
            self.summary = result.summary

    def child_options(self) -> list[str]:
        """Global options a child ``opskit`` process needs to see the same config and
        operator as this one (scheduled jobs, playbook steps)."""
        args = []
        if self.config.source:
            args += ["--config", os.path.abspath(self.config.source)]
        if self.operator_override:
            args += ["--operator", self.operator_override]
        return args

    def record(self, command: str, params: dict[str, Any]) -> None:
        self.command = command
        self.arguments = {k: redact(k, v) for k, v in params.items()
                          if k not in ("output_format", "as_json", "as_csv", "table_name")}


pass_app = click.make_pass_decorator(App)


def output_options(tabular: bool = True, formats: tuple[str, ...] | None = None,
                   default: str = "table") -> Callable:
    """Add ``--format`` with the ``formats`` this command offers (default: table,
    json and csv; table and json when not ``tabular``), plus ``--json`` and
    ``--csv`` when those are offered. The choices come from the format registry."""
    choices = offered(formats or (FORMATS if tabular else ("table", "json")))

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, output_format: str = default, as_json: bool = False,
                    as_csv: bool = False, table_name: str | None = None, **kwargs):
            app = click.get_current_context().find_object(App)
            fmt = "json" if as_json else "csv" if as_csv else output_format
            if app is not None:
                app.output_format = fmt
                app.table_name = table_name
            return func(*args, **kwargs)

        wrapper = click.option("--format", "output_format", type=click.Choice(choices),
                               default=default, show_default=True,
                               help="Output format.")(wrapper)
        if "csv" in choices:
            wrapper = click.option("--csv", "as_csv", is_flag=True,
                                   help="Same as --format csv.")(wrapper)
            wrapper = click.option("--table", "table_name", metavar="NAME",
                                   help="Only this table (CSV holds one; default: the "
                                        "first). An unknown name lists the names.")(wrapper)
        if "json" in choices:
            wrapper = click.option("--json", "as_json", is_flag=True,
                                   help="Machine-readable JSON (same as --format json).")(wrapper)
        return wrapper

    return decorator



class OpskitCommand(click.Command):
    """A leaf command: records its path and (redacted) parameters for the audit log."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # record the attempt first, so a rejected flag is audited too (R-AUD-3)
        app = ctx.find_object(App)
        if app is not None:
            path = ctx.command_path.split(" ", 1)[1] if " " in ctx.command_path else ctx.command_path
            app.command = path
            app.arguments = {"argv": redact_argv(list(args))}
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        app = ctx.find_object(App)
        if app is not None:
            path = ctx.command_path.split(" ", 1)[1] if " " in ctx.command_path else ctx.command_path
            app.record(path, ctx.params)
            app.invoked = True
        return super().invoke(ctx)


class OpskitGroup(click.Group):
    """Group whose subcommands are OpskitCommands and subgroups OpskitGroups."""

    command_class = OpskitCommand
    group_class = type  # subgroups are of this same class
