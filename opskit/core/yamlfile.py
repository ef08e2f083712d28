"""Safe YAML loading that remembers where every key came from.

Config, inventory, roster and policy files all go through ``load_yaml`` so
that an error can name the file, the line and the key (never a traceback).
Only ``yaml.SafeLoader`` is used: no arbitrary Python objects; aliases that would
expand a small file into a huge document ("billion laughs") are refused.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

Path_ = tuple  # a key path such as ("backup", "repo") or ("hosts", 0)


@dataclass
class YamlDoc:
    """Parsed YAML data plus the 1-based line of every key path in it."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path_, message: str, hint: str | None = None) -> ConfigError:
        """A ConfigError naming this file, the line of ``path`` and the dotted key."""
        key = dotted(path) if path else None
        return ConfigError(message, file=self.file, line=self.line(path), key=key, hint=hint)


def dotted(path: Path_) -> str:
    """('backup', 'sites', 'dr', 'url') -> 'backup.sites.dr.url'; list indexes as [i]."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _walk(loader, node, path: Path_, lines: dict, file: str) -> Any:
    import yaml
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve '<<' merge keys
        result: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ConfigError("mapping keys must be plain scalars", file=file,
                                  line=key_node.start_mark.line + 1, key=dotted(path) or None)
            if key in result:
                raise ConfigError(f"duplicate key '{key}'", file=file,
                                  line=key_node.start_mark.line + 1, key=dotted(path + (key,)))
            result[key] = _walk(loader, value_node, path + (key,), lines, file)
            lines[path + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, path + (i,), lines, file) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


# Aliases may repeat a node, but the expanded document may hold at most this many
# times the nodes written plus a small allowance (merge keys in an inventory);
# a billion-laughs file grows exponentially and is refused before expansion.
EXPANSION_FACTOR = 10
EXPANSION_ALLOWANCE = 10_000


def check_expansion(root, file: str) -> None:
    """Refuse alias expansion beyond the bound, and recursive aliases (#28 item 4).

    Counts, without expanding, how many nodes the document stands for (each
    distinct node once, memoised): linear in the nodes written."""
    import yaml
    size: dict[int, int] = {}       # node -> nodes it expands to (-1: being counted)
    distinct = 0
    # iterative post-order walk: a deeply nested file must not exhaust the stack
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        children = _children(node, yaml)
        if leaving:
            size[key] = 1 + sum(size[id(child)] for child in children)
            if size[key] > EXPANSION_FACTOR * distinct + EXPANSION_ALLOWANCE:
                raise ConfigError(
                    f"aliases expand to at least {size[key]:,} nodes from {distinct:,} written "
                    "(a 'billion laughs' file?); refusing to expand them", file=file,
                    line=node.start_mark.line + 1)
            continue
        state = size.get(key)
        if state == -1:         # entered again before it was left: it contains itself
            raise ConfigError("recursive alias: a node contains itself", file=file,
                              line=node.start_mark.line + 1)
        if state is not None:
            continue
        size[key] = -1
        distinct += 1
        stack.append((node, True))
        stack.extend((child, False) for child in children)


def _children(node, yaml) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def parse_yaml(text: str, file: str) -> YamlDoc:
    """Parse YAML text (one document) with safe loading and line tracking."""
    import yaml  # here, not at module level: commands without a config file never need it
    # libyaml's safe loader when present (3x faster on a 10,000-person roster);
    # same safe constructors and the same marks for line numbers
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDoc(file, None, {})
        check_expansion(node, file)
        lines: dict[Path_, int] = {}
        data = _walk(loader, node, (), lines, file)
        return YamlDoc(file, data, lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise ConfigError(f"not valid YAML: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()


def load_yaml(path: str | os.PathLike) -> YamlDoc:
    """Read and parse a YAML file; unreadable or malformed files raise ConfigError."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ConfigError("file not found", file=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("file is not UTF-8 text", file=path, line=line) from None
    return parse_yaml(text, path)
