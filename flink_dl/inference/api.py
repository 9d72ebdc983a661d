"""``ModelHandler``: the one interface a framework adapter implements for inference.

A handler says which input columns the model reads (``features``), which columns it adds
(``outputs``, Arrow types), how to load the model (optionally one version of a
``ModelStore``) and how to run it on a batch of numpy columns. Everything else (loading
once per operator, batching, following new versions, tagging rows with the version) is the
framework-neutral ``ModelRunner``'s job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from flink_dl.channel.features import check_feature_columns
from flink_dl.errors import ConfigError, ModelOutputError
from flink_dl.models.store import ModelVersion

VERSION_COLUMN = "model_version"


class ModelHandler(ABC):
    """Loads a model and runs it on column batches (one adapter per framework).

    A plugin's handler calls ``ModelHandler.__init__`` with the common arguments, then
    implements ``load`` and ``run`` (and optionally ``model_dir`` and ``setup``)."""

    #: Input columns the model reads, in order.
    features: Sequence[str]
    #: Prediction columns it adds: name -> Arrow type.
    outputs: Mapping[str, pa.DataType]
    #: Largest batch handed to ``run`` at once (rows).
    batch_size: int = 4096
    #: Pad every ``run`` to exactly ``batch_size`` rows (results independent of batching).
    batch_invariant: bool = False

    #: ``serialize_entry`` of the user's postprocess function, or ``None``.
    _postprocess: bytes | None = None

    def __init__(self, model: str | Any | None = None, features: Sequence[str] | None = None, *,
                 outputs: Mapping[str, pa.DataType] | None = None, batch_size: int = 4096,
                 num_threads: int = 1, postprocess: Callable[[Any], Any] | None = None,
                 batch_invariant: bool = False) -> None:
        """Check and keep the arguments every framework's handler takes (``ConfigError``
        naming the argument at fault); a plugin's handler calls it first.

        Args:
            model: what ``load`` loads (a file, a version or a model directory).
            features / outputs / batch_size / batch_invariant: see the class attributes.
            num_threads: the framework's threads per operator subtask / node (``setup``).
            postprocess: user code applied to the model's output (``postprocess_fn``).

        A handler that declares ``features``/``outputs``/``batch_size`` as class attributes
        (and loads its model itself) need not call it: with no ``model`` and no ``features``
        it keeps the class attributes."""
        if model is None and features is None:
            return
        from flink_dl.config import is_count
        from flink_dl.flink.entry import serialize_entry

        if isinstance(features, str) or not features \
                or not all(isinstance(f, str) for f in features):
            raise ConfigError(f"features must be a non-empty list of column names, "
                              f"got {features!r}")
        if not is_count(batch_size) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not is_count(num_threads) or num_threads < 1:
            raise ConfigError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        self.model_path = str(model)
        self.features = list(features)
        self.outputs = dict(outputs or {"prediction": pa.float32()})
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.batch_invariant = bool(batch_invariant)
        self._postprocess = serialize_entry(postprocess) if postprocess is not None else None

    def model_dir(self) -> str | None:
        """A ``ModelStore`` directory to follow (new versions are picked up), or ``None``."""
        return None

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Called once per process before the first load (e.g. thread settings)."""

    @abstractmethod
    def load(self, version: ModelVersion | None) -> Any:
        """Load the model (``version`` is set when following a model directory)."""

    @abstractmethod
    def run(self, model: Any, columns: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """Predict for one batch: feature columns in, one array per output column out."""

    def postprocess_fn(self) -> Callable[..., Any] | None:
        """The handler's ``postprocess`` (loaded once per process), or ``None``."""
        return self._callable(self._postprocess) if self._postprocess is not None else None

    def _callable(self, blob: bytes) -> Callable[..., Any]:
        """A user callable the handler carries as ``serialize_entry`` bytes, loaded once."""
        import cloudpickle

        from flink_dl.config import resolve_entry

        cache = self.__dict__.setdefault("_callables", {})
        if blob not in cache:
            cache[blob] = resolve_entry(cloudpickle.loads(blob))
        return cache[blob]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_callables", None)  # loaded callables stay in their process
        return state

    def output_schema(self) -> pa.Schema:
        """The columns ``predict`` appends (plus ``model_version`` when following a dir)."""
        fields = [pa.field(name, dtype) for name, dtype in self.outputs.items()]
        if self.model_dir() is not None:
            fields.append(pa.field(VERSION_COLUMN, pa.int32()))
        return pa.schema(fields)


def appended_schema(handler: ModelHandler, input_schema: pa.Schema, caller: str) -> pa.Schema:
    """The handler's output columns, checked against the input: every feature column is
    there (``MissingColumnError``) with a numeric Flink type (``FeatureTypeError``, the
    rule of ``flink_dl.channel.features``) and no output column already is
    (``ConfigError``)."""
    check_feature_columns(input_schema, handler.features, None, where=caller)
    out_schema = handler.output_schema()
    clash = [f for f in out_schema.names if f in input_schema.names]
    if clash:
        raise ConfigError(f"{caller}: output column(s) {clash} already exist in the input; "
                          "rename them in the handler's outputs")
    return out_schema


def split_outputs(outputs: Mapping[str, pa.DataType], y: Any) -> dict[str, np.ndarray]:
    """A model's output as one array per output column.

    A mapping passes through; an array of shape ``(rows,)`` or ``(rows, 1)`` fills a single
    column (a list column takes ``(rows, k)``); ``(rows, k)`` fills ``k`` columns.
    """
    names = list(outputs)
    if isinstance(y, Mapping):
        return {k: to_numpy(v) for k, v in y.items()}
    y = to_numpy(y)
    if len(names) == 1:
        dtype = outputs[names[0]]
        if pa.types.is_list(dtype):
            return {names[0]: y.reshape(len(y), -1)}
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ModelOutputError(f"the model output has shape {tuple(y.shape)}; output "
                                   f"{names[0]!r} takes one value per row (use postprocess=, "
                                   "or a list type)")
        return {names[0]: y}
    if y.ndim != 2 or y.shape[1] != len(names):
        raise ModelOutputError(f"the model output has shape {tuple(y.shape)}, not (rows, "
                               f"{len(names)}) for outputs {names}")
    return {name: y[:, i] for i, name in enumerate(names)}


def to_numpy(value: Any) -> np.ndarray:
    """A framework tensor (torch, TensorFlow) or array-like as a numpy array."""
    if hasattr(value, "detach"):  # torch
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy") and callable(value.numpy):  # TensorFlow eager
        return np.asarray(value.numpy())
    return np.asarray(value)
