"""The contract every framework plugin implements: one training config base
(``TrainingConfig``, whose ``options_class`` is what the processes get:
``TrainingOptions``), one context base (``TrainingContext``: a plugin implements its
public hooks ``write_model`` and ``load_weights``, and may refine ``write_elsewhere``,
``agree_on_clock`` and ``input_is_empty``), one entry wrapper (``TrainingEntry``), one way
to build the job (``build``), checkpoints and warm starts. ``flink_dl.pytorch`` and
``flink_dl.tensorflow`` add only what their framework needs; inference is
``flink_dl.inference.ModelHandler``, pipeline stages ``flink_dl.pipeline.register``.

Attributes load lazily, like the top-level package.
May import ``flink``, ``cluster`` and the layers below; never ``inference``'s
users, ``pipeline``, ``online`` or a framework plugin (tests/test_layers.py).
"""

from __future__ import annotations

from flink_dl.lazy import lazy_exports

_EXPORTS = {
    "TrainingConfig": "flink_dl.training.config",
    "WORKER_ROLE": "flink_dl.training.config",
    "TrainingContext": "flink_dl.training.context",
    "TrainingEntry": "flink_dl.training.entry",
    "TrainingOptions": "flink_dl.training.options",
    "teardown": "flink_dl.training.entry",
    "CheckpointDir": "flink_dl.training.checkpoints",
    "build": "flink_dl.training.build",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports("flink_dl.training", _EXPORTS, globals())
