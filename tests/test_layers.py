"""The package's layers, read from the source: every import (module level or inside a
function) points down the table below or stays in its own package, and no two modules
import each other, directly or through others.

A package's place in the table is its promise of what it may import; docs/architecture.md
draws the same picture."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import flink_dl

PACKAGE = Path(flink_dl.__file__).parent

#: Low to high. A package may import packages of a lower layer (and its own), never higher.
LAYERS: list[set[str]] = [
    {"errors", "lazy", "fsutil", "log", "settings"},
    {"flink.pyflink_adapter"},  # PyFlink's private attributes, in one module
    {"startup"},
    {"config", "channel", "models"},
    {"cluster"},
    {"flink"},
    {"training", "inference", "files"},
    {"pipeline"},
    {"pytorch", "tensorflow"},
    {"online"},
    {"cli", ""},  # "": the root package's lazy exports
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The ``LAYERS`` entry of a module: a module named there, else its package."""
    parts = module.split(".")
    if ".".join(parts[1:3]) in RANK:
        return ".".join(parts[1:3])
    return parts[1] if len(parts) > 1 else ""


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "flink_dl":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "flink_dl"}
    return found


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_every_package_has_a_layer() -> None:
    packages = {package_of(module) for module in GRAPH}
    assert packages - RANK.keys() == set()


def test_no_import_climbs_up_the_layers() -> None:
    climbs = sorted(f"{module} -> {target}" for module, targets in GRAPH.items()
                    for target in targets
                    if RANK.get(package_of(target), -1) > RANK.get(package_of(module), -1))
    assert climbs == []


def _cycles() -> list[list[str]]:
    """Cycles among modules (Tarjan's strongly connected components of size > 1)."""
    edges = {m: {t for t in ts if t in GRAPH and t != m} for m, ts in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    # A package's __init__ that lazily names its submodules is not an import of them.
    assert _cycles() == []


def _top_level_names(module: str) -> set[str] | None:
    """Names a flink-dl module defines or imports at its top level (lazy exports too), or
    ``None`` when it is not a module of the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
            if isinstance(node.value, ast.Dict) and any(
                    isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If | ast.Try):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    names |= {(a.asname or a.name).split(".")[0] for a in sub.names}
                elif isinstance(sub, ast.FunctionDef | ast.ClassDef):
                    names.add(sub.name)
                elif isinstance(sub, ast.Assign):
                    names |= {t.id for t in sub.targets if isinstance(t, ast.Name)}
    return names


def test_every_flink_dl_import_resolves() -> None:
    """A name imported from flink-dl (in the package, its tests, bench and examples, inside
    functions too) exists: a module moved in a refactor leaves no stale path behind."""
    root = PACKAGE.parent
    files = [*PACKAGE.rglob("*.py"), *(root / "tests").rglob("*.py"),
             *(root / "bench").rglob("*.py"), *(root / "examples").rglob("*.py")]
    stale = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                stale += [f"{path.relative_to(root)}:{node.lineno} import {a.name}"
                          for a in node.names if a.name.split(".")[0] == "flink_dl"
                          and importlib.util.find_spec(a.name) is None]
            elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                  and node.module.split(".")[0] == "flink_dl"):
                names = _top_level_names(node.module)
                if names is None:
                    stale.append(f"{path.relative_to(root)}:{node.lineno} {node.module}")
                    continue
                stale += [f"{path.relative_to(root)}:{node.lineno} {node.module}.{a.name}"
                          for a in node.names if a.name != "*" and a.name not in names
                          and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert stale == []
