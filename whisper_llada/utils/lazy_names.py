"""Package attributes that load their module on first use (PEP 562's module ``__getattr__``).

A package whose names live in torch modules then imports without torch until one of them is used.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module


def lazy_names(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``name`` comes from ``package.where[name]``."""

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{where[name]}"), name)

    return __getattr__
