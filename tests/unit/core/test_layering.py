"""Layering: arrows only point down (cli -> domains -> hosts -> core), #16 item 2.

Every module under opskit/ is parsed with ``ast`` (no import is executed), and
each ``import`` -- at the top or inside a function, absolute or relative -- is
mapped to the opskit package it reaches. ``ALLOWED`` says which packages a
low floor may use; add a floor there to hold it to the same rule.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

OPSKIT = Path(__file__).resolve().parents[3] / "opskit"

# package -> the packages its modules may import (the root ``opskit`` itself,
# i.e. ``__version__``, is always allowed). Core may import nothing above it;
# hosts may import core only; accounts holds the declared model (roster, roles,
# grants) that perms analyses, so it imports no perms (#16 item 1).
ALLOWED = {
    "core": {"core"},
    "hosts": {"core", "hosts"},
    "accounts": {"core", "hosts", "accounts"},
}


def _module_name(root: Path, path: Path) -> tuple[str, bool]:
    """(dotted module name, is a package __init__) for a file under ``root``."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names one import statement reaches."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[:len(package) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    # 'from pkg import name' may name a submodule: keep both, the package decides
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _package_of(root: Path, dotted: str) -> str | None:
    """The opskit package (or top-level module) ``dotted`` lies in; None for the
    root package itself and for anything outside opskit."""
    parts = dotted.split(".")
    if parts[0] != root.name or len(parts) < 2:
        return None
    name = parts[1]
    if (root / name).is_dir() or (root / f"{name}.py").is_file():
        return name
    return None                      # an attribute of the root, e.g. __version__


def package_imports(root: Path) -> dict[str, dict[str, set[str]]]:
    """package -> {imported package -> modules (files) importing it}, self excluded."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(root.rglob("*.py")):
        module, is_package = _module_name(root, path)
        own = _package_of(root, module) or "__init__"
        edges = graph.setdefault(own, {})
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for dotted in _targets(node, module, is_package):
                target = _package_of(root, dotted)
                if target and target != own:
                    edges.setdefault(target, set()).add(str(path.relative_to(root.parent)))
    return graph


def layer_violations(root: Path) -> list[str]:
    """'FILE imports PACKAGE' for each import a low floor may not make (ALLOWED)."""
    out = []
    for package, edges in package_imports(root).items():
        if package not in ALLOWED:
            continue
        for target, files in sorted(edges.items()):
            if target not in ALLOWED[package]:
                out += [f"{file} imports opskit.{target}" for file in sorted(files)]
    return out


def module_imports(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the other modules of ``package`` it imports (at any depth), by file stem."""
    graph: dict[str, set[str]] = {}
    prefix = f"{root.name}.{package}."
    for path in sorted((root / package).glob("*.py")):
        module, is_package = _module_name(root, path)
        edges = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for dotted in _targets(node, module, is_package):
                if dotted.startswith(prefix):
                    name = dotted[len(prefix):].split(".")[0]
                    if name != path.stem and (root / package / f"{name}.py").is_file():
                        edges.add(name)
    return graph


def package_cycles(root: Path) -> list[list[str]]:
    """Groups of packages that import each other, directly or around a loop
    (strongly connected components of more than one package), sorted."""
    return cycles_in({p: set(edges) for p, edges in package_imports(root).items()})


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:                 # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


# --- the real tree ---------------------------------------------------------------

def test_core_and_hosts_import_no_floor_above_them():
    bad = layer_violations(OPSKIT)
    assert not bad, "arrows must point down (core <- hosts <- domains <- cli):\n" + "\n".join(bad)


def test_no_cycles_between_packages():
    cycles = package_cycles(OPSKIT)
    assert not cycles, f"packages importing each other: {cycles}"


def test_no_cycles_between_accounts_modules():
    # requests -> declared -> requestfile, roster -> roles: no function-local way round
    graph = module_imports(OPSKIT, "accounts")
    assert "requestfile" in graph["declared"] and "declared" in graph["requests"]
    assert cycles_in(graph) == [], "accounts modules importing each other"


# --- the checks themselves catch what they must ------------------------------------

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "opskit"
    for name, text in {"__init__.py": "__version__ = '0'\n", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "core/__init__.py": "",
    "core/config.py": "import os\nfrom .schema import Key\nfrom opskit import __version__\n",
    "core/schema.py": "",
    "hosts/__init__.py": "from .ssh import SSHHost\n",
    "hosts/ssh.py": "from opskit.core.config import Key\nfrom ..core import schema\n",
    "accounts/__init__.py": "",
    "accounts/roster.py": "from opskit.hosts import ssh\nfrom opskit.core import config\n",
    "perms/__init__.py": "",
    "perms/analysis.py": "from opskit.accounts import roster\n",
    "settings.py": "from opskit.accounts import roster\n",
}


def test_a_clean_tree_passes(tmp_path):
    root = _tree(tmp_path, CLEAN)
    assert layer_violations(root) == []
    assert package_cycles(root) == []


@pytest.mark.parametrize("module, line", [
    ("core/config.py", "from opskit.accounts.roster import Person\n"),
    ("core/config.py", "def load():\n    from opskit.accounts import roster\n"),   # lazy
    ("core/config.py", "from ..accounts import roster\n"),                          # relative
    ("core/config.py", "from opskit import accounts\n"),
    ("core/config.py", "import opskit.settings\n"),                  # the floor above domains
    ("core/schema.py", "from .. import hosts\n"),
    ("hosts/ssh.py", "import opskit.accounts.roster as r\n"),
    ("accounts/roster.py", "def load():\n    from opskit.perms.analysis import analyse\n"),
])
def test_an_import_reaching_up_is_caught(tmp_path, module, line):
    root = _tree(tmp_path, {**CLEAN, module: CLEAN[module] + line})
    bad = layer_violations(root)
    assert len(bad) == 1 and bad[0].startswith(f"opskit/{module} imports opskit."), bad


def test_a_module_cycle_inside_a_package_is_caught(tmp_path):
    lazy = {**CLEAN, "accounts/requests.py": "def f():\n    from .roster import load\n",
            "accounts/roster.py": "from opskit.accounts.requests import grants\n"}
    root = _tree(tmp_path, lazy)
    assert module_imports(root, "accounts") == {"requests": {"roster"}, "roster": {"requests"},
                                                "__init__": set()}
    assert cycles_in(module_imports(root, "accounts")) == [["requests", "roster"]]


def test_a_cycle_is_caught_directly_and_around_a_loop(tmp_path):
    two = {**CLEAN, "perms/__init__.py": "", "perms/roles.py": "from opskit.accounts import roster\n",
           "accounts/roster.py": CLEAN["accounts/roster.py"] + "from opskit.perms.roles import R\n"}
    assert package_cycles(_tree(tmp_path / "a", two)) == [["accounts", "perms"]]
    loop = {**two, "perms/roles.py": "from opskit.backup import keys\n",
            "backup/__init__.py": "", "backup/keys.py": "from ..accounts import roster\n"}
    assert package_cycles(_tree(tmp_path / "b", loop)) == [["accounts", "backup", "perms"]]
