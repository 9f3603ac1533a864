"""The house stays as built: the package's imports, read with ``ast``, form no loop and never point up a layer.

Layers (docs/architecture.md): the core (``ov_sdxl/*.py``) imports only the core; the product wings ``convert``
and ``runtime`` import the core only; ``testing`` adds ``convert``; the front ends ``demo``, ``bench``,
``tutorial`` and the command (``cli``, ``parsers``, ``commands``, the package ``__init__``) sit on top. Outside a
wing, only the wing's package is imported (its ``__init__`` re-exports the public names), never one of its modules.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ov_sdxl"
WINGS = ("convert", "runtime", "demo", "bench", "testing", "tutorial")
TOP = {"ov_sdxl", "ov_sdxl.cli", "ov_sdxl.parsers", "ov_sdxl.commands"}
ALLOWED = {  # layer -> the layers it may import (its own included)
    "core": {"core"},
    "convert": {"core", "convert"},
    "runtime": {"core", "runtime"},
    "testing": {"core", "convert", "testing"},
    "demo": {"core", "runtime", "demo"},
    "bench": {"core", "convert", "runtime", "testing", "bench"},
    "tutorial": {"core", "convert", "runtime", "testing", "tutorial"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if module in TOP:
        return "top"
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else "core"


def imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its code (functions and TYPE_CHECKING included)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in MODULES and name != module}
    return found


GRAPH = {module: imports(module) for module in MODULES}


def test_the_package_is_read_whole():
    assert {"ov_sdxl.config", "ov_sdxl.convert.export", "ov_sdxl.runtime.sdxl_runtime", "ov_sdxl.demo.app"} <= set(
        MODULES
    )
    assert sum(map(len, GRAPH.values())) > 100  # the reader sees the arrows, so the checks below can fail


def test_no_import_loop():
    state: dict[str, str] = {}
    loops = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                loops.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])
    assert not loops, "import loops:\n" + "\n".join(loops)


def test_no_arrow_runs_up_a_layer():
    wrong = [
        f"{source} ({layer(source)}) imports {target} ({layer(target)})"
        for source, targets in GRAPH.items()
        for target in sorted(targets)
        if layer(source) != "top" and (layer(target) == "top" or layer(target) not in ALLOWED[layer(source)])
    ]
    assert not wrong, "\n".join(wrong)


def test_other_wings_are_reached_through_their_package_only():
    wrong = [
        f"{source} imports {target}: import ov_sdxl.{layer(target)} (its __init__ re-exports the public names)"
        for source, targets in GRAPH.items()
        for target in sorted(targets)
        if layer(target) in WINGS and layer(source) != layer(target) and target != f"ov_sdxl.{layer(target)}"
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", ["ov_sdxl", *(f"ov_sdxl.{wing}" for wing in WINGS)])
def test_every_public_name_resolves(package):
    """Each wing re-exports lazily (``__getattr__``): every name in ``__all__`` is found where it is said to be."""
    module = importlib.import_module(package)
    assert module.__all__
    submodules = {
        name.rsplit(".", 1)[1] for name in MODULES if name.startswith(f"{package}.") and name.count(".") == 2
    }
    assert not set(module.__all__) & submodules, "a name that is also a module's is shadowed once that module loads"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018


def _own_imports(tree: ast.AST) -> list[tuple[str, str | None]]:
    """(module, name) of each ``import ov_sdxl...`` (name None) and ``from ov_sdxl... import name``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names if alias.name.split(".")[0] == "ov_sdxl"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ov_sdxl":
            found += [(node.module, alias.name) for alias in node.names]
    return found


def _code_cells(notebook: Path) -> str:
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    return "\n".join(
        cell.source for cell in cells if cell.cell_type == "code" and not cell.source.startswith(("%", "!"))
    )


def test_every_import_of_the_package_resolves():
    """Every ``from ov_sdxl... import name`` in the package, the tests and the notebooks finds its module and name
    (function-level imports too, which importing a module would not reach)."""
    sources = {
        path: path.read_text(encoding="utf-8") for path in [*MODULES.values(), *sorted((ROOT / "tests").rglob("*.py"))]
    }
    sources |= {path: _code_cells(path) for path in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    missing = []
    for path, text in sources.items():
        for module, name in _own_imports(ast.parse(text)):
            if module not in MODULES:
                missing.append(f"{path.relative_to(ROOT)}: no module {module}")
            elif name is not None and f"{module}.{name}" not in MODULES:
                if not hasattr(importlib.import_module(module), name):
                    missing.append(f"{path.relative_to(ROOT)}: {module} has no {name}")
    assert not missing, "\n".join(missing)


def test_module_names_in_strings_exist():
    """Child processes are started by module name (``python -m ov_sdxl.convert.export_part``): each name is real."""
    named = {
        node.value
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("ov_sdxl.")
    }
    modules = {
        name
        for name in named
        if " " not in name and name.split(".")[1] in {m.split(".")[1] for m in MODULES if "." in m}
    }
    assert "ov_sdxl.convert.export_part" in modules and "ov_sdxl.bench.contenders" in modules
    assert not [name for name in modules if importlib.util.find_spec(name) is None]
