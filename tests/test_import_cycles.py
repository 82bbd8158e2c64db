"""No import cycles inside the repository's packages (shared/ and every paper folder).

The graph is read with ``ast``, not by importing: a module's edges are every ``import`` / ``from ... import``
anywhere in it (top level, inside functions, under ``if TYPE_CHECKING:``) and every
``importlib.import_module("<literal>")``. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg`` (its ``__init__``). Importing a submodule is not counted as importing its parent
packages (every submodule would otherwise close a cycle with the ``__init__`` that re-exports it).
"""
from __future__ import annotations

import ast
from pathlib import Path

from shared import PAPERS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", *PAPERS)


def module_files(packages: tuple[str, ...] = PACKAGES, root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the packages (``pkg/__init__.py`` -> ``pkg``)."""
    out: dict[str, Path] = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a (possibly relative) import target seen in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def import_edges(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ``known`` that ``module`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in known else base)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    edges = set()
    for name in found:  # ``import a.b.c`` of a known module; an unknown tail falls back to its package
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            edges.add(name)
    return edges


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_cycle_and_reads_relative_and_lazy_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import c\n    return c\n")
    (pkg / "b.py").write_text("import importlib\nimportlib.import_module('pkg.a')\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import b\n")
    known = module_files(("pkg",), tmp_path)
    graph = {m: import_edges(m, f, known) for m, f in known.items()}
    assert graph["pkg"] == {"pkg.a"} and graph["pkg.a"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    (pkg / "b.py").write_text("import os\n")
    graph = {m: import_edges(m, f, known) for m, f in known.items()}
    assert find_cycles(graph) == []


def test_no_import_cycles_in_the_repository():
    known = module_files()
    graph = {m: import_edges(m, f, known) for m, f in known.items()}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (move the shared piece into a third module):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)
