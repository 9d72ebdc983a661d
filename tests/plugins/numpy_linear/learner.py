"""``LinearEstimator`` / ``LinearModel``: the numpy plugin's pipeline stages, registered
under their kinds (a saved pipeline loads them once this module is imported)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.inference import ModelHandler
from flink_dl.models.store import ModelVersion
from flink_dl.pipeline import LearnerEstimator, LearnerModel, register

from .config import WEIGHTS_FILE


@register
class LinearModel(LearnerModel):
    """A trained numpy linear model (its ``weights.npy``)."""

    kind = "NumpyLinearModel"
    framework = "numpy-linear"

    def handler_class(self) -> type[ModelHandler]:
        from .handler import LinearHandler

        return LinearHandler


@register
class LinearEstimator(LearnerEstimator):
    """``LinearConfig`` training as a pipeline stage."""

    kind = "NumpyLinearEstimator"
    framework = "numpy-linear"
    model_class = LinearModel

    def train_model(self, env: StreamExecutionEnvironment, table: Table, config: Any) -> None:
        from .entry import train

        train(env, table, config)

    def model_file(self, version: ModelVersion) -> Path:
        return version.file(WEIGHTS_FILE)
