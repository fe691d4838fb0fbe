"""The package's layers: every import flows downward, and no module imports another in a cycle.

Layers, lowest first (docs/architecture.md): core, models, methods, tasks, config, run, study,
analysis, report, cli. A module may import its own layer and the layers below it; within a layer
the imports must not form a cycle. Imports inside functions are read too, so a lazy import cannot
hide an upward edge or a cycle; the command line alone imports lazily, to start fast.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "peftlab"
LAYERS = ("core", "models", "methods", "tasks", "config", "run", "study", "analysis", "report", "cli")
LAZY_ALLOWED = {"peftlab.cli"}  # `peftlab --help` must not wait for torch, matplotlib and WeasyPrint


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package: Path) -> list[tuple[str, int, bool]]:
    """(imported peftlab module, line, inside a function) for each import of the package."""
    name = module_name(path, package)
    is_package = path.name == "__init__.py"
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                # `from peftlab.tasks import scoring` imports the module peftlab.tasks.scoring
                targets = [
                    f"{module}.{a.name}"
                    if (package / "/".join(f"{module}.{a.name}".split(".")[1:])).with_suffix(".py").exists()
                    else module
                    for a in child.names
                ]
            for target in targets:
                if target == "peftlab" or target.startswith("peftlab."):
                    found.append((target, child.lineno, in_function))
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target, _line, _lazy in imports(path, package):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name and target in modules and target != "peftlab":
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer(source) is not None and layer(target) is not None and layer(target) > layer(source):
                bad.append(f"{source} ({LAYERS[layer(source)]}) imports {target} ({LAYERS[layer(target)]})")
    return bad


def test_every_module_sits_in_a_layer():
    outside = [m for m in import_graph(PACKAGE) if m != "peftlab" and layer(m) is None]
    assert not outside, f"modules outside the layers {LAYERS}: {outside}"


def test_imports_only_flow_down():
    bad = upward_edges(import_graph(PACKAGE))
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def test_no_import_cycles():
    found = cycles(import_graph(PACKAGE))
    assert not found, f"modules importing each other in a cycle: {found}"


def test_no_package_import_hides_inside_a_function():
    lazy = [
        f"{module_name(p, PACKAGE)}:{line} imports {target}"
        for p in PACKAGE.rglob("*.py")
        if module_name(p, PACKAGE) not in LAZY_ALLOWED
        for target, line, inside in imports(p, PACKAGE)
        if inside
    ]
    assert not lazy, "imports of the package inside functions:\n" + "\n".join(lazy)


@pytest.mark.parametrize(
    "files, problem",
    [
        ({"core/a.py": "from peftlab.run import b\n", "run/b.py": ""}, "higher layer"),
        ({"tasks/a.py": "from peftlab.tasks import b\n", "tasks/b.py": "def f():\n    from . import a\n"}, "cycle"),
    ],
)
def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path, files, problem):
    package = tmp_path / "peftlab"
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    graph = import_graph(package)
    if problem == "higher layer":
        assert upward_edges(graph) == ["peftlab.core.a (core) imports peftlab.run.b (run)"]
    else:
        assert cycles(graph) == [["peftlab.tasks.a", "peftlab.tasks.b"]]
