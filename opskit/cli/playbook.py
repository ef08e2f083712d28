"""`opskit playbook`: Playbooks: ordered runbooks of opskit steps with variables, all recorded in the audit log."""
from __future__ import annotations

import os

import click

from opskit.core.output import Result, Table

from .app import App, OpskitGroup, is_secret_name, output_options, pass_app


@click.group("playbook", cls=OpskitGroup)
def group() -> None:
    """Playbooks: ordered runbooks of opskit steps with variables, all recorded in the audit log.

    \b
    Shipped: onboard, offboard (R-ACC-6), restore-drill (R-BAK-5),
    incident-restore, access-review. See docs/playbooks.md.
        opskit playbook list
        opskit playbook run offboard --var person=zhang.wei --var ticket=HR-1234 --dry-run
        opskit playbook run playbooks/restore-drill.yaml --var site=dr
    Exit codes: 0 every step done | 1 a step found something (exit 1) |
    2 bad playbook or variable | 3 a step failed.
    """


def _hide(values: dict[str, str]):
    """(redacted copy of values, function redacting secret values out of a word)."""
    secrets = [v for k, v in values.items() if is_secret_name(k) and v]
    shown = {k: ("***" if is_secret_name(k) and v else v) for k, v in values.items()}

    def word(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text
    return shown, word


@group.command("run")
@click.argument("playbook_ref", metavar="FILE|NAME")
@click.option("--var", "var_pairs", multiple=True, metavar="NAME=VALUE",
              help="Set a playbook variable (repeatable).")
@click.option("--dry-run", is_flag=True, help="Print the resolved steps; run nothing.")
@click.option("--verbose", "-v", is_flag=True, help="Also print each step's output.")
@output_options()
@pass_app
def run_cmd(app: App, playbook_ref: str, var_pairs: tuple[str, ...], dry_run: bool,
            verbose: bool) -> None:
    """Run the steps of a playbook in order; stop at the first failing step.

    FILE is a playbook file, or NAME is looked up as NAME.yaml (schedule.playbook_dir,
    playbooks/ beside the config, /etc/opskit/playbooks, the shipped ones). Each step
    is an opskit command; it and the playbook are recorded in the audit log.
    """
    from opskit.core.audit import AuditLog
    from opskit.playbooks.engine import find_playbook, load_playbook, parse_kv, run_playbook

    path = find_playbook(playbook_ref, app.config)
    book = load_playbook(path)
    values = book.resolve(parse_kv(var_pairs))
    shown, hide = _hide(values)
    log = AuditLog(app.audit_log_path())
    run_id = os.urandom(4).hex()

    def audit(kind, item, argv, exit_code, summary):
        result = "ok" if exit_code == 0 else "findings" if exit_code == 1 else "error"
        arguments = {"playbook": book.name, "file": os.path.abspath(path), "run": run_id,
                     "step": item["step"], "name": item["name"]}
        if argv is not None:
            arguments["argv"] = [hide(w) for w in argv]
        details = None
        if kind == "signoff":
            # the sign-off itself: who, what, when (the entry's own time) -- R-ACC-6, R-DAT-1
            details = {"signoff": {"by": app.operator, "what": hide(summary),
                                   "playbook": book.name, "vars": shown}}
        log.append(operator=app.operator, host=app.hostname,
                   command=f"playbook {kind}", arguments=arguments, result=result,
                   exit_code=exit_code, summary=hide(summary), details=details)

    result = run_playbook(book, values, dry_run=dry_run, global_args=app.child_options(),
                          audit=None if dry_run else audit, audit_log=log.path)
    result.data["vars"] = shown
    result.data["run"] = run_id
    for step in result.data["steps"]:
        for key in ("argv",):
            if step.get(key):
                step[key] = [hide(w) for w in step[key]]
        for key in ("command", "summary", "signoff", "output"):
            if isinstance(step.get(key), str):
                step[key] = hide(step[key])
        step.pop("errors", None)
        if not verbose:
            step.pop("output", None)
    for row in result.tables[0].rows:
        for key in ("command", "summary"):
            if isinstance(row.get(key), str):
                row[key] = hide(row[key])
    result.messages = [hide(m) for m in result.messages]
    result.summary = hide(result.summary)
    if verbose and app.output_format == "table":
        for step in result.data["steps"]:
            if step.get("output"):
                result.messages.append(f"--- step {step['step']} ({step['name']}) output ---\n"
                                       + hide(step["output"].rstrip()))
    app.audit_details.update(playbook=book.name, file=os.path.abspath(path), run=run_id,
                             vars=shown, dry_run=dry_run,
                             steps=[{"step": s["step"], "exit": s["exit"], "status": s["status"]}
                                    for s in result.data["steps"]])
    app.emit(result)


@group.command("list")
@output_options()
@pass_app
def list_cmd(app: App) -> None:
    """List the shipped and configured playbooks with their variables."""
    from opskit.playbooks.engine import load_playbook, playbook_dirs

    app.audited = False
    rows, seen = [], set()
    for folder in playbook_dirs(app.config):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".yaml") or name in seen:
                continue
            seen.add(name)
            book = load_playbook(os.path.join(folder, name))
            rows.append({"playbook": name[:-5], "file": os.path.join(folder, name),
                         "vars": ", ".join((v.name + ("*" if v.required else ""))
                                           for v in book.vars.values()),
                         "steps": len(book.steps), "rules": ", ".join(book.rules),
                         "description": book.description})
    app.emit(Result(data=rows, tables=[Table(["playbook", "vars", "steps", "rules",
                                              "description"], rows)],
                    messages=["* = required variable"], summary=f"{len(rows)} playbook(s)"))
