"""The corrections rules file: targets, operators (public keys, roles) and risk rules.

Kept apart from opskit.yaml because it names people and their keys: it is
owned by root, reviewed like code, and the auditor keeps their own copy to
verify an exported ledger offline (R-DAT-2, R-DAT-3). Schema below; example
and meaning in docs/corrections.md. Read with safe YAML and validated with
line-aware errors like every other opskit file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from opskit.core.secrets import redact_url  # noqa: F401 (used by ledger, actions, cli)
from opskit.core.errors import ConfigError, UsageError
from opskit.core.schema import Key, MapOf, Section, validate
from opskit.core.yamlfile import load_yaml

import opskit.core.signing as keymod

# Roles, in the order of the three-level review of R-DAT-3, then the others.
LEVELS = ("clerk", "section_head", "leader")
AUDITOR = "auditor"          # audit (稽核) department supervisor, R-DAT-2
MAINTAINER = "maintainer"    # designated system maintainer who applies, R-ACC-1/R-ACC-2
ROLES = LEVELS + (AUDITOR, MAINTAINER, "requester")
APPROVER_ROLES = LEVELS


def _roles_ok(value):
    bad = [r for r in value if r not in ROLES]
    return f"unknown role(s) {', '.join(map(repr, bad))}; expected any of {', '.join(ROLES)}" if bad else None


def _levels_ok(value):
    bad = [r for r in value if r not in LEVELS]
    if bad:
        return f"unknown level(s) {', '.join(map(repr, bad))}; expected any of {', '.join(LEVELS)}"
    if len(set(value)) != len(value):
        return "a level is listed twice"
    return None


def _key_ok(value):
    try:
        keymod.parse_public_key(value)
    except ValueError as exc:
        return f"not an Ed25519 public key: {exc}"
    return None


def _keys_ok(value):
    for item in value:
        problem = _key_ok(item)
        if problem:
            return problem
    return None


def _ops_ok(value):
    bad = [o for o in value if str(o).upper() not in ("UPDATE", "DELETE", "INSERT")]
    return f"unknown operation(s) {bad}; expected update, delete, insert" if bad else None


SCHEMA = Section({
    "targets": MapOf(Section({
        "url": Key(str, None, "SQLite file path, or postgresql:// URL (no password: use "
                              "password_file, ~/.pgpass or $PGPASSWORD).", nullable=False),
        "password_file": Key(str, None, "File holding the PostgreSQL password (mode 0600)."),
        "description": Key(str, "", "What this database is."),
        "max_rows": Key(int, None, "Refuse corrections touching more rows (default: top-level max_rows).",
                        min=1),
    })),
    "operators": MapOf(Section({
        "public_key": Key(str, None, "ssh-ed25519 public key line (from 'opskit correct keygen').",
                          nullable=False, check=_key_ok),
        "previous_keys": Key(list, [], "Older keys: still verify history, never sign anything new.",
                             item_type=str, check=_keys_ok),
        "roles": Key(list, [], "Any of clerk, section_head, leader, auditor, maintainer, requester.",
                     item_type=str, check=_roles_ok),
        "retired": Key(bool, False, "Left or changed post: history verifies, no new actions (R-ACC-6)."),
    })),
    "rules": MapOf(Section({
        "tables": Key(list, [], "Tables this rule covers (empty: every table).", item_type=str),
        "targets": Key(list, [], "Targets this rule covers (empty: every target).", item_type=str),
        "operations": Key(list, [], "update/delete/insert (empty: all).", item_type=str, check=_ops_ok),
        "min_rows": Key(int, 0, "Rule applies when the correction touches at least this many rows.",
                        min=0),
        "approvals": Key(int, 1, "Distinct approvers needed (never the requester).", min=1),
        "levels": Key(list, [], "Ordered sign-off levels, e.g. [clerk, section_head, leader].",
                      item_type=str, check=_levels_ok),
        "auditor": Key(bool, False, "Also needs an audit-department supervisor sign-off (R-DAT-2)."),
    })),
    "default_approvals": Key(int, 1, "Approvals needed when no rule matches.", min=1),
    "max_rows": Key(int, 1000, "Refuse corrections touching more rows than this (bulk changes are "
                               "not corrections).", min=1),
    "executor_may_approve": Key(bool, False, "Allow the maintainer who applies to be one of the "
                                             "approvers (default: no, R-ACC-2)."),
})


@dataclass
class Operator:
    name: str
    public_raw: bytes
    previous: list[bytes]
    roles: list[str]
    retired: bool = False

    def owns(self, raw: bytes, *, history: bool = False) -> bool:
        return raw == self.public_raw or (history and raw in self.previous)


@dataclass
class Target:
    name: str
    url: str
    password_file: str | None = None
    description: str = ""
    max_rows: int | None = None

    @property
    def kind(self) -> str:
        return "postgresql" if self.url.startswith(("postgresql://", "postgres://")) else "sqlite"

    @property
    def safe_url(self) -> str:
        """The URL without any password, for records and messages."""
        return redact_url(self.url)


@dataclass
class Requirement:
    """What a request needs before it may be applied; frozen into the request entry."""

    approvals: int = 1
    levels: list[str] = field(default_factory=list)
    auditor: bool = False
    rules: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"approvals": self.approvals, "levels": list(self.levels), "auditor": self.auditor,
                "rules": list(self.rules)}

    @classmethod
    def from_dict(cls, data: dict) -> "Requirement":
        return cls(int(data.get("approvals", 1)), list(data.get("levels") or []),
                   bool(data.get("auditor")), list(data.get("rules") or []))

    def describe(self) -> str:
        parts = [f"{self.approvals} approval{'s' if self.approvals != 1 else ''}"]
        if self.levels:
            parts.append("levels " + " -> ".join(self.levels))
        if self.auditor:
            parts.append("audit supervisor sign-off")
        return ", ".join(parts)


@dataclass
class Registry:
    targets: dict[str, Target]
    operators: dict[str, Operator]
    rules: dict[str, dict]
    default_approvals: int = 1
    max_rows: int = 1000
    executor_may_approve: bool = False
    source: str | None = None

    # --- lookups -----------------------------------------------------------------
    def target(self, name: str) -> Target:
        if name in self.targets:
            return self.targets[name]
        known = ", ".join(sorted(self.targets)) or "none declared"
        raise UsageError(f"unknown correction target {name!r} (known: {known})",
                         hint=f"declare it under 'targets:' in {self.source or 'the rules file'}")

    def who(self, raw: bytes, *, history: bool = False) -> Operator | None:
        for op in self.operators.values():
            if op.owns(raw, history=history):
                return op
        return None

    def requirement(self, target: str, table: str, operation: str, rows: int,
                    names: dict[str, list[str]] | None = None) -> Requirement:
        """Combine every matching rule: most approvals, all levels (in R-DAT-3 order),
        auditor if any rule asks. No rule: ``default_approvals``.

        A rule's table matches ``table`` by spelling (``claims`` also matches any
        ``schema.claims``), and by what the server resolved the names to (``names``,
        effects.relation_names): ``public.claims`` and ``claims`` are the same table,
        and a partition is also each of its ancestors, so the parent's rules apply."""
        req = Requirement(self.default_approvals)
        names = names or {}
        touched = {_canon(t) for t in [table] + list(names.get(table) or [])}
        bare = {t.split(".")[-1] for t in touched} | {table.split(".")[-1].strip('"').lower()}
        levels: set[str] = set()
        for name, rule in sorted(self.rules.items()):
            tables = rule["tables"]
            if tables and not any(_canon(t) in touched or ("." not in t and _canon(t) in bare)
                                  or {_canon(r) for r in (names.get(t) or [])[:1]} & touched
                                  for t in tables):
                continue
            if rule["targets"] and target not in rule["targets"]:
                continue
            if rule["operations"] and operation.lower() not in [o.lower() for o in rule["operations"]]:
                continue
            if rows < rule["min_rows"]:
                continue
            req.approvals = max(req.approvals, rule["approvals"]) if req.rules else rule["approvals"]
            req.rules.append(name)
            levels.update(rule["levels"])
            req.auditor = req.auditor or rule["auditor"]
        req.levels = [lv for lv in LEVELS if lv in levels]
        req.approvals = max(req.approvals, len(req.levels))
        return req

    def requirement_for(self, target: str, touches: list[tuple[str, str, int]],
                        names: dict[str, list[str]] | None = None) -> Requirement:
        """The requirement of a change touching several tables (table, operation, rows):
        every table's rules apply, combined like ``requirement`` combines rules (cascades,
        R-DAT-3); ``names`` as there."""
        counts: dict[tuple[str, str], int] = {}
        for table, op, rows in touches:
            counts[(table, op)] = counts.get((table, op), 0) + rows
        out: Requirement | None = None
        for (table, op), rows in counts.items():
            req = self.requirement(target, table, op, rows, names)
            if out is None:
                out = req
                continue
            out.approvals = max(out.approvals, req.approvals)
            out.levels = [lv for lv in LEVELS if lv in out.levels or lv in req.levels]
            out.auditor = out.auditor or req.auditor
            out.rules += [r for r in req.rules if r not in out.rules]
        return out or self.requirement(target, "", "", 0)

    def rule_tables(self, target: str) -> list[str]:
        """The table names of the rules that cover ``target``, as the rules file spells them."""
        return sorted({t for rule in self.rules.values() if not rule["targets"] or target in rule["targets"]
                       for t in rule["tables"]})

    def unresolved(self, target: str, names: dict[str, list[str]]) -> list[str]:
        """A warning line for each rule table of ``target`` that ``names`` (resolved on
        the server) says does not exist: such a rule still matches by spelling only,
        which is likely not what its author meant."""
        return [f"rule {name!r} names table {t!r}, which does not resolve to a relation on "
                f"target {target!r} (a typo, a missing schema or search_path?); it matches by "
                "spelling only" for name, rule in sorted(self.rules.items())
                if not rule["targets"] or target in rule["targets"]
                for t in rule["tables"] if t in names and not names[t]]


def _canon(table: str) -> str:
    """A table name for matching: quotes dropped, case folded (as before)."""
    return table.replace('"', "").lower()




def find_rules_file(config) -> str | None:
    """``corrections.rules_file``, else corrections.yaml beside the config, else
    /etc/opskit/corrections.yaml, else None (an empty registry: nobody may act)."""
    found = config.locate("corrections.rules_file", "corrections.yaml")
    return found.path if found else None


def empty_registry() -> Registry:
    return Registry({}, {}, {})


def load_registry(path: str | None) -> Registry:
    """Load and validate the rules file; None -> an empty registry (nobody may act)."""
    if path is None:
        return empty_registry()
    doc = load_yaml(path)
    data = validate(SCHEMA, doc.data or {}, doc)
    base = os.path.dirname(os.path.abspath(path))
    targets = {}
    for name, t in data["targets"].items():
        url = t["url"]
        if not url.startswith(("postgresql://", "postgres://")):
            url = os.path.join(base, os.path.expanduser(url)) if not os.path.isabs(
                os.path.expanduser(url)) else os.path.expanduser(url)
        pw = t["password_file"]
        if pw and not os.path.isabs(os.path.expanduser(pw)):
            pw = os.path.join(base, os.path.expanduser(pw))
        targets[name] = Target(name, url, pw, t["description"] or "", t["max_rows"])
    operators = {}
    seen: dict[bytes, str] = {}
    for name, o in data["operators"].items():
        raw = keymod.parse_public_key(o["public_key"])
        prev = [keymod.parse_public_key(k) for k in o["previous_keys"]]
        for k in [raw] + prev:
            if k in seen:
                raise doc.error(("operators", name, "public_key"),
                                f"the same key is declared for {seen[k]!r} too: one key, one person")
            seen[k] = name
        operators[name] = Operator(name, raw, prev, list(o["roles"]), o["retired"])
    for name, rule in data["rules"].items():
        for tname in rule["targets"]:
            if tname not in targets:
                raise doc.error(("rules", name, "targets"), f"unknown target {tname!r}")
    return Registry(targets, operators, data["rules"], data["default_approvals"], data["max_rows"],
                    data["executor_may_approve"], source=path)


def password_for(target: Target) -> str | None:
    if not target.password_file:
        return None
    try:
        st = os.stat(target.password_file)
        if st.st_mode & 0o077:
            raise ConfigError(f"password file {target.password_file} is readable by others",
                              hint=f"chmod 600 {target.password_file}")
        with open(target.password_file, encoding="utf-8") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"password file {target.password_file} not found") from None
