"""The lines the design draws, checked on the source: who may import what, and no import cycles.

Read from the AST (every import, module level or inside a function), so a lazy import that crosses a
line is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "web", "workers", "ml", "cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _sources(*packages: str) -> dict[str, Path]:
    out = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            out[_module_name(path)] = path
    return out


def _violations(modules: dict[str, Path], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for name, path in sorted(modules.items()):
        for imported in sorted(_imports(path)):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                bad.append(f"{name} imports {imported}")
    return bad


RUNTIME_ML = {n: p for n, p in _sources("ml").items() if not n.startswith("ml.build")}


@pytest.mark.parametrize(("scope", "modules", "forbidden"), [
    ("ml runtime", RUNTIME_ML,
     ("ml.build", "torch", "sklearn", "skl2onnx", "onnx", "timm", "flask", "celery", "sqlalchemy",
      "core", "web", "workers", "cli")),
    ("ml build", {n: p for n, p in _sources("ml").items() if n.startswith("ml.build")},
     ("flask", "celery", "sqlalchemy", "core", "web", "workers", "cli")),
    ("core", _sources("core"), ("flask", "celery", "web", "workers", "cli", "torch")),
    ("web", _sources("web"), ("torch", "onnxruntime", "ml.pipelines", "ml.build", "workers.tasks",
                              "workers.screening", "cli")),
    ("workers", _sources("workers"), ("flask", "torch", "web", "ml.build", "cli")),
])
def test_import_lines(scope: str, modules: dict[str, Path], forbidden: tuple[str, ...]) -> None:
    assert modules, scope
    assert _violations(modules, forbidden) == []


def test_no_import_cycles_between_project_modules() -> None:
    modules = _sources(*PACKAGES)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # "from a.b import c" names a.b.c, which is a module or an attribute of a.b.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)
