"""``TFEstimator`` / ``TFModel``: TensorFlow training and serving as pipeline stages
(``flink_dl.pipeline``'s ``LearnerEstimator`` / ``LearnerModel`` on this plugin)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.errors import ConfigError
from flink_dl.inference.api import ModelHandler
from flink_dl.models.store import ModelVersion
from flink_dl.pipeline.api import register
from flink_dl.pipeline.learners import LearnerEstimator, LearnerModel
from flink_dl.tensorflow.config import KERAS_FILE, SAVED_MODEL_DIR


@register
class TFModel(LearnerModel):
    """A trained TensorFlow model (its SavedModel)."""

    kind = "TFModel"
    framework = "tensorflow"

    def __init__(self, model: str | Path, features: Sequence[str],
                 outputs: Mapping[str, pa.DataType | str] | None = None, *,
                 batch_size: int = 1024, batch_invariant: bool = True,
                 postprocess: Callable[[Any], Any] | None = None) -> None:
        super().__init__(model, features, outputs, batch_size=batch_size,
                         batch_invariant=batch_invariant, postprocess=postprocess)

    def handler_class(self) -> type[ModelHandler]:
        from flink_dl.tensorflow.handler import TFModelHandler

        return TFModelHandler


@register
class TFEstimator(LearnerEstimator):
    """``TFConfig`` training as a pipeline stage (the entry saves with ``ctx.save_model``)."""

    kind = "TFEstimator"
    framework = "tensorflow"
    model_class = TFModel

    def train_model(self, env: StreamExecutionEnvironment, table: Table, config: Any) -> None:
        from flink_dl.tensorflow.train import train

        train(env, table, config)

    def model_file(self, version: ModelVersion) -> Path:
        for name in (SAVED_MODEL_DIR, KERAS_FILE):
            if version.file(name).exists():
                return version.file(name)
        raise ConfigError(f"TFEstimator: version {version.path} has neither {SAVED_MODEL_DIR}/ "
                          f"nor {KERAS_FILE}; save the model with ctx.save_model(model)")
