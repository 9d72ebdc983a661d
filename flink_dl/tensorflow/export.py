"""Writing a TensorFlow model version, and the Keras callback that publishes versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf

from flink_dl.errors import ArgumentTypeError
from flink_dl.tensorflow.config import KERAS_FILE, SAVED_MODEL_DIR
from flink_dl.training.context import TrainingContext


def write_model(model: Any, directory: Path) -> None:
    """Write ``model`` into a version directory (see ``TFContext.save_model``)."""
    if hasattr(model, "export") and hasattr(model, "save") and hasattr(model, "layers"):
        model.save(str(directory / KERAS_FILE))
        model.export(str(directory / SAVED_MODEL_DIR))
    elif isinstance(model, tf.Module):
        tf.saved_model.save(model, str(directory / SAVED_MODEL_DIR))
    elif callable(model):
        model(directory)
    else:
        raise ArgumentTypeError(f"save_model: cannot save a {type(model).__name__}; give a Keras "
                                "model, a tf.Module or a function(directory)")


def export_callback(ctx: TrainingContext) -> Any:
    """The callback of ``TFContext.export_callback``."""
    keras: Callable[..., Any] | Any = tf.keras

    class ExportCallback(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self._counted = False

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if not self._counted:  # go on from the optimizer's count after a resume
                self._counted = True
                iterations = getattr(getattr(self.model, "optimizer", None), "iterations", None)
                self.step = int(iterations.numpy()) - 1 if iterations is not None else 0
            self.step += 1
            ctx.maybe_save_model(self.model, step=self.step, metrics=_floats(logs))

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if ctx.last_export_step != self.step:
                ctx.save_model(self.model, step=self.step, metrics=_floats(logs))

    return ExportCallback()


def _floats(logs: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items()}
