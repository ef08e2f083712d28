"""The host inventory: which machines opskit knows, how to reach them, their groups.

File shape (``configs/inventory.yaml`` documents every key)::

    defaults: {user, port, key, known_hosts, host_key_policy, allow_agent,
               connect_timeout, command_timeout}
    hosts:
      NAME: {address, port, user, key, sysroot, groups: [..], vars: {..}, ...}
    groups:
      NAME: {hosts: [..], vars: {..}}

A host without ``address`` (or with ``address: local``) is the local machine
(LocalHost, optionally with a ``sysroot``). A host's groups are the union of
its own ``groups:`` list and every group listing it. Variables: group vars
in the order the groups are declared, then the host's own vars win.

Settings resolve: host entry > inventory ``defaults`` > the config's ``ssh:``
section > built-in defaults. Relative paths (key, known_hosts, sysroot) are
relative to the inventory file.

With no inventory file the embedded default is a single local ``localhost``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from opskit.core.errors import UsageError
from opskit.core.schema import Key, MapOf, Section, positive, validate
from opskit.core.yamlfile import YamlDoc, load_yaml

from .base import Host

LOCAL = "local"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _port(value):
    return None if 1 <= value <= 65535 else f"expected a TCP port (1-65535), got {value!r}"


def _connection_keys() -> dict[str, Key]:
    """Keys allowed both in ``defaults:`` and in each host."""
    return {
        "user": Key(str, None, "Login user. Default: your own user name."),
        "port": Key(int, None, "SSH port. Default 22.", check=_port),
        "key": Key(str, None, "Private key file (mode 0600). Default: ~/.ssh/id_* as ssh does."),
        "known_hosts": Key(str, None, "known_hosts file. Default: ssh.known_hosts of the config, "
                                      "else ~/.ssh/known_hosts."),
        "host_key_policy": Key(str, None, "'reject' or 'accept-new'. Default: ssh.host_key_policy.",
                               choices=("reject", "accept-new")),
        "allow_agent": Key(bool, None, "Use keys from ssh-agent. Default false."),
        "connect_timeout": Key(float, None, "Seconds to connect. Default: ssh.connect_timeout.",
                               check=positive),
        "command_timeout": Key(float, None, "Seconds a command may run. Default: "
                                            "ssh.command_timeout.", check=positive),
    }


SCHEMA = Section({
    "defaults": Section(_connection_keys(), "Settings every host inherits."),
    "hosts": MapOf(Section({
        **_connection_keys(),
        "address": Key(str, None, "DNS name or IP to SSH to; omit or 'local' for this machine."),
        "sysroot": Key(str, None, "Local hosts only: map every file path under this directory."),
        "groups": Key(list, [], "Groups this host belongs to.", item_type=str),
        "vars": Key(dict, {}, "Free-form variables for playbooks and checks (no secrets)."),
    }), "Hosts by name."),
    "groups": MapOf(Section({
        "hosts": Key(list, [], "Host names in this group.", item_type=str),
        "vars": Key(dict, {}, "Variables every member gets (host vars win)."),
    }), "Groups by name."),
})


@dataclass
class SSHSettings:
    """The config's ``ssh:`` section: the fallbacks for every SSH host."""

    known_hosts: str | None = None
    host_key_policy: str = "reject"
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    concurrency: int = 16

    @classmethod
    def coerce(cls, value) -> "SSHSettings":
        """Accept SSHSettings, a Config, the ``ssh:`` dict, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f for f in cls.__dataclass_fields__}
            return cls(**{k: v for k, v in value.items() if k in known and v is not None})
        return cls.from_config(value)

    @classmethod
    def from_config(cls, config) -> "SSHSettings":
        """Read ``ssh.*`` from an ``opskit.core.config.Config``."""
        known = config.get("ssh.known_hosts")
        return cls(known_hosts=config.relative_path(known) if known else None,
                   host_key_policy=config.get("ssh.host_key_policy"),
                   connect_timeout=float(config.get("ssh.connect_timeout")),
                   command_timeout=float(config.get("ssh.command_timeout")),
                   concurrency=int(config.get("ssh.concurrency")))


@dataclass
class HostSpec:
    """One inventory entry, defaults already applied. ``address`` None = local."""

    name: str
    address: str | None = None
    port: int | None = None
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None
    host_key_policy: str | None = None
    allow_agent: bool = False
    connect_timeout: float | None = None
    command_timeout: float | None = None
    sysroot: str | None = None
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.address is None

    @property
    def endpoint(self) -> str:
        """``address:port`` for SSH hosts, ``local`` (plus sysroot) for local ones."""
        if self.is_local:
            return f"local (sysroot {self.sysroot})" if self.sysroot else "local"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port or 22}"

    def connect(self, ssh_settings: "SSHSettings | dict | None" = None) -> Host:
        """A Host for this entry (SSH connections open lazily, on first use).
        ``ssh_settings``: SSHSettings, a Config, the ``ssh:`` dict, or None."""
        if self.is_local:
            from .local import LocalHost
            return LocalHost(self.name, sysroot=self.sysroot)
        from .ssh import SSHHost
        s = SSHSettings.coerce(ssh_settings)
        return SSHHost(
            self.name, self.address, port=self.port or 22, user=self.user,
            key_filename=self.key, known_hosts=self.known_hosts or s.known_hosts,
            host_key_policy=self.host_key_policy or s.host_key_policy,
            connect_timeout=self.connect_timeout or s.connect_timeout,
            command_timeout=self.command_timeout or s.command_timeout,
            allow_agent=self.allow_agent)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address or LOCAL,
                "port": None if self.is_local else self.port or 22,
                "user": self.user, "endpoint": self.endpoint, "sysroot": self.sysroot,
                "groups": list(self.groups), "vars": dict(self.vars)}


@dataclass
class Inventory:
    """Hosts (in file order) and groups (name -> member names, file order)."""

    hosts: dict[str, HostSpec]
    groups: dict[str, list[str]] = field(default_factory=dict)
    source: str | None = None          # None: the embedded default

    def host(self, name: str) -> HostSpec:
        """The entry called ``name``; UsageError (exit 2) listing known ones if none."""
        if name not in self.hosts:
            raise UsageError(f"unknown host '{name}'{self._where()}; known hosts: "
                             f"{_listing(self.hosts)}")
        return self.hosts[name]

    def group(self, name: str) -> list[HostSpec]:
        """Members of group ``name``; UsageError listing known groups if none."""
        if name not in self.groups:
            known = _listing(self.groups) if self.groups else "(none defined)"
            raise UsageError(f"unknown group '{name}'{self._where()}; known groups: {known}")
        return [self.hosts[h] for h in self.groups[name]]

    def select(self, hosts: list[str] | None = None, group: str | None = None) -> list[HostSpec]:
        """The named hosts plus the members of ``group`` (union, inventory order);
        every host when neither is given."""
        if not hosts and not group:
            return list(self.hosts.values())
        wanted = {self.host(h).name for h in hosts or []}
        if group:
            wanted.update(spec.name for spec in self.group(group))
        return [spec for name, spec in self.hosts.items() if name in wanted]

    def _where(self) -> str:
        return f" in {self.source}" if self.source else " (no inventory file: only 'localhost')"


def _listing(names, limit: int = 30) -> str:
    names = list(names)
    text = ", ".join(names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def default_inventory() -> Inventory:
    """The embedded inventory: just this machine, as ``localhost``."""
    return Inventory({"localhost": HostSpec("localhost", groups=[])}, {}, None)


def _path(value: str | None, base: str) -> str | None:
    if not value:
        return None
    value = os.path.expanduser(value)
    return value if os.path.isabs(value) else os.path.join(base, value)


def parse_inventory(doc: YamlDoc) -> Inventory:
    """Validate a parsed inventory document (errors name file, line and key)."""
    data = validate(SCHEMA, doc.data, doc)
    base = os.path.dirname(os.path.abspath(doc.file))
    defaults = data["defaults"]
    groups: dict[str, list[str]] = {}
    group_vars: dict[str, dict] = {}
    for gname, group in data["groups"].items():
        if not _NAME.match(gname):
            raise doc.error(("groups", gname), f"invalid group name {gname!r}: use letters, "
                                               "digits, '.', '_' and '-'")
        for i, member in enumerate(group["hosts"]):
            if member not in data["hosts"]:
                raise doc.error(("groups", gname, "hosts", i),
                                f"unknown host '{member}'; known hosts: {_listing(data['hosts'])}")
        groups[gname] = []
        group_vars[gname] = group["vars"] or {}

    hosts: dict[str, HostSpec] = {}
    for name, entry in data["hosts"].items():
        if not _NAME.match(name):
            raise doc.error(("hosts", name), f"invalid host name {name!r}: use letters, digits, "
                                             "'.', '_' and '-'")
        merged = {k: entry[k] if entry[k] is not None else defaults.get(k)
                  for k in _connection_keys()}
        address = entry["address"]
        if address in (None, "", LOCAL):
            address = None
        elif entry["sysroot"]:
            raise doc.error(("hosts", name, "sysroot"), "sysroot is only for local hosts "
                                                        "(omit 'address' or set it to 'local')")
        member_of = list(dict.fromkeys(entry["groups"]))
        for i, gname in enumerate(entry["groups"]):
            if not _NAME.match(gname):
                raise doc.error(("hosts", name, "groups", i), f"invalid group name {gname!r}")
            groups.setdefault(gname, [])
            group_vars.setdefault(gname, {})
        for gname, group in data["groups"].items():
            if name in group["hosts"] and gname not in member_of:
                member_of.append(gname)
        variables: dict[str, Any] = {}
        for gname in groups:                       # declaration order
            if gname in member_of:
                variables.update(group_vars[gname])
        variables.update(entry["vars"] or {})
        hosts[name] = HostSpec(
            name=name, address=address, port=merged["port"], user=merged["user"],
            key=_path(merged["key"], base), known_hosts=_path(merged["known_hosts"], base),
            host_key_policy=merged["host_key_policy"], allow_agent=bool(merged["allow_agent"]),
            connect_timeout=merged["connect_timeout"], command_timeout=merged["command_timeout"],
            sysroot=_path(entry["sysroot"], base), groups=member_of, vars=variables)
        for gname in member_of:
            if name not in groups[gname]:
                groups[gname].append(name)
    # members in inventory order, whichever side declared them
    order = list(hosts)
    groups = {g: sorted(members, key=order.index) for g, members in groups.items()}
    if not hosts:
        raise doc.error(("hosts",), "the inventory lists no hosts")
    return Inventory(hosts, groups, doc.file)


def load_inventory_file(path: str) -> Inventory:
    """Load and validate one inventory file."""
    doc = load_yaml(path)
    if doc.data is None:
        raise doc.error((), "the inventory file is empty; it must list hosts")
    return parse_inventory(doc)


def find_inventory_file(config) -> str | None:
    """``inventory:`` from the config (relative to it), else ``inventory.yaml``
    beside the config file when present, else None (the embedded default)."""
    found = config.locate("inventory", "inventory.yaml", system=False)
    return found.path if found else None


def load_inventory(config) -> Inventory:
    """The inventory for ``config`` (an ``opskit.core.config.Config``)."""
    path = find_inventory_file(config)
    if path is None:
        return default_inventory()
    if not os.path.exists(path) and config.get("inventory"):
        raise config.error("inventory", f"inventory file {path} not found")
    return load_inventory_file(path)
