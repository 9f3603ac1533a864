"""Lazy re-exports for the package and its wings: ``from ov_sdxl.runtime import SDXLRuntime`` imports only the
module that defines the name, when it is first asked for (no work at import time, and a child process started
with ``python -m ov_sdxl.convert.export_part`` does not import its own module twice through the wing).

    # in a wing's __init__.py, beside ``if TYPE_CHECKING:`` imports of the same names for type checkers
    __getattr__ = lazy_exports(__name__, {"convert_models": "ov_sdxl.convert.export"})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds each name of ``homes`` (name -> module that defines it) on first use."""

    def __getattr__(name: str) -> Any:
        if name in homes:
            import importlib

            return getattr(importlib.import_module(homes[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
