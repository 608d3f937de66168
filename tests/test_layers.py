"""The layering rule of docs/architecture.md, checked on the source: no module imports one of a higher layer.

Read from the import statements (ast), so a new import that breaks the rule fails here, naming both modules."""

from __future__ import annotations

import ast
from pathlib import Path

import st_pooling

PACKAGE = Path(st_pooling.__file__).parent
LAYERS = [
    {"functional", "lazy", "catalogue"},
    {"modules"},
    {"decoders", "models", "loading", "registration", "forward", "data", "atomic", "cli_args"},
    {"publish"},
    {"evaluation", "training", "index"},
    {"sweep"},
    {"tuning"},
    {"cli", "__init__"},  # the command line (every package's cli.py too) and the package's public face
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """``st_pooling.training.features`` -> ``training``; any package's ``cli`` module -> ``cli``."""
    parts = module.split(".")[1:]
    if not parts or not ((PACKAGE / parts[0]).is_dir() or (PACKAGE / f"{parts[0]}.py").is_file()):
        return "__init__"  # the package itself, or a name it exports (from st_pooling import POOLINGS)
    return "cli" if parts[-1] == "cli" else parts[0]


def imports_of(path: Path) -> set[str]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "st_pooling":
            names = [f"{node.module}.{alias.name}" for alias in node.names] if node.module == "st_pooling" \
                else [node.module]
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "st_pooling")
    return {name for name in found if unit_of(name) != unit_of(module)}


def test_every_unit_has_a_layer():
    units = {unit_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
             for path in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"place {sorted(units - set(RANK))} in LAYERS and in docs/architecture.md"


def test_no_module_imports_a_higher_layer():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for imported in imports_of(path):
            if imported in ("st_pooling", "st_pooling.__version__"):
                continue  # the bare import registers the module classes for loading; the version is a constant
            if RANK[unit_of(imported)] > RANK[unit_of(module)]:
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "\n".join(wrong)
