"""The contract both framework plugins share: one training config base
(``TrainingConfig``), one context base (``TrainingContext``), one entry wrapper
(``TrainingEntry``), one way to build the job (``build``), checkpoints and warm starts.
``flink_dl.pytorch`` and ``flink_dl.tensorflow`` add only what their framework needs.

Attributes load lazily, like the top-level package.
"""

from __future__ import annotations

from flink_dl.lazy import lazy_exports

_EXPORTS = {
    "TrainingConfig": "flink_dl.training.config",
    "TrainingContext": "flink_dl.training.context",
    "TrainingEntry": "flink_dl.training.entry",
    "CheckpointDir": "flink_dl.training.checkpoints",
    "build": "flink_dl.training.build",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("flink_dl.training", _EXPORTS, globals())
