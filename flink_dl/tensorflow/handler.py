"""TensorFlow adapter of the inference ``ModelHandler``, and ``predict`` for TF models."""

from __future__ import annotations

import importlib
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.errors import ConfigError
from flink_dl.inference.api import ModelHandler, split_outputs
from flink_dl.inference.calls import predict_distributed_with, predict_with
from flink_dl.models.store import MANIFEST, ModelStore, ModelVersion
from flink_dl.tensorflow.config import KERAS_FILE, SAVED_MODEL_DIR

_KERAS_SUFFIXES = (".keras", ".h5")


class TFModelHandler(ModelHandler):
    """Runs a TensorFlow model on feature columns, in one process (no cluster).

    Args:
        model: a SavedModel directory, a ``.keras``/``.h5`` file, one published version
            directory, or a model directory (``TFConfig.model_dir``) whose newest version is
            served and followed as new versions appear. A version's SavedModel is preferred
            to its ``.keras`` file (no Keras needed to serve it).
        features: input columns; scalar columns are stacked into a ``(rows, features)``
            float32 tensor, one ARRAY column becomes it directly.
        outputs: prediction columns, name -> Arrow type (default ``prediction: float32``).
        signature: the SavedModel signature to call.
        postprocess: maps the model's output (numpy) to an array or a dict of arrays.
        batch_size: rows per model call (``predict`` moves at least 32k rows per Arrow batch).
        num_threads: TensorFlow intra-op threads (when TensorFlow is not yet initialised).
        batch_invariant: pad every model call to ``batch_size`` rows (a row's prediction
            then does not depend on the rows that share its batch); pipelines turn it on.
    """

    def __init__(self, model: str | Path, features: Sequence[str], *,
                 outputs: Mapping[str, pa.DataType] | None = None,
                 signature: str = "serving_default",
                 postprocess: Callable[[Any], Any] | None = None,
                 batch_size: int = 4096, num_threads: int = 1,
                 batch_invariant: bool = False) -> None:
        path = Path(model)
        if path.suffix in _KERAS_SUFFIXES and not path.is_file():
            raise ConfigError(f"model {str(path)!r} does not exist")
        super().__init__(path, features, outputs=outputs, batch_size=batch_size,
                         num_threads=num_threads, postprocess=postprocess,
                         batch_invariant=batch_invariant)
        self.signature = signature

    # ---------------------------------------------------------------- ModelHandler
    def model_dir(self) -> str | None:
        """The ``ModelStore`` directory to follow, or ``None`` for a fixed model."""
        path = Path(self.model_path)
        if path.is_file() or (path / MANIFEST).exists() or _is_saved_model(path):
            return None
        return self.model_path

    def setup(self) -> None:
        """Set TensorFlow's thread counts (once per process, before the first load)."""
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(self.num_threads)
            tf.config.threading.set_inter_op_parallelism_threads(self.num_threads)
        except RuntimeError:  # TensorFlow already initialised in this process
            pass

    def load(self, version: ModelVersion | None) -> Any:
        """Load ``version`` (or the fixed model): a SavedModel signature or a Keras model."""
        path = Path(self.model_path)
        if version is not None:
            path = Path(version.path)
        elif (path / MANIFEST).exists():  # one version directory: verify its files
            path = Path(ModelStore(path.parent).open(int(path.name[1:])).path)
        if (path / SAVED_MODEL_DIR).is_dir():
            path = path / SAVED_MODEL_DIR
        elif (path / KERAS_FILE).is_file():
            path = path / KERAS_FILE
        if path.suffix in _KERAS_SUFFIXES:
            return _KerasModel(path)
        if not _is_saved_model(path):
            raise ConfigError(f"model {str(path)!r} is neither a SavedModel directory nor a "
                              ".keras/.h5 file")
        return _SavedModel(path, self.signature)

    def run(self, model: Any, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Stack the feature columns into ``(rows, features)`` and call the model."""
        arrays = [np.asarray(columns[f]) for f in self.features]
        x = arrays[0] if len(arrays) == 1 and arrays[0].ndim == 2 else np.stack(arrays, axis=1)
        y = model(np.ascontiguousarray(x, dtype=np.float32))
        if self._postprocess is not None:
            y = self._callable(self._postprocess)(y)
        return split_outputs(self.outputs, y)


def _is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file()


class _SavedModel:
    """A SavedModel signature called on one float32 tensor; returns numpy."""

    def __init__(self, path: Path, signature: str) -> None:
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))
        signatures = dict(self.loaded.signatures)
        if signature not in signatures:
            raise ConfigError(f"SavedModel {str(path)!r} has no signature {signature!r}; it "
                              f"has {sorted(signatures)}")
        self.fn = signatures[signature]
        _, kwargs = self.fn.structured_input_signature
        if len(kwargs) != 1:
            raise ConfigError(f"signature {signature!r} of {str(path)!r} takes inputs "
                              f"{sorted(kwargs)}; predict feeds one feature tensor")
        self.input_name = next(iter(kwargs))
        self.tf = tf

    def __call__(self, x: np.ndarray) -> Any:
        out = self.fn(**{self.input_name: self.tf.constant(x)})
        if len(out) == 1:
            return next(iter(out.values())).numpy()
        return {k: v.numpy() for k, v in out.items()}


class _KerasModel:
    """A Keras model file, loaded by the Keras that wrote it: Keras 3 (``keras``) or
    Keras 2 (``tf_keras``, what ``TFConfig`` jobs use), read from the file's metadata."""

    def __init__(self, path: Path) -> None:
        keras = importlib.import_module(keras_module_of(path))
        self.model = keras.models.load_model(str(path), compile=False)

    def __call__(self, x: np.ndarray) -> Any:
        return self.model(x, training=False).numpy()


def keras_module_of(path: Path) -> str:
    """``"keras"`` for a file Keras 3 wrote, else ``"tf_keras"`` (Keras 2, also ``.h5``)."""
    if path.suffix != ".keras":
        return "tf_keras"
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read("metadata.json"))
    except (KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise ConfigError(f"model {str(path)!r} is not a Keras archive: {exc}") from exc
    return "keras" if str(metadata.get("keras_version", "")).startswith("3") else "tf_keras"


def predict(input: Table | DataStream, model: str | Path | TFModelHandler,
            features: Sequence[str] | None = None, **options: Any) -> Table | DataStream:
    """In-operator batched inference with a TensorFlow model: the input with prediction
    columns appended. ``model`` is a ``TFModelHandler`` or its ``model`` argument (then
    ``features`` and handler ``options`` such as ``outputs``/``signature`` apply)."""
    return predict_with(TFModelHandler, input, model, features, options)


def predict_distributed(env: StreamExecutionEnvironment, input: Table | DataStream,
                        model: str | Path | TFModelHandler, nodes: int,
                        features: Sequence[str] | None = None,
                        **options: Any) -> DataStream:
    """Inference by an ML cluster of ``nodes`` processes, each serving the model on its
    share (see ``flink_dl.inference``); for a model whose variables live on ps nodes, use
    ``predict_on_cluster``."""
    return predict_distributed_with(TFModelHandler, env, input, model, nodes, features,
                                    options)
