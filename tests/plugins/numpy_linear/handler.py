"""``LinearHandler``: the numpy plugin's ``ModelHandler``, and ``predict`` with it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyflink.datastream import DataStream
from pyflink.table import Table

from flink_dl.inference import ModelHandler, predict_with, split_outputs
from flink_dl.models.store import MANIFEST, ModelVersion

from .config import WEIGHTS_FILE


class LinearHandler(ModelHandler):
    """Serves ``weights.npy``: a file, one version directory, or a model directory (its
    newest version, followed as new ones appear)."""

    def __init__(self, model: str | Path, features: Sequence[str], *,
                 outputs: Mapping[str, pa.DataType] | None = None, batch_size: int = 4096,
                 postprocess: Callable[[Any], Any] | None = None,
                 batch_invariant: bool = False) -> None:
        super().__init__(model, features, outputs=outputs, batch_size=batch_size,
                         postprocess=postprocess, batch_invariant=batch_invariant)

    def model_dir(self) -> str | None:
        path = Path(self.model_path)
        return None if path.is_file() or (path / MANIFEST).exists() else self.model_path

    def load(self, version: ModelVersion | None) -> np.ndarray:
        if version is not None:
            path = version.file(WEIGHTS_FILE)
        else:
            given = Path(self.model_path)
            path = given if given.is_file() else given / WEIGHTS_FILE
        return np.load(path, allow_pickle=False)

    def run(self, model: np.ndarray, columns: Mapping[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
        x = np.stack([np.asarray(columns[f], dtype=np.float64) for f in self.features],
                     axis=1)
        y = x @ model[:-1] + model[-1]
        postprocess = self.postprocess_fn()
        return split_outputs(self.outputs, postprocess(y) if postprocess else y)


def predict(input: Table | DataStream, model: str | Path | LinearHandler,
            features: Sequence[str] | None = None, **options: Any) -> Table | DataStream:
    """In-operator inference with a numpy linear model (as ``flink_dl.pytorch.predict``)."""
    return predict_with(LinearHandler, input, model, features, options)
