"""PyTorch adapter of the inference ``ModelHandler``, and ``predict`` for PyTorch models."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.errors import ConfigError
from flink_dl.flink.entry import serialize_entry
from flink_dl.inference.api import ModelHandler, split_outputs
from flink_dl.inference.calls import predict_distributed_with, predict_with
from flink_dl.models.store import MANIFEST, ModelStore, ModelVersion
from flink_dl.pytorch.config import STATE_DICT_FILE, TORCHSCRIPT_FILE


class TorchModelHandler(ModelHandler):
    """Runs a PyTorch model on feature columns.

    Args:
        model: a TorchScript file, a ``state_dict`` file (needs ``factory``), one published
            version directory, or a model directory (``TorchConfig.model_dir``) whose newest
            version is served and followed as new versions appear.
        features: input columns; scalar columns are stacked into a ``(rows, features)``
            float32 tensor, one ARRAY column becomes it directly.
        factory: builds the ``nn.Module`` a state_dict is loaded into.
        outputs: prediction columns, name -> Arrow type (default ``prediction: float32``).
            A model output of shape ``(rows, 1)`` or ``(rows,)`` fills one column, one of shape
            ``(rows, k)`` fills ``k`` columns, or one list column.
        postprocess: maps the model's output tensor to an array or a dict of arrays per
            output column (e.g. ``lambda y: y.argmax(1)``).
        batch_size: rows per forward pass (``predict`` moves at least 32k rows per Arrow
            batch and splits them).
        num_threads: torch intra-op threads per operator subtask / node.
        batch_invariant: pad every model call to ``batch_size`` rows, so that a row's
            prediction does not depend on which rows share its batch (float GEMM kernels
            round differently for different batch shapes); pipelines turn it on.
    """

    def __init__(self, model: str | Path, features: Sequence[str], *,
                 factory: Callable[[], Any] | None = None,
                 outputs: Mapping[str, pa.DataType] | None = None,
                 postprocess: Callable[[Any], Any] | None = None,
                 batch_size: int = 4096, num_threads: int = 1, device: str = "cpu",
                 batch_invariant: bool = False) -> None:
        path = Path(model)
        if not path.exists() and path.suffix:
            raise ConfigError(f"model {str(path)!r} does not exist (a path without a suffix "
                              "is taken as a model directory that training will fill)")
        super().__init__(path, features, outputs=outputs, batch_size=batch_size,
                         num_threads=num_threads, postprocess=postprocess,
                         batch_invariant=batch_invariant)
        self.device = device
        self._factory = serialize_entry(factory) if factory is not None else None

    # ---------------------------------------------------------------- ModelHandler
    def model_dir(self) -> str | None:
        path = Path(self.model_path)
        if path.is_file() or (path / MANIFEST).exists():
            return None
        return self.model_path

    def setup(self) -> None:
        import torch

        torch.set_num_threads(self.num_threads)

    def load(self, version: ModelVersion | None) -> Any:
        import torch

        if version is not None:
            directory = Path(version.path)
        elif Path(self.model_path).is_dir():  # one version directory
            directory = Path(ModelStore(Path(self.model_path).parent).open(
                int(Path(self.model_path).name[1:])).path)
        else:
            directory = None
        if directory is not None:
            scripted = directory / TORCHSCRIPT_FILE
            path = scripted if scripted.exists() and self._factory is None else \
                directory / STATE_DICT_FILE
        else:
            path = Path(self.model_path)
        model = self._load_file(path, torch)
        model.eval()
        return model.to(self.device)

    def _load_file(self, path: Path, torch: Any) -> Any:
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location=self.device)
        except (RuntimeError, ValueError):
            pass  # not TorchScript: a state_dict
        if self._factory is None:
            raise ConfigError(f"model {str(path)!r} is a state_dict: pass factory=... to build "
                              "the module it loads into")
        module = self._callable(self._factory)()
        module.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
        return module

    def run(self, model: Any, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        arrays = [np.asarray(columns[f]) for f in self.features]
        x = arrays[0] if len(arrays) == 1 and arrays[0].ndim == 2 else np.stack(arrays, axis=1)
        with torch.inference_mode():
            y = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
                      .to(self.device))
            if self._postprocess is not None:
                y = self._callable(self._postprocess)(y)
        return split_outputs(self.outputs, y)


def predict(input: Table | DataStream, model: str | Path | TorchModelHandler,
            features: Sequence[str] | None = None, **options: Any) -> Table | DataStream:
    """In-operator batched inference with a PyTorch model: the input with prediction columns
    appended. ``model`` is a ``TorchModelHandler`` or its ``model`` argument (then
    ``features`` and handler ``options`` such as ``factory``/``outputs`` apply)."""
    return predict_with(TorchModelHandler, input, model, features, options)


def predict_distributed(env: StreamExecutionEnvironment, input: Table | DataStream,
                        model: str | Path | TorchModelHandler, nodes: int,
                        features: Sequence[str] | None = None,
                        **options: Any) -> DataStream:
    """Inference by an ML cluster of ``nodes`` processes (see ``flink_dl.inference``)."""
    return predict_distributed_with(TorchModelHandler, env, input, model, nodes, features,
                                    options)
