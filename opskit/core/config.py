"""Loading opskit.yaml: the top-level keys, lookup, and files the settings point at.

The full schema is assembled one floor up, in ``opskit.settings`` (each
domain owns its section; core imports no domain), and handed to
``load_config``.

Lookup order: ``--config FILE``, ``$OPSKIT_CONFIG``, ``/etc/opskit/opskit.yaml``,
then embedded defaults alone, so ``opskit backup run DIR`` works on a fresh
machine with no file at all. ``configs/opskit.yaml`` documents every key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .schema import Key, Section, defaults, validate
from .shipped import shipped_path
from .yamlfile import YamlDoc, dotted, load_yaml

SYSTEM_DIR = "/etc/opskit"
SYSTEM_CONFIG = "/etc/opskit/opskit.yaml"


# The top-level keys; each domain's section is assembled beside these by
# opskit.settings (core imports no domain).
CORE_SECTION = Section({
    "operator": Key(str, None, "Name recorded as operator in the audit log, besides the OS user."),
    "state_dir": Key(str, None, "State directory; $OPSKIT_HOME wins over it. Default "
                                "~/.local/share/opskit, or /var/lib/opskit when root."),
    "inventory": Key(str, None, "Path of the host inventory (see configs/inventory.yaml). Default: "
                                "inventory.yaml beside this config file, else only 'localhost'."),
    "audit": Section({
        "path": Key(str, None, "Audit log file. Default <state_dir>/audit/audit.log."),
        "anchor_dir": Key(str, None, "Directory off this machine (a mount or a synced folder) "
                                     "that 'audit checkpoint --sign' exports signed checkpoints "
                                     "to and the evidence pack reads them from. Unset: only the "
                                     "copy in <log dir>/anchors."),
        "anchor_keys": Key(list, [], "Public keys ('ssh-ed25519 AAAA...') trusted to sign "
                                     "audit checkpoints, besides the operator's own key.",
                           item_type=str),
    }),
})


@dataclass
class Config:
    """Validated settings with embedded defaults filled in."""

    data: dict
    source: str | None = None          # file the settings came from; None = defaults only
    doc: YamlDoc | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, dotted_key: str, default: Any = None) -> Any:
        """``config.get('backup.repo')``; returns ``default`` when unset (None)."""
        node: Any = self.data
        for part in dotted_key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return default if node is None else node

    def error(self, dotted_key: str, message: str, hint: str | None = None) -> ConfigError:
        """ConfigError for a semantic problem found after loading, naming the key's line."""
        if self.doc is None:
            return ConfigError(message, key=dotted_key, hint=hint)
        return self.doc.error(tuple(dotted_key.split(".")), message, hint)

    def relative_path(self, value: str) -> str:
        """Resolve a path setting relative to the config file's directory."""
        value = os.path.expanduser(value)
        if os.path.isabs(value) or not self.source:
            return value
        return os.path.join(os.path.dirname(os.path.abspath(self.source)), value)

    def search_path(self, key: str, name: str, *, system: bool = True,
                    shipped: tuple[str, ...] | None = None) -> list[Located]:
        """Where the file or directory ``key`` points at is looked for, in order: the
        setting (relative to the config file) when set, else ``name`` beside the config
        file; then /etc/opskit/``name`` when ``system``; then the shipped copy
        (``shipped_path(*shipped)``) when ``shipped`` is given."""
        configured = self.get(key)
        if configured:
            places = [Located(self.relative_path(configured), "setting")]
        elif self.source:
            beside = os.path.join(os.path.dirname(os.path.abspath(self.source)), name)
            places = [Located(beside, "beside")]
        else:
            places = []
        if system:
            places.append(Located(os.path.join(SYSTEM_DIR, name), "system"))
        if shipped:
            places.append(Located(shipped_path(*shipped), "shipped"))
        return places

    def locate(self, key: str, name: str, *, system: bool = True,
               shipped: tuple[str, ...] | None = None, is_dir: bool = False,
               required: bool = False, hint: str | None = None) -> Located | None:
        """The setting ``key`` when set, as is (the caller reports it missing in its
        own words), else the first place of ``search_path`` that exists (a directory
        when ``is_dir``). None when none does, or, when ``required``, a ConfigError
        naming the places looked at (with ``hint``, else "set KEY")."""
        configured = self.get(key)
        if configured:
            return Located(self.relative_path(configured), "setting")
        places = self.search_path(key, name, system=system, shipped=shipped)
        exists = os.path.isdir if is_dir else os.path.exists
        for place in places:
            if exists(place.path):
                return place
        if required:
            raise ConfigError(f"no {name} found (looked at {', '.join(p.path for p in places)})",
                              hint=hint or f"set '{key}' in opskit.yaml")
        return None


@dataclass(frozen=True)
class Located:
    """A file or directory ``Config.locate`` found, and where from: "setting",
    "beside" (the config file), "system" (/etc/opskit) or "shipped"."""

    path: str
    origin: str


def find_config_file(explicit: str | None) -> str | None:
    """The config file to use, by the documented lookup order, or None for defaults."""
    if explicit:
        return explicit
    env = os.environ.get("OPSKIT_CONFIG")
    if env:
        return env
    if os.path.exists(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    return None


def load_config(explicit: str | None = None, *, schema: Section) -> Config:
    """Load and validate the config against ``schema`` (opskit.settings.SCHEMA);
    a missing explicitly named file is an error."""
    path = find_config_file(explicit)
    if path is None:
        return Config(defaults(schema))
    doc = load_yaml(path)
    if doc.data is None:          # an empty file means "all defaults"
        return Config(defaults(schema), source=path, doc=doc)
    data = validate(schema, doc.data, doc)
    return Config(data, source=path, doc=doc)


__all__ = ["CORE_SECTION", "Config", "Located", "load_config", "find_config_file", "dotted"]
