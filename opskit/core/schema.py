"""A small declarative schema for YAML config files.

Each leaf is a ``Key`` (type, default, one-line doc); ``Section`` groups keys;
``MapOf`` is a user-named mapping (e.g. ``sites: {dr: {...}}``). ``validate``
checks a parsed YamlDoc against it, fills defaults, and raises ConfigError
naming file, line and key with what was expected.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from .yamlfile import YamlDoc, dotted

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


def positive(value) -> str | None:
    """A ``Key`` check: the value must be above zero."""
    return None if value > 0 else f"expected a positive number, got {value!r}"


def at_most_per_core(factor: int) -> Callable[[Any], str | None]:
    """A ``Key`` check: at most ``factor`` x the CPU cores of this machine (worker
    counts: more processes than that only add memory, #28 item 2)."""
    def check(value) -> str | None:
        cores = os.cpu_count() or 1
        if value <= cores * factor:
            return None
        return (f"expected at most {cores * factor} ({factor} per CPU core, {cores} "
                f"core(s) here), got {value!r}")
    return check


@dataclass
class Key:
    """A leaf setting. ``type`` may be a tuple; ``None`` is allowed when ``nullable``."""

    type: Any
    default: Any = None
    doc: str = ""
    choices: tuple | None = None
    nullable: bool = True
    item_type: Any = None            # for lists: type of each item
    check: Callable[[Any], str | None] | None = None   # returns an error text or None
    min: float | None = None
    max: float | None = None         # resource settings are bounded (#28 item 2)

    def expected(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        text = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        if self.item_type is not None:
            text += " of " + _TYPE_NAMES.get(self.item_type, self.item_type.__name__).split(" ", 1)[1] + "s"
        return text


@dataclass
class Section:
    keys: dict[str, Any]
    doc: str = ""


@dataclass
class MapOf:
    """A mapping whose keys the user names, each value validated by ``value``."""

    value: Any
    doc: str = ""
    default: dict = field(default_factory=dict)


def defaults(node: Any) -> Any:
    """The embedded default value tree of a schema node."""
    if isinstance(node, Section):
        return {name: defaults(child) for name, child in node.keys.items()}
    if isinstance(node, MapOf):
        return copy.deepcopy(node.default)
    return copy.deepcopy(node.default)


def _type_ok(key: Key, value: Any) -> bool:
    types = key.type if isinstance(key.type, tuple) else (key.type,)
    if isinstance(value, bool) and bool not in types:
        return False  # YAML 'yes' must not pass as an int
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, types)


def validate(node: Any, value: Any, doc: YamlDoc, path: tuple = ()) -> Any:
    """Validate ``value`` (from ``doc``) against schema ``node``; return it with defaults filled."""
    if isinstance(node, Section):
        if value is None:
            return defaults(node)
        if not isinstance(value, dict):
            raise doc.error(path, f"expected a mapping of settings, got {_describe(value)}")
        out = defaults(node)
        for name, sub in value.items():
            if name not in node.keys:
                known = ", ".join(sorted(node.keys))
                raise doc.error(path + (name,), f"unknown key '{name}'; expected one of: {known}")
            out[name] = validate(node.keys[name], sub, doc, path + (name,))
        return out
    if isinstance(node, MapOf):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise doc.error(path, f"expected a mapping of named entries, got {_describe(value)}")
        return {str(name): validate(node.value, sub, doc, path + (name,)) for name, sub in value.items()}
    key: Key = node
    if value is None:
        if key.nullable:
            return key.default
        raise doc.error(path, f"a value is required: expected {key.expected()}")
    if not _type_ok(key, value):
        raise doc.error(path, f"expected {key.expected()}, got {_describe(value)}")
    if key.choices and value not in key.choices:
        raise doc.error(path, f"expected {key.expected()}, got {value!r}")
    if key.min is not None and value < key.min:
        raise doc.error(path, f"expected a value of at least {key.min}, got {value!r}")
    if key.max is not None and value > key.max:
        raise doc.error(path, f"expected a value of at most {key.max}, got {value!r}")
    if key.item_type is not None:
        for i, item in enumerate(value):
            if not isinstance(item, key.item_type):
                raise doc.error(path + (i,), f"expected {key.expected()}, item {i} is {_describe(item)}")
    if key.check:
        problem = key.check(value)
        if problem:
            raise doc.error(path, problem)
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (dict,)):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"


def walk_keys(node: Any, path: tuple = ()):
    """Yield (dotted key, Key) for every leaf; used for docs and the example-config test."""
    if isinstance(node, Section):
        for name, child in node.keys.items():
            yield from walk_keys(child, path + (name,))
    elif isinstance(node, MapOf):
        yield from walk_keys(node.value, path + ("<name>",))
    else:
        yield dotted(path), node
