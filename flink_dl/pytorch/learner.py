"""``TorchEstimator`` / ``TorchModel``: PyTorch training and serving as pipeline stages
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
from flink_dl.pytorch.config import STATE_DICT_FILE, TORCHSCRIPT_FILE


@register
class TorchModel(LearnerModel):
    """A trained PyTorch model (TorchScript, or a state_dict with ``factory``)."""

    kind = "TorchModel"
    framework = "pytorch"

    def __init__(self, model: str | Path, features: Sequence[str],
                 outputs: Mapping[str, pa.DataType | str] | None = None, *,
                 batch_size: int = 1024, batch_invariant: bool = True,
                 postprocess: Callable[[Any], Any] | None = None,
                 factory: Callable[[], Any] | None = None) -> None:
        super().__init__(model, features, outputs, batch_size=batch_size,
                         batch_invariant=batch_invariant, postprocess=postprocess,
                         factory=factory)

    def handler_class(self) -> type[ModelHandler]:
        from flink_dl.pytorch.handler import TorchModelHandler

        return TorchModelHandler


@register
class TorchEstimator(LearnerEstimator):
    """``TorchConfig`` training as a pipeline stage; ``factory`` builds the module when the
    entry saves no TorchScript (``ctx.save_model(model, torchscript=True)``)."""

    kind = "TorchEstimator"
    framework = "pytorch"
    model_class = TorchModel

    def __init__(self, config: Any, features: Sequence[str] | None = None,
                 label: str | None = None, *, factory: Callable[[], Any] | None = None,
                 **settings: Any) -> None:
        super().__init__(config, features, label, factory=factory, **settings)
        self.factory = factory

    def train_model(self, env: StreamExecutionEnvironment, table: Table, config: Any) -> None:
        from flink_dl.pytorch.train import train

        train(env, table, config)

    def publish_untrained(self, features: Sequence[str]) -> ModelVersion:
        """``factory()``'s module as built (its own initialisation), as a state_dict."""
        if self.factory is None:
            return super().publish_untrained(features)
        from flink_dl.pytorch.module_files import publish_module

        return publish_module(self.config.model_dir, self.factory(), torchscript=False,
                              keep_versions=self.config.keep_versions,
                              metrics={"samples": 0, "untrained": True})

    def model_file(self, version: ModelVersion) -> Path:
        scripted = version.file(TORCHSCRIPT_FILE)
        if scripted.is_file() and self.factory is None:
            return scripted
        if self.factory is None:
            raise ConfigError("TorchEstimator: the trained version has no TorchScript: save "
                              "it with ctx.save_model(model, torchscript=True) or pass "
                              "factory=... to build the module its state_dict loads into")
        return version.file(STATE_DICT_FILE)
