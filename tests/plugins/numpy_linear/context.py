"""``LinearContext``: what the numpy plugin's entry sees in each worker's process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flink_dl.cluster.context import NodeContext
from flink_dl.errors import ConfigError
from flink_dl.models.store import ModelVersion
from flink_dl.training import TrainingContext

from .allreduce import SocketAllReduce
from .config import WEIGHTS_FILE, LinearOptions


class LinearContext(TrainingContext):
    """A ``TrainingContext`` with numpy batches and a sum all-reduce across the workers.

    A model is a float64 array: one weight per feature, the intercept last.
    """

    framework = "numpy-linear"
    config_name = "LinearConfig"

    options: LinearOptions

    def __init__(self, node: NodeContext, options: LinearOptions) -> None:
        super().__init__(node, options)
        self.rank = node.index
        self.world_size = node.role_size()
        self.reducer = SocketAllReduce(node, self.rank, self.world_size,
                                       options.collective_timeout_s,
                                       options.timeouts.rendezvous)
        #: Input rows of every worker together, once an entry all-reduced them.
        self.rows_total: int | None = None

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """This worker's input as ``(features, label)`` float64 arrays, all epochs."""
        features, label = self.features, self.label
        if features is None or label is None:
            raise ConfigError("batches: LinearConfig(features=..., label=...) must be set")
        for batch in self.node.numpy_batches(batch_size, [*features, label]):
            x = np.stack([np.asarray(batch[f], dtype=np.float64) for f in features], axis=1)
            yield x, np.asarray(batch[label], dtype=np.float64)

    def allreduce(self, array: np.ndarray) -> np.ndarray:
        """The sum of ``array`` over every worker (call it on all of them, in step)."""
        return self.reducer.sum(array)

    # ------------------------------------------------------------------ plugin hooks
    def write_model(self, model: Any, directory: Path, **write_options: Any) -> None:
        np.save(directory / WEIGHTS_FILE, np.asarray(model, dtype=np.float64),
                allow_pickle=False)

    def load_weights(self, model: Any, version: ModelVersion) -> None:
        model[...] = np.load(version.file(WEIGHTS_FILE), allow_pickle=False)

    def input_is_empty(self) -> bool | None:
        if self.rows_total is not None:
            return self.rows_total == 0
        return super().input_is_empty()
