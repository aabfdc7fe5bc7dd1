"""The house keeps its shape: each layer of app/ imports only the layers below it, and
training imports only the artifact contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
# Lowest first. A module may import its own layer and those before it. The two transports and
# the batch jobs (files in, files out) share the top rank: none imports another (the entry
# points compose the transports).
LAYERS = ["core", "artifact", "runtime", "dataplane", "protocols", "http", "grpc", "batch"]
TOP = ("grpc", "batch")  # beside http
RANK = {
    **{name: rank for rank, name in enumerate(LAYERS) if name not in TOP},
    **{name: LAYERS.index("http") for name in TOP},
}
ENTRY_POINTS = {"app.main", "app.serve"}  # above every layer: they may import any of them


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def app_imports(path: Path) -> set[str]:
    """Every `app...` module `path` imports, at any depth of the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("app")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "app":
                found |= {f"app.{alias.name}" for alias in node.names}
            elif node.module.startswith("app."):
                found.add(node.module)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "app":
        return None
    return parts[1] if parts[1] in LAYERS else None


def may_import(importer: str, imported: str | None) -> bool:
    """Its own layer, or one of lower rank; a module outside app/ (None) is no layer's."""
    return imported is None or imported == importer or RANK[imported] < RANK[importer]


def app_modules() -> list[Path]:
    return sorted(APP.rglob("*.py"))


def test_every_module_of_app_belongs_to_a_layer_or_is_an_entry_point():
    homeless = [
        module_name(path)
        for path in app_modules()
        if module_name(path) not in ENTRY_POINTS | {"app"} and layer_of(module_name(path)) is None
    ]
    assert homeless == []


@pytest.mark.parametrize("path", app_modules(), ids=lambda path: module_name(path))
def test_a_layer_imports_only_the_layers_below_it(path):
    module = module_name(path)
    own = layer_of(module)
    if own is None:
        return  # an entry point, or the package itself
    upward = sorted(name for name in app_imports(path) if not may_import(own, layer_of(name)))
    assert upward == [], f"{module} (layer {own}) imports {upward}"


def test_training_imports_only_the_artifact_contract():
    wrong = {
        module_name(path): sorted(
            name for name in app_imports(path) if not name.startswith("app.artifact")
        )
        for path in sorted((ROOT / "training").rglob("*.py"))
    }
    assert {module: names for module, names in wrong.items() if names} == {}


def test_the_checker_sees_an_upward_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from app.http.app import create_app\n")
    assert app_imports(sample) == {"app.http.app"}
    assert not may_import(layer_of("app.runtime.model"), layer_of("app.http.app"))
    assert may_import(layer_of("app.http.app"), layer_of("app.runtime.model"))


def test_the_transports_do_not_import_each_other():
    assert not may_import("grpc", "http")
    assert not may_import("http", "grpc")
    assert not may_import("batch", "http")
    assert not may_import("http", "batch")
