"""Model stages' shared base: a ``LearnerEstimator`` trains inside ``fit`` (one Flink job
running its plugin's ``train``); its ``LearnerModel`` appends predictions (``predict``).

Each plugin owns its stages and registers them (``flink_dl.pytorch.learner``:
``TorchEstimator``/``TorchModel``; ``flink_dl.tensorflow.learner``: ``TFEstimator``/
``TFModel``): the same arguments, checks and errors. The fitted model's files are copied
into the saved pipeline version, so a loaded pipeline needs nothing else. A
``postprocess`` (and a PyTorch ``factory``, needed only without TorchScript) is user code:
it is saved with cloudpickle in ``callables.pkl`` and unpickled when the pipeline loads.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import Table

from flink_dl.channel.features import check_feature_columns, is_feature_type
from flink_dl.errors import ConfigError
from flink_dl.flink.pyflink_adapter import j_exec_env_of_table_env, table_env_of
from flink_dl.inference.api import ModelHandler
from flink_dl.models.store import ModelStore, ModelVersion
from flink_dl.pipeline.api import Estimator, Model, check_columns, require_table

log = logging.getLogger(__name__)

CALLABLES_FILE = "callables.pkl"


def arrow_type_name(dtype: pa.DataType) -> str:
    """An Arrow type as text that ``parse_arrow_type`` reads back."""
    if pa.types.is_list(dtype):
        return f"list<{arrow_type_name(dtype.value_type)}>"
    return str(dtype)


_SIMPLE_TYPES = {"float": pa.float32(), "float32": pa.float32(), "double": pa.float64(),
                 "float64": pa.float64(), "int8": pa.int8(), "int16": pa.int16(),
                 "int32": pa.int32(), "int64": pa.int64(), "bool": pa.bool_(),
                 "string": pa.string()}


def parse_arrow_type(text: str) -> pa.DataType:
    match = re.fullmatch(r"list<(.+)>", text)
    if match:
        return pa.list_(parse_arrow_type(match.group(1)))
    try:
        return _SIMPLE_TYPES[text]
    except KeyError:
        raise ConfigError(f"output type {text!r} is not one a pipeline saves "
                          f"({sorted(_SIMPLE_TYPES)} or list<...>)") from None


def env_of(table: Table) -> StreamExecutionEnvironment:
    """The StreamExecutionEnvironment a Table's environment was created on."""
    j_exec_env = j_exec_env_of_table_env(table_env_of(table))
    if j_exec_env is None:
        raise ConfigError("model stages need a StreamTableEnvironment (created with "
                          "StreamTableEnvironment.create(env)) to train in")
    return StreamExecutionEnvironment(j_exec_env)


def expand_features(stage: str, schema: pa.Schema, features: Sequence[str] | None,
                    label: str | None) -> list[str]:
    """``features`` with each pattern (``fnmatch``) replaced by the columns it matches, in
    the table's order; default: every numeric column except ``label``."""
    from fnmatch import fnmatchcase

    from flink_dl.errors import MissingColumnError

    if features is None:
        return [f.name for f in schema if f.name != label and is_feature_type(f.type)]
    out: list[str] = []
    for item in features:
        if not any(ch in item for ch in "*?["):
            out.append(item)
            continue
        matched = [n for n in schema.names if fnmatchcase(n, item) and n != label]
        if not matched:
            raise MissingColumnError(f"{stage}: feature pattern {item!r} matches no column; "
                                     f"the input has {schema.names}")
        out += [n for n in matched if n not in out]
    return out


class LearnerModel(Model):
    """A trained model as a pipeline stage: ``transform`` appends its predictions."""

    framework: ClassVar[str]

    def __init__(self, model: str | Path, features: Sequence[str],
                 outputs: Mapping[str, pa.DataType | str] | None = None, *,
                 batch_size: int = 1024, batch_invariant: bool = True,
                 postprocess: Callable[[Any], Any] | None = None, **options: Any) -> None:
        self.model_path = str(model)
        self.batch_invariant = bool(batch_invariant)
        self.features = check_columns(type(self).__name__, "features", features) or []
        self.outputs = {k: parse_arrow_type(v) if isinstance(v, str) else v
                        for k, v in (outputs or {"prediction": pa.float32()}).items()}
        self.batch_size = batch_size
        self.postprocess = postprocess
        self.options = options

    def get_params(self) -> dict[str, Any]:
        return {"features": list(self.features),
                "outputs": {k: arrow_type_name(v) for k, v in self.outputs.items()},
                "batch_size": self.batch_size, "batch_invariant": self.batch_invariant}

    def model_data(self) -> dict[str, Any]:
        return {"model_file": Path(self.model_path).name}

    def _callables(self) -> dict[str, Any]:
        return {"postprocess": self.postprocess, **self.options}

    def save_files(self, directory: Path) -> None:
        source = Path(self.model_path)
        if source.is_dir():
            shutil.copytree(source, directory / source.name)
        else:
            shutil.copy2(source, directory / source.name)
        callables = {k: v for k, v in self._callables().items() if v is not None}
        if callables:
            import cloudpickle

            (directory / CALLABLES_FILE).write_bytes(cloudpickle.dumps(callables))

    @classmethod
    def from_json(cls, params: Mapping[str, Any], data: Mapping[str, Any],
                  directory: Path) -> Model:
        callables: dict[str, Any] = {}
        if (directory / CALLABLES_FILE).is_file():
            import cloudpickle

            callables = cloudpickle.loads((directory / CALLABLES_FILE).read_bytes())
        return cls(directory / data["model_file"], **params, **callables)

    def transform(self, table: Table) -> Table:
        from flink_dl.inference.operator import predict

        return predict(table, self.handler())

    def handler(self) -> ModelHandler:
        """The framework's ``ModelHandler`` for this model (what ``transform`` runs)."""
        options = {k: v for k, v in self._callables().items() if v is not None}
        return self.handler_class()(self.model_path, self.features, outputs=self.outputs,
                                     batch_size=self.batch_size,
                                     batch_invariant=self.batch_invariant, **options)

    @abstractmethod
    def handler_class(self) -> type[ModelHandler]:
        """The plugin's ``ModelHandler`` class (called with the model's file, features and
        the handler options)."""


class LearnerEstimator(Estimator):
    """Trains ``config`` (a ``TorchConfig`` / ``TFConfig`` with your ``entry``) on the input
    in ``fit``; the entry reads ``ctx.dataloader()`` / ``ctx.dataset()``, whose default
    columns are ``features`` and ``label``.

    Args:
        config: the training job; ``model_dir`` must be set (the trained model is its newest
            version after ``fit``).
        features: input columns of the model, or patterns (``"city_*"``: the columns a
            ``OneHotEncoder`` made); default: every numeric column except ``label``. The
            columns chosen are logged.
        label: the label column, or ``None``.
        outputs: prediction columns of the fitted model, name -> Arrow type.
        postprocess: maps the model's output to the outputs (e.g. ``lambda y: y.argmax(1)``).
        batch_size: rows per model call when predicting.
        batch_invariant: pad every model call to ``batch_size`` rows, so a row's prediction
            is the same bits whichever rows share its batch (bounded or streaming input).
    """

    framework: ClassVar[str]
    model_class: ClassVar[type[LearnerModel]]

    def __init__(self, config: Any, features: Sequence[str] | None = None,
                 label: str | None = None, *,
                 outputs: Mapping[str, pa.DataType] | None = None,
                 postprocess: Callable[[Any], Any] | None = None, batch_size: int = 1024,
                 batch_invariant: bool = True, **options: Any) -> None:
        name = type(self).__name__
        if not getattr(config, "model_dir", None):
            raise ConfigError(f"{name}: the config needs model_dir=... (the trained model is "
                              "published there)")
        self.config = config
        self.features = check_columns(name, "features", features, required=False)
        if label is not None and not isinstance(label, str):
            raise ConfigError(f"{name}: label must be a column name, got {label!r}")
        self.label = label
        self.outputs = dict(outputs) if outputs else None
        self.postprocess = postprocess
        self.batch_size = batch_size
        self.batch_invariant = batch_invariant
        self.options = options
        self.fit_jobs = 1

    def get_params(self) -> dict[str, Any]:
        return {"features": self.features, "label": self.label,
                "model_dir": str(self.config.model_dir)}

    def fit(self, table: Table) -> Model:
        from flink_dl.flink.execute import execute
        from flink_dl.flink.feed import arrow_schema_of

        name = type(self).__name__
        schema = arrow_schema_of(table)
        features = expand_features(name, schema, self.features, self.label)
        log.info("%s: features = %s, label = %s", name, features, self.label)
        check_feature_columns(schema, features, self.label, where=name)
        config = dataclasses.replace(self.config, features=features, label=self.label)
        self.train_model(env_of(table), table, config)
        execute(env_of(table), f"flink-dl pipeline: {name}")
        return self.model_of(ModelStore(config.model_dir).open(), features)

    def untrained(self, table: Table) -> Model:
        """The model before any training, published as a version of ``model_dir``
        (``publish_untrained``), with the features ``fit`` would choose on ``table``
        (a label column need not be there). No Flink job runs."""
        from flink_dl.flink.feed import arrow_schema_of

        name = type(self).__name__
        require_table(f"{name}.untrained", table)
        schema = arrow_schema_of(table)
        features = expand_features(name, schema, self.features, self.label)
        check_feature_columns(schema, features, where=f"{name}.untrained")
        version = self.publish_untrained(features)
        log.info("%s: untrained model version %d in %s (features = %s)", name,
                 version.version, self.config.model_dir, features)
        return self.model_of(version, features)

    def publish_untrained(self, features: Sequence[str]) -> ModelVersion:
        """Publish the untrained model for ``features`` in ``model_dir``; estimators that
        cannot start untrained raise ``ConfigError``."""
        raise ConfigError(f"{type(self).__name__} cannot start untrained: give it a factory "
                          "(the module to start from) or fit it on a batch first")

    def model_of(self, version: ModelVersion, features: Sequence[str]) -> Model:
        """The model stage serving ``version``'s files."""
        return self.model_class(self.model_file(version), list(features), self.outputs,
                                batch_size=self.batch_size,
                                batch_invariant=self.batch_invariant,
                                postprocess=self.postprocess, **self.options)

    @abstractmethod
    def train_model(self, env: StreamExecutionEnvironment, table: Table, config: Any) -> None:
        """Add the plugin's training job of ``config`` on ``table`` to ``env`` (its
        ``train``); ``fit`` runs it."""

    @abstractmethod
    def model_file(self, version: ModelVersion) -> Path:
        """The file (or directory) of the published ``version`` the model stage serves."""
