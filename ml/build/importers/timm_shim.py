"""Import timm without torchvision.

timm imports torchvision at module level (data transforms, datasets, FrozenBatchNorm2d), but the
torchvision wheels on PyPI do not run beside the torch CPU build used here. Model *definitions* need
none of it, so while timm is imported every ``torchvision.*`` name resolves to a placeholder module
whose attributes are classes that raise if anyone actually uses them. The placeholders are removed
from ``sys.modules`` afterwards so other code still sees that torchvision is absent.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import types
from importlib.machinery import ModuleSpec
from typing import Any


def _placeholder(qualname: str) -> type:
    def unavailable(*_args: Any, **_kwargs: Any) -> None:
        raise ImportError(f"torchvision is not installed: {qualname} cannot be used here")

    return _PlaceholderMeta(qualname, (), {"__init__": unavailable})


class _PlaceholderMeta(type):
    def __getattr__(cls, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__name__}.{name}")


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{self.__name__}.{name}")


class _TorchvisionFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: ModuleSpec) -> types.ModuleType:
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def import_timm() -> types.ModuleType:
    """``import timm``, with placeholders for torchvision when the real one cannot be imported."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    try:
        importlib.import_module("torchvision")
        return importlib.import_module("timm")
    except Exception:  # absent, or present but broken beside this torch
        _forget("torchvision")
        _forget("timm")
    finder = _TorchvisionFinder()
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module("timm")
    finally:
        sys.meta_path.remove(finder)
        _forget("torchvision")


def _forget(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
