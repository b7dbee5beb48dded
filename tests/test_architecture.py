"""The layers of the package, checked from its source (docs/architecture.md).

Every ``babyemo`` module belongs to a layer; a module imports only from its own layer or
the layers below it, at module level and inside functions alike, and the module-level
imports have no cycle. The order (issue 14): data -> transforms -> models ->
training/inference -> evaluation/prediction -> cli, with the stdlib-like base below all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("babyemo", "babyemo.errors", "babyemo.config", "babyemo.runtime",
              "babyemo.paths", "babyemo.fs", "babyemo.progress", "babyemo.parallel",
              "babyemo.metrics", "babyemo.reports", "babyemo.calibration", "babyemo.devices",
              "babyemo.download", "babyemo.leftovers", "babyemo.distributed")),
    ("faces", ("babyemo.faces",)),
    ("data", ("babyemo.data",)),
    ("transforms", ("babyemo.transforms",)),
    ("models", ("babyemo.models", "babyemo.checkpoint", "babyemo.onnx_format")),
    ("training/inference", ("babyemo.training", "babyemo.inference", "babyemo.engines")),
    ("evaluation/prediction", ("babyemo.evaluation", "babyemo.prediction", "babyemo.rows",
                               "babyemo.card", "babyemo.export", "babyemo.prediction_shards",
                               "babyemo.video")),
    ("serve", ("babyemo.serve",)),
    ("cli", ("babyemo.cli", "babyemo.__main__")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((SRC / "babyemo").rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index of the layer of ``module`` (the longest matching prefix wins)."""
    best, index = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, i
    if index is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and the doc)")
    return index


def imports_of(module: str) -> list[tuple[str, bool]]:
    """``(imported babyemo module, at module level)`` for every import of ``module``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    type_checking = set()
    for node in tree.body:  # `if TYPE_CHECKING:` blocks are annotations only
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(id(n) for n in ast.walk(node))
    out = []
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("babyemo"):
                while name not in MODULES and "." in name:
                    name = name.rpartition(".")[0]
                if name in MODULES and name != module:
                    out.append((name, id(node) in top))
    return out


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    mine = layer_of(module)
    upward = sorted({f"{target} ({LAYERS[layer_of(target)][0]})"
                     for target, _ in imports_of(module) if layer_of(target) > mine})
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports from a higher layer: {upward}"


def test_no_import_cycle():
    graph = {m: sorted({t for t, top in imports_of(m) if top}) for m in MODULES}
    # a package imports its own submodules through __init__: a lazy facade, not a cycle
    graph = {m: [t for t in targets if not t.startswith(m + ".")] for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_shadows_the_standard_library():
    import sys

    stdlib = sys.stdlib_module_names
    shadowing = sorted(m for m in MODULES if m.rpartition(".")[2] in stdlib)
    assert not shadowing, shadowing
