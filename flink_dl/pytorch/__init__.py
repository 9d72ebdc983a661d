"""PyTorch on Flink: distributed training (``train``), in-operator inference (``predict``)
and inference by a cluster of model servers (``predict_distributed``), on the plugin
contract of ``flink_dl.training``.

Attributes load lazily, like the top-level package (Flink workers import concurrently).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TorchConfig": "flink_dl.pytorch.config",
    "TorchContext": "flink_dl.pytorch.context",
    "EVENTS_SCHEMA": "flink_dl.pytorch.context",
    "train": "flink_dl.pytorch.train",
    "TorchModelHandler": "flink_dl.pytorch.handler",
    "predict": "flink_dl.pytorch.handler",
    "predict_distributed": "flink_dl.pytorch.handler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flink_dl.pytorch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
