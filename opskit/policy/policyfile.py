"""Policy files: which checks apply to which host groups, approved ports per
host role, approved gateways/subnets/DNS servers, severities.

    version: 1
    roles:                         # approved listening ports per host role (R-NET-5)
      default: {tcp: [22], udp: []}
      db: {tcp: [22, 5432]}
    groups:                        # inventory group -> role, and per-group check overrides
      db: {role: db}
      kiosk: {checks: {media.usbguard: {required: true}}}
    checks:                        # per check: enabled, severity, groups, parameters
      net.default-route: {approved_gateways: [10.20.0.1]}
      media.usbguard: {groups: [kiosk]}

A directory of policy files is read with the shipped baseline
(``baseline.yaml``) first and every other file after it in file-name order,
so a site file wins over the baseline whatever it is called (50-site.yaml
sorts before baseline.yaml); a later file replaces a role, and merges into a
group or check entry key by key.
Mistakes are ConfigErrors naming file, line and key (exit code 2).
"""
from __future__ import annotations

import copy
import fnmatch
import json
import os
from dataclasses import dataclass, field
from typing import Any

from opskit.core.config import Config
from opskit.core.errors import ConfigError, UsageError
from opskit.core.schema import Key, Section, validate
from opskit.core.yamlfile import YamlDoc, load_yaml

from . import parsers as P
from .model import SEVERITIES
from .catalogue import CheckSpec, Context, catalogue

SHIPPED = ("configs", "policies")          # the shipped example policies (core.shipped)
COMMON_KEYS = ("enabled", "severity", "groups")


def _ports(value):
    try:
        P.parse_ports(value)
    except (ValueError, TypeError) as exc:
        return f"expected ports like 22 or '8000-8080': {exc}"
    return None


ROLE = Section({
    "description": Key(str, None, "What hosts of this role do."),
    "tcp": Key(list, [], "Approved TCP listening ports (22, or ranges '8000-8080').", check=_ports),
    "udp": Key(list, [], "Approved UDP ports.", check=_ports),
})


def check_section(spec: CheckSpec, with_groups: bool = True) -> Section:
    keys = {"enabled": Key(bool, None, "Run this check (default true)."),
            "severity": Key(str, None, "low, medium, high or critical.", choices=SEVERITIES)}
    if with_groups:
        keys["groups"] = Key(list, None, "Only hosts in these inventory groups.", item_type=str)
    for name, key in spec.params.items():
        keys[name] = copy.copy(key)
        keys[name].default = None          # unset here = inherited, filled in later
    return Section(keys)


@dataclass
class CheckEntry:
    values: dict = field(default_factory=dict)      # only keys set in files
    where: dict = field(default_factory=dict)       # key -> "file:line"


@dataclass
class GroupEntry:
    role: str | None = None
    role_where: str = ""
    checks: dict[str, CheckEntry] = field(default_factory=dict)


@dataclass
class PlannedCheck:
    """One check as it will run on one host (or why it will not)."""

    spec: CheckSpec
    context: Context
    severity: str
    skip: str | None = None         # n/a reason when the policy does not apply it


@dataclass
class Policy:
    files: list[str] = field(default_factory=list)
    roles: dict[str, dict] = field(default_factory=dict)      # name -> {'tcp': ranges, 'udp': ranges}
    groups: dict[str, GroupEntry] = field(default_factory=dict)
    checks: dict[str, CheckEntry] = field(default_factory=dict)
    profile: str | None = None            # e.g. 'mlps3' (configs/policies/profiles/mlps3.yaml)
    select: list[str] | None = None       # check ids / globs the profile runs

    def selects(self, spec: CheckSpec) -> bool:
        """Without a profile the baseline checks run (those no profile owns);
        a profile runs exactly the checks its ``select`` names."""
        if self.select is None:
            return not spec.profiles
        return any(fnmatch.fnmatchcase(spec.id, pattern) for pattern in self.select)

    def specs(self) -> list[CheckSpec]:
        return [spec for spec in catalogue().values() if self.selects(spec)]

    # --- resolution ---------------------------------------------------------------------
    def role_for(self, host: str, groups: list[str], variables: dict) -> str:
        """Inventory var ``role``, else the first of the host's groups with a role
        in the policy, else 'default'."""
        role = variables.get("policy_role") or variables.get("role")
        if role:
            if role not in self.roles:
                raise UsageError(f"host '{host}': inventory var role '{role}' is not a role in "
                                 f"the policy ({', '.join(self.files) or 'built-in'}); known "
                                 f"roles: {', '.join(self.roles) or '(none)'}")
            return role
        for group in groups:
            entry = self.groups.get(group)
            if entry and entry.role:
                return entry.role
        return "default"

    def plan(self, host: str, groups: list[str] | None = None,
             variables: dict | None = None) -> tuple[str, list[PlannedCheck]]:
        """(role, the checks for one host with their merged parameters)."""
        groups = list(groups or [])
        role = self.role_for(host, groups, variables or {})
        ports = self.roles.get(role, {"tcp": [], "udp": []})
        planned = []
        for spec in self.specs():
            check_id = spec.id
            values = {name: copy.deepcopy(key.default) for name, key in spec.params.items()}
            values.update({"enabled": True, "severity": spec.severity, "groups": None})
            where = {}
            entry = self.checks.get(check_id)
            if entry:
                values.update(copy.deepcopy(entry.values))
                where.update(entry.where)
            for group in groups:                      # group overrides, host's group order
                g = self.groups.get(group)
                if g and check_id in g.checks:
                    values.update(copy.deepcopy(g.checks[check_id].values))
                    where.update(g.checks[check_id].where)
            skip = None
            if not values["enabled"]:
                skip = f"disabled by the policy ({where.get('enabled', 'built-in')})"
            elif values["groups"] is not None and not set(values["groups"]) & set(groups):
                skip = (f"the policy applies it only to group(s) {', '.join(values['groups'])} "
                        f"({where.get('groups', '')})")
            params = {k: values[k] for k in spec.params}
            context = Context(params, role, ports)
            planned.append(PlannedCheck(spec, context, values["severity"], skip))
        return role, planned


def built_in_policy() -> Policy:
    """Used when no policy file exists anywhere: every check with its defaults,
    role 'default' approving SSH only."""
    return Policy(files=[], roles={"default": {"tcp": [(22, 22)], "udp": []}})


def parse_policy(doc: YamlDoc, policy: Policy | None = None) -> Policy:
    """Validate one policy document and merge it into ``policy``."""
    policy = policy or Policy()
    specs = catalogue()
    data = doc.data
    if data is None:
        policy.files.append(doc.file)
        return policy
    if not isinstance(data, dict):
        raise doc.error((), "a policy file must be a mapping with roles, groups and checks")
    known = ("version", "description", "roles", "groups", "checks", "profile", "select")
    for key in data:
        if key not in known:
            raise doc.error((key,), f"unknown key '{key}'; expected one of: {', '.join(known)}")
    if data.get("version", 1) != 1:
        raise doc.error(("version",), f"unsupported policy version {data.get('version')!r}; "
                                      "this opskit reads version 1")

    def where(path):
        return f"{doc.file}:{doc.line(path)}"

    def mapping(path):
        value = data
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise doc.error(path, "expected a mapping of named entries")
        return value

    def check_entry(path, check_id, value, with_groups=True) -> CheckEntry:
        if check_id not in specs:
            raise doc.error(path, f"unknown check '{check_id}'; known checks: "
                                  f"{', '.join(specs)}")
        if value is None:
            value = {}
        checked = validate(check_section(specs[check_id], with_groups), value, doc, path)
        set_keys = {k: v for k, v in checked.items() if k in value}
        return CheckEntry(set_keys, {k: where(path + (k,)) for k in set_keys})

    _profile_keys(doc, policy, specs)
    for name, value in mapping(("roles",)).items():
        role = validate(ROLE, value, doc, ("roles", name))
        policy.roles[str(name)] = {"tcp": P.parse_ports(role["tcp"]),
                                   "udp": P.parse_ports(role["udp"])}
    for check_id, value in mapping(("checks",)).items():
        entry = check_entry(("checks", check_id), check_id, value)
        current = policy.checks.setdefault(check_id, CheckEntry())
        current.values.update(entry.values)
        current.where.update(entry.where)
    for group, value in mapping(("groups",)).items():
        path = ("groups", group)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise doc.error(path, "expected a mapping with 'role' and/or 'checks'")
        for key in value:
            if key not in ("role", "checks", "description"):
                raise doc.error(path + (key,), f"unknown key '{key}'; expected one of: "
                                               "role, checks, description")
        entry = policy.groups.setdefault(str(group), GroupEntry())
        if value.get("role") is not None:
            entry.role = str(value["role"])
            entry.role_where = where(path + ("role",))
        for check_id, cvalue in mapping(path + ("checks",)).items():
            ce = check_entry(path + ("checks", check_id), check_id, cvalue, with_groups=False)
            current = entry.checks.setdefault(check_id, CheckEntry())
            current.values.update(ce.values)
            current.where.update(ce.where)
    policy.files.append(doc.file)
    return policy


def _profile_keys(doc: YamlDoc, policy: Policy, specs: dict) -> None:
    """``profile: NAME`` and ``select: [ids or globs]`` of a profile file."""
    data = doc.data
    if "profile" in data:
        if not isinstance(data["profile"], str) or not data["profile"]:
            raise doc.error(("profile",), "expected the profile's name")
        policy.profile = data["profile"]
    if "select" in data:
        select = data["select"]
        if not isinstance(select, list) or not all(isinstance(x, str) for x in select):
            raise doc.error(("select",), "expected a list of check ids or globs")
        for pattern in select:
            if not any(fnmatch.fnmatchcase(c, pattern) for c in specs):
                raise doc.error(("select",), f"'{pattern}' selects no check")
        policy.select = list(select)


def _finish(policy: Policy) -> Policy:
    for name, group in policy.groups.items():
        if group.role and group.role not in policy.roles:
            file, _, line = group.role_where.rpartition(":")
            raise ConfigError(f"role '{group.role}' is not defined under 'roles:'; known roles: "
                              f"{', '.join(policy.roles) or '(none)'}", file=file,
                              line=int(line) if line.isdigit() else None,
                              key=f"groups.{name}.role")
    if "default" not in policy.roles:
        policy.roles["default"] = {"tcp": [], "udp": []}
    return policy


def load_policy_files(paths: list[str], policy: Policy | None = None) -> Policy:
    policy = policy or Policy()
    for path in paths:
        parse_policy(load_yaml(path), policy)
    return _finish(policy)


def shipped_dir() -> str:
    from opskit.core.shipped import shipped_path
    return shipped_path(*SHIPPED)


def find_policy_dir(config) -> str | None:
    """``policy.dir`` (relative to the config file), else policies/ beside the
    config file, else /etc/opskit/policies, else the shipped examples."""
    # No config at all: an empty one, so only /etc/opskit and the shipped copy count.
    found = (config or Config({})).locate("policy.dir", "policies", shipped=SHIPPED, is_dir=True)
    if found and found.origin == "setting" and not os.path.isdir(found.path):
        raise config.error("policy.dir", f"policy directory {found.path} does not exist")
    return found.path if found else None


BASELINE_NAMES = ("baseline.yaml", "baseline.yml")


def policy_files(directory: str) -> list[str]:
    """The *.yaml of ``directory`` in reading order: the shipped baseline
    first, then the site's files by name (issue #18 item 6)."""
    names = [n for n in os.listdir(directory) if n.endswith((".yaml", ".yml"))]
    names.sort(key=lambda n: (n not in BASELINE_NAMES, n))
    return [os.path.join(directory, n) for n in names]


PROFILES_DIR = "profiles"


def profile_file(name: str, directory: str | None) -> str:
    """``profiles/NAME.yaml`` of the policy directory, else the shipped one."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"--profile {name!r}: a profile name is letters, digits, '-' and '_'")
    places = [os.path.join(d, PROFILES_DIR) for d in (directory, shipped_dir()) if d]
    for place in places:
        for suffix in (".yaml", ".yml"):
            path = os.path.join(place, name + suffix)
            if os.path.isfile(path):
                return path
    known = sorted({n.rsplit(".", 1)[0] for p in places if os.path.isdir(p)
                    for n in os.listdir(p) if n.endswith((".yaml", ".yml"))})
    raise UsageError(f"--profile {name}: no {name}.yaml in {' or '.join(places)}; known "
                     f"profiles: {', '.join(known) or '(none)'}")


def _with_profile(files: list[str], profile: str | None, directory: str | None) -> list[str]:
    """The profile file goes right after the baseline, so site files still win."""
    if not profile:
        return files
    at = 1 if files and os.path.basename(files[0]) in BASELINE_NAMES else 0
    return files[:at] + [profile_file(profile, directory)] + files[at:]


def load_policy(config=None, explicit: str | None = None, profile: str | None = None) -> Policy:
    """The policy for a run: ``--policy FILE`` (or a directory) when given, else
    every *.yaml in the policy directory, else the built-in policy; with
    ``profile``, its file is read after the baseline (and selects the checks)."""
    if explicit:
        if os.path.isdir(explicit):
            files = policy_files(explicit)
            if not files:
                raise UsageError(f"policy directory {explicit} holds no *.yaml file")
            return load_policy_files(_with_profile(files, profile, explicit))
        if not os.path.exists(explicit):
            raise UsageError(f"policy file {explicit} not found")
        return load_policy_files(_with_profile([explicit], profile,
                                               os.path.dirname(explicit)))
    directory = find_policy_dir(config)
    files = policy_files(directory) if directory else []
    if not files and not profile:
        return built_in_policy()
    # no policy files: the profile on top of the built-in roles
    return load_policy_files(_with_profile(files, profile, directory),
                             None if files else built_in_policy())


def describe_catalogue(policy: Policy | None = None) -> list[dict[str, Any]]:
    """One row per check for docs and ``opskit policy list``. With ``policy``,
    each row also has the effective top-level settings and, per setting, the
    file:line it came from (``settings_from``; unset keys are defaults)."""
    rows = []
    for spec in (policy.specs() if policy is not None else
                 [s for s in catalogue().values() if not s.profiles]):
        row = {"check": spec.id, "rule": spec.rule, "severity": spec.severity,
               "title": spec.title, "gbt": spec.gbt, "cis": spec.cis,
               **({"remediation": spec.remediation} if spec.remediation else {}),
               "params": {k: v.default for k, v in spec.params.items()}}
        entry = policy.checks.get(spec.id) if policy is not None else None
        if entry is not None:
            if "severity" in entry.values:
                row["severity"] = entry.values["severity"]
            row["params"].update({k: v for k, v in entry.values.items() if k in spec.params})
            # values as the YAML file spells them (true, ["a"]), never a Python repr
            row["settings_from"] = {k: f"{json.dumps(v, ensure_ascii=False)} <- {entry.where[k]}"
                                    for k, v in entry.values.items()}
        elif policy is not None:
            row["settings_from"] = {}
        if policy is not None:
            row["from"] = "; ".join(f"{k} {v}" for k, v in row["settings_from"].items()) \
                or "defaults"
        rows.append(row)
    return rows
