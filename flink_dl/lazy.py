"""Lazy package attributes (PEP 562), shared by the package ``__init__`` modules.

Flink's Python workers import submodules from several threads at once; an eager package
``__init__`` that imports them all would make those imports deadlock on each other, and
would import PyFlink, PyTorch or TensorFlow where a module needs none of them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from flink_dl.errors import MissingAttributeError


class _LazyPackage(ModuleType):
    """A package whose exported name stays bound to its export when the submodule of the
    same name is imported (``flink_dl.pytorch.train``, the function, lives in
    ``flink_dl.pytorch.train``, the module): the import system would otherwise rebind the
    package attribute to the submodule, and ``from flink_dl.pytorch import train`` would
    give a module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (name in self.__dict__.get("_EXPORTS_NAMED_LIKE_THEIR_MODULE", ())
                and isinstance(value, ModuleType) and value.__name__ == f"{self.__name__}.{name}"):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose attribute ``name`` lives in
    module ``exports[name]`` (imported on first use, then cached in ``namespace``)."""
    shadowed = frozenset(n for n, module in exports.items() if module == f"{package}.{n}")
    this = sys.modules.get(package)
    if shadowed and this is not None and type(this) is ModuleType:
        namespace["_EXPORTS_NAMED_LIKE_THEIR_MODULE"] = shadowed
        this.__class__ = _LazyPackage

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's own name
        module = exports.get(name)
        if module is None:
            raise MissingAttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
