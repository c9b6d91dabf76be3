"""The house gates, on this checkout: ruff (lint and format), mypy, and the house rules of the brief
that a linter does not know, read from the source with `ast`:

- no module of cao_sidecar uses another of our modules' private names (`from x import _y`,
  `x._y`, `obj._y` where `_y` is defined only in another of our modules);
- no import cycle among cao_sidecar modules at import time (module-level imports; imports inside
  functions and under `if TYPE_CHECKING:` do not count: they are how cycles are broken);
- every .py file under cao_sidecar/ and clients/python/ is under 600 lines.

Configuration lives in pyproject.toml ([tool.ruff], [tool.mypy]); mypy keeps its cache in the
checkout's .mypy_cache (gitignored), so a second run takes a few seconds.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cao_sidecar"
MAX_LINES = 600

# Files allowed over MAX_LINES for now, each with the reason and a ceiling it must stay under.
OVERSIZED: dict[str, tuple[int, str]] = {}


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _gate(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}", pytrace=False)


def test_ruff_check() -> None:
    _gate(_run("ruff", "check", "--no-cache", ".", timeout=120), "ruff check")


def test_ruff_format() -> None:
    _gate(_run("ruff", "format", "--check", "--no-cache", ".", timeout=120), "ruff format --check")


def test_mypy() -> None:
    # Files, strictness and the cache dir come from pyproject.toml's [tool.mypy].
    _gate(_run("mypy", timeout=600), "mypy")


# ---- house rules, from the source --------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES: dict[str, ast.Module] = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_names_defined(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, globals, attributes it assigns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.alias) and node.asname is None:
            names.add(node.name.rsplit(".", 1)[-1])
    return {n for n in names if _private(n)}


def _resolve(module: str, node: ast.ImportFrom) -> str | None:
    """The absolute module an ImportFrom names (relative ones resolved against `module`)."""
    if not node.level:
        return node.module
    base = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def private_reaches() -> list[str]:
    defined = {name: _private_names_defined(tree) for name, tree in TREES.items()}
    found = []
    for name, tree in TREES.items():
        where = MODULES[name].relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(name, node)
                if source is not None and (source == "cao_sidecar" or source.startswith("cao_sidecar.")):
                    found += [f"{where}:{node.lineno}: from {source} import {a.name}" for a in node.names if _private(a.name)]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if node.attr in defined[name]:
                    continue  # its own (another instance of a class of this module, say)
                owners = sorted(other for other, names in defined.items() if node.attr in names)
                if owners:
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)} (private to {', '.join(owners)})")
    return found


def test_no_module_reaches_into_another_modules_privates() -> None:
    assert private_reaches() == []


def _import_time_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: its body, class bodies, if/try/with blocks;
    not function bodies, not `if TYPE_CHECKING:`."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                out.append(stmt)
            elif isinstance(stmt, ast.If):
                if ast.unparse(stmt.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    visit(stmt.orelse)
                else:
                    visit(stmt.body)
                    visit(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                visit(stmt.body)
                for handler in stmt.handlers:
                    visit(handler.body)
                visit(stmt.orelse)
                visit(stmt.finalbody)
            elif isinstance(stmt, (ast.ClassDef, ast.With)):
                visit(stmt.body)

    visit(tree.body)
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in TREES.items():
        edges: set[str] = set()
        for stmt in _import_time_imports(tree):
            if isinstance(stmt, ast.Import):
                edges |= {a.name for a in stmt.names if a.name in MODULES}
                continue
            source = _resolve(name, stmt)
            if source not in MODULES:
                continue
            for alias in stmt.names:  # `from pkg import mod` imports the submodule
                edges.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source)
        edges.discard(name)
        graph[name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycles_at_import_time() -> None:
    assert import_cycles(import_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    # The check above must be able to fail: a ring, a self-contained pair and a tail.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(import_cycles(graph)) == [["a", "b", "c"], ["d", "e"]]


def test_the_import_graph_sees_module_level_imports() -> None:
    graph = import_graph()
    assert "cao_sidecar.core.typist" in graph["cao_sidecar.core.supervisor"]
    # A TYPE_CHECKING import is not an edge (typing_recovery names the supervisor only for types).
    assert "cao_sidecar.core.supervisor" not in graph["cao_sidecar.core.typing_recovery"]


def test_files_are_under_600_lines() -> None:
    sources = sorted([*PACKAGE.rglob("*.py"), *(ROOT / "clients" / "python").rglob("*.py")])
    lengths = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in sources}
    too_long = {path: n for path, n in lengths.items() if n >= MAX_LINES and not (path in OVERSIZED and n < OVERSIZED[path][0])}
    assert too_long == {}, f"split these by responsibility (limit {MAX_LINES} lines): {too_long}"
    # An allowance for a file that has since come under the limit is removed.
    assert [path for path in OVERSIZED if lengths.get(path, 0) < MAX_LINES] == []


def test_every_package_is_in_the_wheel() -> None:
    """pyproject lists the packages by name: one left out is missing from the wheel a host's node
    is installed from (hosts/install.py), though every test from the checkout passes."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py") if "agent_profiles" not in p.parts}
    assert sorted(found - listed) == []
