"""Inference on Flink: a ``ModelHandler`` interface (what a framework plugin implements),
``PredictOptions``, in-operator and distributed predict.

Attributes load lazily, like the top-level package.
May import ``flink``, ``cluster`` and the layers below; never ``pipeline``,
``online`` or a framework plugin (tests/test_layers.py).
"""

from __future__ import annotations

from flink_dl.lazy import lazy_exports

_EXPORTS = {
    "ModelHandler": "flink_dl.inference.api",
    "split_outputs": "flink_dl.inference.api",
    "PredictOptions": "flink_dl.inference.options",
    "ModelRunner": "flink_dl.inference.runner",
    "predict_with": "flink_dl.inference.calls",
    "predict_distributed_with": "flink_dl.inference.calls",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("flink_dl.inference", _EXPORTS, globals())
