"""The package's import structure: no import cycles between modules, and imports only run downward
through the layers (cli -> plugin/batch -> training/evaluation/loading -> engine -> io ->
provenance -> model/prompts).

Every ``import`` statement of every module is read from the source (``ast``), including imports
inside functions and under ``TYPE_CHECKING``: a lazy import still ties the two modules together.
A cycle makes a module's behaviour depend on which module happens to be imported first; an upward
import drags a heavy layer (napari, Dask, the command line) into a light one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_seem

PACKAGE_DIR = Path(napari_seem.__file__).resolve().parent

# Layer of each part of the package (the longest matching name wins). A module may import from a
# lower layer, from its own part, and sideways within the layers listed in SIDEWAYS.
LAYERS = {
    "napari_seem.model": 0,
    "napari_seem.prompts": 0,
    "napari_seem.provenance": 1,  # how labels were made (plain JSON of prompts)
    "napari_seem.io": 2,
    "napari_seem.engine": 3,
    "napari_seem.training": 4,
    "napari_seem.evaluation": 4,  # the click protocol: training simulates its clicks
    "napari_seem.loading": 4,  # ready models: the default model is a training checkpoint
    "napari_seem.user_models": 4,
    "napari_seem.plugin": 5,
    "napari_seem.batch": 5,
    "napari_seem.cli": 6,
    "napari_seem.evaluation.cli": 6,  # `napari-seem eval`: a command line
    "napari_seem": 7,  # the package's entry points (load_model, annotate)
}
SIDEWAYS = {4, 6}  # training, evaluation and loading use each other; so do the command lines


def module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ["napari_seem", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def add(target: str) -> None:
        while target not in modules and "." in target:  # an attribute of a module
            target = target.rsplit(".", 1)[0]
        if target in modules and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "napari_seem":
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin.split(".")[0] != "napari_seem":
                continue
            for alias in node.names:  # `from package import submodule` imports the submodule
                add(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def part_of(module: str) -> str:
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default="")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a cycle path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_path(graph, set(c)) for c in components]


def _cycle_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle through the component, as ``[a, b, ..., a]`` (for a readable failure)."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first, back to the start
        nxt = []
        for node in frontier:
            for other in sorted(graph[node] & component):
                if other == start:
                    return paths[node] + [start]
                if other not in paths:
                    paths[other] = paths[node] + [other]
                    nxt.append(other)
        frontier = nxt
    return sorted(component)


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        here = part_of(module)
        for target in sorted(targets):
            there = part_of(target)
            if there == here or LAYERS[there] < LAYERS[here]:
                continue
            if LAYERS[there] == LAYERS[here] and LAYERS[here] in SIDEWAYS:
                continue
            problems.append(f"{module} (layer {LAYERS[here]}) imports {target} (layer {LAYERS[there]})")
    return problems


def test_every_module_has_a_layer():
    unplaced = [m for m in import_graph() if not part_of(m) or part_of(m) == "napari_seem" and m != "napari_seem"]
    assert not unplaced, f"give these modules a layer in LAYERS: {unplaced}"


def test_no_import_cycles_between_modules():
    found = cycles(import_graph())
    assert not found, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in found)


def test_imports_only_run_down_the_layers():
    problems = layering_violations(import_graph())
    assert not problems, "upward or sideways imports:\n  " + "\n  ".join(problems)


# -------------------------------------------------------------------------- the checker itself
def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    modules = {}
    for name, text in files.items():
        path = root / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        modules[name] = path
    return modules


@pytest.mark.parametrize("lazy", [False, True])
def test_a_cycle_is_found_also_through_an_import_inside_a_function(tmp_path, lazy):
    body = "def f():\n    from .a import x\n" if lazy else "from .a import x\n"
    modules = _write(tmp_path, {"napari_seem.engine.a": "from napari_seem.engine.b import y\nx = 1\n",
                                "napari_seem.engine.b": body + "y = 2\n"})
    graph = {n: imported_modules(n, p, modules) for n, p in modules.items()}
    assert cycles(graph) == [["napari_seem.engine.a", "napari_seem.engine.b", "napari_seem.engine.a"]]


def test_an_upward_import_is_found(tmp_path):
    modules = _write(tmp_path, {"napari_seem.batch.tasks": "def f():\n    from napari_seem.cli import precompute\n",
                                "napari_seem.cli.precompute": "",
                                "napari_seem.cli": "",
                                "napari_seem.engine.predictor": "from napari_seem.model import build_seem\n",
                                "napari_seem.model": ""})
    graph = {n: imported_modules(n, p, modules) for n, p in modules.items()}
    assert layering_violations(graph) == [
        "napari_seem.batch.tasks (layer 5) imports napari_seem.cli.precompute (layer 6)"]
