"""The package's imports run one way: each stage imports only earlier stages (docs/development.md, "Layers").

The imports are read from the source (ast), so the test also sees imports inside functions, and
it checks that those are only the deferred imports of modules that load heavy libraries.
"""

from __future__ import annotations

import ast
import importlib
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scrfd_search"
# Lowest first; a module may import its own layer (without cycles) and the layers below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "io_utils"),
    ("space", "recipe"),
    ("flops",),
    ("head_settings",),
    ("models", "data", "evaluation", "config_builder", "builders", "optimizers"),
    ("config_writer", "training"),
    ("latency",),  # per-block latency tables and the predictor: below the samplers that apply budgets
    ("sampling", "search"),
    ("export", "plots", "doctor", "weights", "inference", "latency_targets"),
    ("commands", "cli"),
)
# Third-party packages slow enough to import that a module may defer them (and modules loading them).
HEAVY = {"torch", "torchvision", "mmdet", "mmengine", "mmcv", "ray", "optuna", "fvcore", "matplotlib", "onnx"}
HEAVY |= {"onnxruntime", "cv2", "scipy", "pytorch_optimizer"}


def _module_name(path: Path) -> str:
    """scrfd_search.a.b for scrfd_search/a/b.py (a package's __init__ is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


@cache
def _imports(module: str) -> tuple[tuple[str, bool], ...]:
    """(imported module, at top level) for every import statement of module."""
    tree = ast.parse(MODULES[module].read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in MODULES else node.module, id(node) in top))
    return tuple(found)


def _layer(module: str) -> int:
    """The index in LAYERS of the stage a scrfd_search module belongs to."""
    stage = module.split(".")[1] if "." in module else ""
    for index, names in enumerate(LAYERS):
        if stage in names:
            return index
    raise AssertionError(f"{module}: its stage {stage!r} is in no layer of tests/test_layers.py")


def _loads_heavy(module: str) -> bool:
    """Whether importing module imports a heavy library (itself, through its packages or its imports)."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        parts = current.split(".")
        todo += [p for p in (".".join(parts[:i]) for i in range(2, len(parts))) if p in MODULES]
        for target, at_top in _imports(current):
            if not at_top:
                continue
            if target.split(".")[0] in HEAVY:
                return True
            if target in MODULES:
                todo.append(target)
    return False


def _own_edges() -> list[tuple[str, str, bool]]:
    """(importer, imported, at top level) for every import of one of the package's modules."""
    return [
        (module, target, at_top)
        for module in MODULES
        for target, at_top in _imports(module)
        if target.startswith("scrfd_search.") and target in MODULES
    ]


def test_every_module_belongs_to_a_layer() -> None:
    for module in MODULES:
        if module != "scrfd_search":
            _layer(module)


@pytest.mark.parametrize("edge", _own_edges(), ids=lambda e: f"{e[0]}->{e[1]}" if isinstance(e, tuple) else "")
def test_no_module_imports_a_later_stage(edge: tuple[str, str, bool]) -> None:
    importer, imported, _ = edge
    if importer == "scrfd_search" or imported == "scrfd_search":
        return
    assert _layer(imported) <= _layer(importer), (
        f"{importer} (layer {_layer(importer)}) imports {imported} (layer {_layer(imported)}), a later stage"
    )


def test_stages_do_not_import_each_other_both_ways() -> None:
    stage = {m: ".".join(m.split(".")[:2]) for m in MODULES}
    links = {(stage[a], stage[b]) for a, b, _ in _own_edges() if stage[a] != stage[b]}
    both_ways = sorted(f"{a} <-> {b}" for a, b in links if (b, a) in links and a < b)
    assert not both_ways


def test_imports_inside_functions_are_only_deferred_heavy_modules() -> None:
    light = sorted(f"{a} -> {b}" for a, b, at_top in _own_edges() if not at_top and not _loads_heavy(b))
    assert not light, "import these at the top of the file, where the layering shows"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)  # a name moved or renamed elsewhere fails here, not in a slow e2e test
