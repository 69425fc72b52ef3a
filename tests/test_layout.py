"""The package's rooms (docs/architecture.md): the import graph has no cycle and no arrow
from a lower layer up to a higher one, and the top level holds only the core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "facefuse"

# Lowest first. A module may import its own layer and the ones below, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("facefuse.errors",),
    ("facefuse.params", "facefuse.imageio"),
    ("facefuse.stages",),
    ("facefuse", "facefuse.pipeline"),  # the public API: the package root re-exports
    ("facefuse.nn",),                   # torch only: training and the ONNX graph
    ("facefuse.export",),               # torch only: files for apps
    ("facefuse.runners",),
    ("facefuse.webui", "facefuse.phone"),
    ("facefuse.quality",),              # measures everything; nothing uses it
    ("facefuse.cli",),                  # the command line reaches every room
]
CORE_FILES = {"__init__.py", "params.py", "errors.py", "imageio.py", "pipeline.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path], *, unresolved: bool = False
               ) -> set[str]:
    """Every facefuse module `name` imports, at module level or inside functions (or, with
    `unresolved`, the facefuse imports that name no module at all)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("facefuse"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("facefuse"):
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found.update(subs or [target])
            if len(subs) < len(node.names):
                found.add(target)
    if unresolved:
        return {m for m in found if m not in modules}
    return {m for m in found if m in modules and m != name}


def layer_of(name: str) -> int:
    best, depth = -1, -1
    for index, roots in enumerate(LAYERS):
        for root in roots:
            if (name == root or name.startswith(root + ".")) and len(root) > depth:
                best, depth = index, len(root)
    return best


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    assert [m for m in all_modules() if layer_of(m) < 0] == []


def test_every_import_names_a_module():
    modules = all_modules()
    missing = {name: sorted(imports_of(name, path, modules, unresolved=True))
               for name, path in modules.items()}
    assert {k: v for k, v in missing.items() if v} == {}


def test_no_import_runs_upward():
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
              if layer_of(b) > layer_of(a)]
    assert upward == []


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    # A package's __init__ importing its own submodules is not a cycle through the code;
    # what is not allowed is a submodule needing its package's __init__ back.
    assert cycles == []


def test_top_level_holds_the_core_only():
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top <= CORE_FILES and len(top) <= 8


@pytest.mark.parametrize("room", ["stages", "runners", "quality", "cli", "webui", "nn",
                                  "export"])
def test_rooms_are_packages(room):
    assert (PACKAGE / room / "__init__.py").exists()


def test_torch_stays_out_of_the_inference_path():
    """Nothing below nn (the core, the stages) nor the runners and front-ends imports torch."""
    graph_free = [n for n in all_modules() if layer_of(n) not in (4, 5, 8, 9)]
    offenders = []
    for name in graph_free:
        tree = ast.parse(all_modules()[name].read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "torch" or n.startswith("torch.") for n in names):
                offenders.append(name)
    assert offenders == []
