"""PyTorch on Flink: distributed training (``train``), in-operator inference (``predict``)
and inference by a cluster of model servers (``predict_distributed``), on the plugin
contract of ``flink_dl.training``.

Attributes load lazily, like the top-level package (Flink workers import concurrently).
"""

from __future__ import annotations

from flink_dl.lazy import lazy_exports

_EXPORTS = {
    "TorchConfig": "flink_dl.pytorch.config",
    "TorchOptions": "flink_dl.pytorch.config",
    "TorchEstimator": "flink_dl.pytorch.learner",
    "TorchModel": "flink_dl.pytorch.learner",
    "TorchContext": "flink_dl.pytorch.context",
    "EVENTS_SCHEMA": "flink_dl.pytorch.context",
    "train": "flink_dl.pytorch.train",
    "TorchModelHandler": "flink_dl.pytorch.handler",
    "predict": "flink_dl.pytorch.handler",
    "predict_distributed": "flink_dl.pytorch.handler",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("flink_dl.pytorch", _EXPORTS, globals())
