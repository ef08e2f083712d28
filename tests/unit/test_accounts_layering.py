"""The declared model lives in opskit.accounts and perms is analysis over it (issue #16):
no accounts module imports opskit.perms, and accounts modules import each other without a
cycle, function-local imports included."""
import ast
import os

import opskit.accounts

PKG = os.path.dirname(opskit.accounts.__file__)


def _imports(path: str) -> list[tuple[int, str]]:
    """Every module (and ``module.name``) an accounts module imports, at any depth."""
    out = []
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "opskit.accounts" + (f".{base}" if base else "")
            out += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def _graph() -> dict[str, dict[str, list[tuple[int, str]]]]:
    return {name[:-3]: _imports(os.path.join(PKG, name))
            for name in sorted(os.listdir(PKG)) if name.endswith(".py")}


def _cycle(deps: dict[str, set[str]], start: str) -> list[str] | None:
    stack = [[start]]
    while stack:
        path = stack.pop()
        for d in sorted(deps.get(path[-1], ())):
            if d == start:
                return path + [d]
            if d not in path:
                stack.append(path + [d])
    return None


def test_accounts_never_imports_perms():
    bad = [f"opskit/accounts/{mod}.py:{line} imports {target}"
           for mod, imports in _graph().items() for line, target in imports
           if target == "opskit.perms" or target.startswith("opskit.perms.")]
    assert bad == []


def test_accounts_modules_import_each_other_without_cycles():
    graph = _graph()
    deps = {mod: {t.split(".")[2] for _l, t in imports
                  if t.startswith("opskit.accounts.") and t.split(".")[2] in graph} - {mod}
            for mod, imports in graph.items()}
    assert "requestfile" in deps["declared"] and "declared" in deps["requests"]
    assert [c for c in (_cycle(deps, m) for m in deps) if c] == []


def test_cycle_finder_sees_a_cycle():
    # the checker itself must be able to fail: the old requests <-> roster pair
    assert _cycle({"requests": {"roster"}, "roster": {"requests"}}, "roster") == [
        "roster", "requests", "roster"]
