"""Playbooks: ordered runbooks of opskit steps with variables (docs/playbooks.md).

    name: offboard
    description: Freeze a leaver everywhere, prove no access is left, sign off (R-ACC-6)
    vars:
      person: {required: true, description: roster id}
      reason: {default: departure, choices: [departure, transfer]}
    steps:
      - name: freeze on all hosts
        run: [users, freeze, "{{person}}", --reason, "{{reason}}"]
      - name: permission diff shows no access left
        run: [perms, diff, --person, "{{person}}"]
        expect_exit: [0]
      - name: sign-off
        signoff: "{{person}} left: accounts frozen, no access left"

Each ``run`` step is an opskit command given as a list of words (no shell:
a value with spaces or ';' stays one argument). ``{{var}}`` is replaced in
every word. The run stops at the first step whose exit code is not in
``expect_exit`` (default ``[0]``). ``when: VAR`` skips a step when VAR is
empty. A ``signoff`` step writes an audit entry (who, what, when).
Unknown or missing variables are UsageErrors naming the playbook file and
the variable (exit 2), found before any step runs.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

from opskit.core.config import Config
from opskit.core.errors import ConfigError, UsageError
from opskit.core.output import Result, Table
from opskit.core.schema import Key, MapOf, Section, validate
from opskit.core.yamlfile import YamlDoc, load_yaml
from opskit.core.state import opskit_command

OPSKIT = opskit_command()
_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

VAR = Section({
    "description": Key(str, None, "What the variable means."),
    "required": Key(bool, False, "The caller must give it (--var NAME=VALUE)."),
    "default": Key((str, int, float), None, "Value when not given."),
    "choices": Key(list, None, "Allowed values."),
})

STEP = Section({
    "name": Key(str, None, "What the step does."),
    "run": Key(list, None, "opskit command as a list of words, {{var}} substituted.",
               item_type=str),
    "signoff": Key(str, None, "Write a sign-off audit entry with this text."),
    "expect_exit": Key(list, None, "Exit codes that count as success (default [0]).",
                       item_type=int),
    "when": Key(str, None, "Run only when this variable is not empty."),
    "timeout": Key((int, float), None, "Seconds the step may take.", min=1),
})

SCHEMA = Section({
    "name": Key(str, None, "Playbook name."),
    "description": Key(str, None, "What the playbook is for."),
    "rules": Key(list, None, "Rule ids the playbook implements.", item_type=str),
    "vars": MapOf(VAR),
    "steps": Key(list, None, "Ordered steps.", nullable=False),
})


@dataclass
class Var:
    name: str
    required: bool = False
    default: str | None = None
    choices: list[str] | None = None
    description: str = ""


@dataclass
class Step:
    number: int
    name: str
    run: list[str] | None = None
    signoff: str | None = None
    expect_exit: list[int] = field(default_factory=lambda: [0])
    when: str | None = None
    timeout: float | None = None
    line: int | None = None


@dataclass
class Playbook:
    path: str
    name: str
    description: str
    rules: list[str]
    vars: dict[str, Var]
    steps: list[Step]

    def resolve(self, given: dict[str, str]) -> dict[str, str]:
        """Variables for a run: given values, else defaults; UsageError naming the file
        and the variable for an unknown, missing or not-allowed one."""
        for name in given:
            if name not in self.vars:
                known = ", ".join(sorted(self.vars)) or "none"
                raise UsageError(f"{self.path}: unknown variable {name!r} (this playbook "
                                 f"takes: {known})")
        values: dict[str, str] = {}
        for var in self.vars.values():
            if var.name in given:
                value = given[var.name]
            elif var.default is not None:
                value = str(var.default)
            elif var.required:
                raise UsageError(f"{self.path}: missing required variable {var.name!r}"
                                 + (f" ({var.description})" if var.description else ""),
                                 hint=f"give it with --var {var.name}=VALUE")
            else:
                value = ""
            if var.choices and value not in [str(c) for c in var.choices] and \
                    (value or var.required):
                raise UsageError(f"{self.path}: variable {var.name!r} is {value!r}; expected one "
                                 f"of: {', '.join(map(str, var.choices))}")
            values[var.name] = value
        return values

    def plan(self, values: dict[str, str]) -> list[dict]:
        """The resolved steps, in order: number, name, argv or sign-off text, skipped."""
        out = []
        for step in self.steps:
            skipped = bool(step.when) and not values.get(step.when)
            out.append({"step": step.number, "name": step.name,
                        "argv": [substitute(w, values) for w in step.run] if step.run else None,
                        "signoff": substitute(step.signoff, values) if step.signoff else None,
                        "expect_exit": step.expect_exit, "skipped": skipped,
                        "timeout": step.timeout})
        return out


def substitute(text: str, values: dict[str, str]) -> str:
    return _VAR.sub(lambda m: values[m.group(1)], text)


def parse_kv(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``--var key=value`` pairs (a value may contain '=')."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not _NAME.match(key):
            raise UsageError(f"--var {pair!r}: expected NAME=VALUE")
        if key in out:
            raise UsageError(f"--var {key} given twice")
        out[key] = value
    return out


def find_playbook(ref: str, config=None) -> str:
    """A path, or NAME looked up as NAME.yaml in schedule.playbook_dir, playbooks/ beside
    the config file, /etc/opskit/playbooks and the shipped playbooks."""
    if os.path.exists(ref) or os.sep in ref or ref.endswith((".yaml", ".yml")):
        return ref
    dirs = playbook_dirs(config)
    for folder in dirs:
        candidate = os.path.join(folder, f"{ref}.yaml")
        if os.path.exists(candidate):
            return candidate
    raise UsageError(f"no playbook {ref!r}: not a file, and no {ref}.yaml in "
                     + ", ".join(dirs))


def playbook_dirs(config=None) -> list[str]:
    """Folders searched for NAME.yaml, in order: schedule.playbook_dir, else playbooks/
    beside the config file; then /etc/opskit/playbooks and the shipped playbooks."""
    # No config at all: an empty one, so only /etc/opskit and the shipped copy count.
    places = (config or Config({})).search_path("schedule.playbook_dir", "playbooks",
                                                shipped=("playbooks",))
    return [place.path for place in places]


def load_playbook(path: str) -> Playbook:
    return parse_playbook(load_yaml(path))


def parse_playbook(doc: YamlDoc) -> Playbook:
    if doc.data is None:
        raise ConfigError("the playbook is empty; expected 'steps:'", file=doc.file)
    data = validate(SCHEMA, doc.data, doc)
    variables: dict[str, Var] = {}
    for name, entry in data["vars"].items():
        if not _NAME.match(name):
            raise doc.error(("vars", name), f"variable name {name!r}: use letters, digits, '_'")
        if entry.get("required") and entry.get("default") is not None:
            raise doc.error(("vars", name), "a variable is either required or has a default")
        choices = entry.get("choices")
        variables[name] = Var(name, bool(entry.get("required")),
                              None if entry.get("default") is None else str(entry["default"]),
                              [str(c) for c in choices] if choices else None,
                              entry.get("description") or "")
    steps: list[Step] = []
    if not data["steps"]:
        raise doc.error(("steps",), "a playbook needs at least one step")
    for i, raw in enumerate(data["steps"]):
        path = ("steps", i)
        entry = validate(STEP, raw, doc, path)
        if bool(entry.get("run")) == bool(entry.get("signoff")):
            raise doc.error(path, "a step has either 'run' (an opskit command) or 'signoff'")
        run = entry.get("run")
        if run and run[0] == "opskit":
            raise doc.error(path + ("run",), "leave out the leading 'opskit': [backup, drill], "
                                             "not [opskit, backup, drill]")
        if run and run[0] == "playbook":
            raise doc.error(path + ("run",), "a playbook step cannot run another playbook")
        texts = list(run or []) + [entry.get("signoff") or ""]
        for j, text in enumerate(texts):
            for ref in _VAR.findall(text):
                if ref not in variables:
                    key = path + (("run", j) if run and j < len(run) else ("signoff",))
                    raise doc.error(key, f"unknown variable {{{{{ref}}}}}: declare it under "
                                         "'vars:'")
            leftover = _VAR.sub("", text)
            if "{{" in leftover or "}}" in leftover:
                raise doc.error(path, f"malformed variable reference in {text!r}: use "
                                      "{{name}}")
        when = entry.get("when")
        if when and when not in variables:
            raise doc.error(path + ("when",), f"unknown variable {when!r}")
        steps.append(Step(i + 1, entry.get("name") or (" ".join(run[:2]) if run else "sign-off"),
                          list(run) if run else None, entry.get("signoff"),
                          list(entry.get("expect_exit") or [0]), when,
                          None if entry.get("timeout") is None else float(entry["timeout"]),
                          doc.line(path)))
    name = data.get("name") or os.path.splitext(os.path.basename(doc.file))[0]
    return Playbook(doc.file, name, data.get("description") or "", list(data.get("rules") or []),
                    variables, steps)


# --- running ------------------------------------------------------------------------
def _summary(stdout: str, stderr: str, code: int) -> str:
    text = stderr if code not in (0, 1) else (stdout.strip() or stderr)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if code not in (0, 1):
        errors = [ln for ln in lines if ln.startswith("opskit: error:")]
        if errors:
            return errors[0][:200]
    return lines[-1][:200] if lines else ""


def _child_summary(audit_log: str | None, after: int) -> str | None:
    """The summary the step's own opskit process wrote to the audit log (every opskit
    command audits itself): the newest entry after seq ``after``."""
    if not audit_log:
        return None
    try:
        with open(audit_log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 65536))
            tail = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and int(entry.get("seq", 0)) > after:
            if not str(entry.get("command", "")).startswith("playbook"):
                return str(entry.get("summary") or "")[:200] or None
        else:
            break
    return None


def _audit_seq(audit_log: str | None) -> int:
    if not audit_log:
        return 0
    from opskit.core.audit import AuditLog
    try:
        head = AuditLog(audit_log).head()
    except Exception:  # unreadable log: the summary falls back to the output
        return 0
    return head[0] if head else 0


def run_playbook(book: Playbook, values: dict[str, str], *, dry_run: bool = False,
                 global_args: list[str] | None = None,
                 audit: Callable[..., None] | None = None, audit_log: str | None = None,
                 launcher: tuple[str, ...] = OPSKIT, default_timeout: float = 3600.0) -> Result:
    """Run (or with ``dry_run`` only resolve) the steps; stop at the first failure.

    ``audit(kind, step, argv, exit_code, summary, details)`` records each step
    (R-AUD-3); the caller's own audit entry records the whole playbook."""
    plan = book.plan(values)
    rows: list[dict] = []
    failed: dict | None = None
    for item in plan:
        shown = ("opskit " + " ".join(shlex.quote(w) for w in item["argv"]) if item["argv"]
                 else f"(sign-off) {item['signoff']}")
        row = {"step": item["step"], "name": item["name"], "command": shown, "exit": None,
               "duration": None, "status": "", "summary": ""}
        rows.append(row)
        if dry_run:
            row["status"] = "skip (when: empty)" if item["skipped"] else "would run"
            continue
        if failed is not None:
            row["status"] = "not run"
            continue
        if item["skipped"]:
            row["status"] = "skipped"
            row["summary"] = f"'{book.steps[item['step'] - 1].when}' is empty"
            continue
        started = time.monotonic()
        if item["signoff"] is not None:
            row.update(exit=0, status="ok", summary=item["signoff"])
            if audit:
                audit("signoff", item, None, 0, item["signoff"])
            row["duration"] = round(time.monotonic() - started, 3)
            continue
        argv = [*launcher, *(global_args or []), *item["argv"]]
        timeout = item["timeout"] or default_timeout
        before = _audit_seq(audit_log)
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout)
            code = proc.returncode
            summary = (_summary(proc.stdout, proc.stderr, code) if code not in (0, 1) else
                       _child_summary(audit_log, before) or _summary(proc.stdout, proc.stderr,
                                                                     code))
            row["output"] = proc.stdout
            row["errors"] = proc.stderr
        except subprocess.TimeoutExpired:
            code, summary = 124, f"timed out after {timeout:g}s"
        row.update(exit=code, duration=round(time.monotonic() - started, 3), summary=summary)
        ok = code in item["expect_exit"]
        row["status"] = "ok" if ok else "FAILED"
        if audit:
            audit("step", item, item["argv"], code, summary)
        if not ok:
            failed = row
    table_rows = [{k: v for k, v in r.items() if k not in ("output", "errors")} for r in rows]
    table = Table(["step", "name", "command", "exit", "duration", "status", "summary"],
                  table_rows, kinds={"duration": "seconds"},
                  title=f"playbook {book.name} ({book.path})"
                  + (" -- dry run, nothing was run" if dry_run else ""))
    if dry_run:
        summary = f"playbook {book.name}: dry run, {len(rows)} step(s) resolved"
        code = 0
    elif failed is None:
        summary = f"playbook {book.name}: all {len(rows)} step(s) done"
        code = 0
    else:
        summary = (f"playbook {book.name}: stopped at step {failed['step']} "
                   f"({failed['name']}): exit {failed['exit']}"
                   + (f": {failed['summary']}" if failed['summary'] else ""))
        code = 1 if failed["exit"] == 1 else 3
    data = {"playbook": book.name, "file": book.path, "dry_run": dry_run, "vars": values,
            "steps": [dict(r, argv=p["argv"], signoff=p["signoff"],
                           expect_exit=p["expect_exit"]) for r, p in zip(rows, plan)],
            "ok": failed is None, "exit_code": code}
    messages = [summary]
    if failed is not None and failed.get("errors"):
        messages.append("step output (stderr):\n" + failed["errors"].rstrip())
    return Result(data=data, tables=[table], messages=messages, summary=summary, exit_code=code)
